"""The owner's what-if in a real browser: a shopper's visit is logged, the owner fills a pin and sees its effect."""

from __future__ import annotations

import pytest

from recommendations.models import Impression, Rule
from tests.browser.test_cockpit import log_in, owner, shop_ids, shots  # noqa: F401  (owner, shots: fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


def test_rule_form_whatif_shows_the_pins_effect_on_the_logged_traffic(new_page, small_catalog, owner, shots):  # noqa: F811
    anchor = small_catalog["anchor"]
    shopper = new_page()
    shown = shop_ids(shopper, anchor)  # the shop logs the list it showed, with its anchor
    assert len(shown) >= 2 and Impression.objects.filter(widget="similar-items").count() == 1
    last = shown[-1]

    admin = new_page()
    log_in(admin)
    admin.goto(f"{admin.base_url}/admin/recommendations/rule/add/")
    admin.locator("#id_kind").select_option("pin")
    admin.locator("#id_product").fill(str(last))
    admin.locator("#id_widget").fill("similar-items")
    with admin.context.expect_page() as opened:
        admin.get_by_role("button", name="What-if on the last 14 days").click()
    result = opened.value
    result.wait_for_load_state()

    table = result.locator("#whatif-table")
    assert table.is_visible()
    assert result.locator(".whatif-changed").inner_text() == "1 of 1 (100 %)"
    assert result.locator(".whatif-overlap").inner_text() == "1.000"  # the same products, the pinned one first
    assert result.locator(".whatif-target-after").inner_text().startswith("1 lists, 1 slots")
    assert result.locator("#whatif-categories tbody tr").count() >= 1
    result.screenshot(path=str(shots / "rule-whatif.png"))
    assert not Rule.objects.exists()
