"""``manage.py import_hm``: H&M articles with their photos into oscar's catalogue, through oscar's models.

The most-bought ``--articles`` articles (default 300) of ``../shared/datasets/hm`` that have
metadata and a photo. Articles of one H&M product code are one oscar *parent* product
with a *child* per colour (the parent holds every colour's photo, the children the stock);
an article alone is a *standalone* product. Categories come from oscar's category tree
(``index group > product group > product type``); each sellable product gets a stock
record of the partner "H&M". The customers' purchases of those articles become visrec
``purchase`` events (one oscar customer account per H&M customer), the history visrec
trains on. Running it again adds nothing that is already there.
"""

from __future__ import annotations

import csv
import datetime
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.test.utils import override_settings
from oscar.core.loading import get_class, get_model

Product = get_model("catalogue", "Product")
ProductClass = get_model("catalogue", "ProductClass")
ProductCategory = get_model("catalogue", "ProductCategory")
ProductImage = get_model("catalogue", "ProductImage")
Partner = get_model("partner", "Partner")
StockRecord = get_model("partner", "StockRecord")
create_from_breadcrumbs = get_class("catalogue.categories", "create_from_breadcrumbs")

DEFAULT_DATASET = Path(settings.BASE_DIR).parents[2] / "shared" / "datasets" / "hm"


def _articles(dataset: Path, count: int) -> tuple[list[dict], dict[str, list[dict]]]:
    """The ``count`` most-bought articles with metadata and a photo, and every purchase of each."""
    meta = {row["item_id"]: row for row in csv.DictReader((dataset / "item_metadata.csv").open(encoding="utf-8"))}
    purchases: dict[str, list[dict]] = defaultdict(list)
    with (dataset / "interactions.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["item_id"] in meta:
                purchases[row["item_id"]].append(row)
    ranked = sorted(purchases, key=lambda item: (-len(purchases[item]), item))
    chosen = [meta[i] for i in ranked if (dataset / meta[i]["image_path"]).is_file()][:count]
    return chosen, {a["item_id"]: purchases[a["item_id"]] for a in chosen}


def _price(purchases: list[dict]) -> Decimal:
    """A shop price from the dataset's normalised prices (mean × 1000, at least 4.99)."""
    prices = [float(p["price"]) for p in purchases if p["price"]]
    mean = sum(prices) / len(prices) if prices else 0.02
    return max(Decimal("4.99"), Decimal(f"{mean * 1000:.2f}"))


class Command(BaseCommand):
    help = "Import H&M articles with photos into oscar's catalogue and their purchases as visrec events."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="the hm dataset folder")
        parser.add_argument("--articles", type=int, default=300, help="how many articles (most bought first)")
        parser.add_argument("--no-purchases", action="store_true", help="import products only")

    def handle(self, *args, dataset: Path, articles: int, no_purchases: bool, **options) -> None:
        if not (dataset / "item_metadata.csv").is_file():
            raise CommandError(f"no hm dataset at {dataset} (item_metadata.csv is missing)")
        chosen, purchases = _articles(dataset, articles)
        by_code: dict[str, list[dict]] = defaultdict(list)
        for article in chosen:
            by_code[article["product_code"]].append(article)
        product_class, _ = ProductClass.objects.get_or_create(
            name="Clothing", defaults={"slug": "clothing", "track_stock": True, "requires_shipping": True}
        )
        partner, _ = Partner.objects.get_or_create(name="H&M")
        created = Counter()
        # visrec syncs each saved product at once; its photos are embedded afterwards in batches
        # (`manage.py visrec_embed --missing`) rather than one by one as they are saved.
        with override_settings(VISREC={**getattr(settings, "VISREC", {}), "AUTO_EMBED": False}):
            for code, group in by_code.items():
                with transaction.atomic():
                    created.update(self._import_group(dataset, code, group, purchases, product_class, partner))
        self.stdout.write(
            f"Products: {created['standalone']} standalone, {created['parent']} parents with "
            f"{created['child']} children ({len(chosen)} articles, {len(by_code)} product pages)"
        )
        if not no_purchases:
            self._import_purchases(purchases)

    def _import_group(self, dataset, code, group, purchases, product_class, partner) -> Counter:
        counts = Counter()
        first = group[0]
        upc = first["item_id"] if len(group) == 1 else f"hm-{code}"
        if Product.objects.filter(upc=upc).exists():
            return counts
        breadcrumbs = " > ".join(first[k] for k in ("index_group_name", "product_group_name", "product_type_name"))
        category = create_from_breadcrumbs(breadcrumbs)
        structure = Product.STANDALONE if len(group) == 1 else Product.PARENT
        product = Product.objects.create(
            title=first["title"], upc=upc, structure=structure, product_class=product_class,
            description=first["detail_desc"], is_public=True,
        )
        counts[structure] += 1
        ProductCategory.objects.create(product=product, category=category)
        for position, article in enumerate(group):
            with (dataset / article["image_path"]).open("rb") as f:
                ProductImage.objects.create(
                    product=product, original=File(f, name=f"{article['item_id']}.jpg"),
                    caption=article["colour_group_name"], display_order=position,
                )
        sellable = [(product, group[0])] if len(group) == 1 else []
        colours = Counter(a["colour_group_name"] for a in group)
        for article in group if len(group) > 1 else []:
            colour = article["colour_group_name"]
            if colours[colour] > 1:  # two articles of one colour group: tell them apart by article number
                colour = f"{colour} {article['item_id'][-3:]}"
            child = Product.objects.create(
                parent=product, structure=Product.CHILD, upc=article["item_id"], is_public=True,
                title=f"{article['title']} – {colour}",
            )
            counts[Product.CHILD] += 1
            sellable.append((child, article))
        for item, article in sellable:
            StockRecord.objects.create(
                product=item, partner=partner, partner_sku=article["item_id"],
                price=_price(purchases[article["item_id"]]), num_in_stock=25,
            )
        return counts

    def _import_purchases(self, purchases: dict[str, list[dict]]) -> None:
        """Each H&M customer becomes an oscar customer; each purchase a visrec ``purchase`` event."""
        from recommendations.conf import get_adapter
        from recommendations.events import record_interactions
        from recommendations.models import Interaction

        User = get_user_model()
        if User.objects.filter(username__startswith="hm-").exists():
            self.stdout.write("Purchases: already imported")
            return
        products = {p.upc: p for p in Product.objects.filter(upc__in=list(purchases))}
        customers = sorted({row["user_id"] for rows in purchases.values() for row in rows})
        User.objects.bulk_create(
            [User(username=f"hm-{c[:24]}", email=f"hm-{c[:24]}@example.com", is_active=True) for c in customers]
        )
        users = {u.username: u for u in User.objects.filter(username__startswith="hm-")}
        adapter = get_adapter()  # a colour's purchase counts for its parent, as oscar's own orders do
        events = [
            Interaction(
                product_id=adapter.recommendable_pk(products[item_id]), user=users[f"hm-{row['user_id'][:24]}"],
                kind="purchase", source="hm-import",
                created_at=datetime.datetime.fromisoformat(row["timestamp"]).replace(tzinfo=datetime.UTC),
            )
            for item_id, rows in purchases.items()
            for row in rows
        ]
        record_interactions(events)
        self.stdout.write(f"Purchases: {len(events)} events from {len(customers)} customers")
