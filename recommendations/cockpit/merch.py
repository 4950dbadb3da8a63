"""The cockpit's merchandising: rules with a before/after preview, similar-items judgements, catalogue health.

URL names for the admin index (engineer G): ``admin:recommendations_rule_changelist``
(rules), ``admin:visrec_health`` (catalogue visual health). The product page's
similar-items preview and judgement buttons live in ``catalog/admin.py``.
"""

from __future__ import annotations

import logging

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.cache import add_never_cache_headers, patch_cache_control
from django.views.decorators.http import require_POST

from .. import serving
from ..audit import ADDITION, CHANGE, log_change
from ..conf import get_adapter, get_product_model
from ..models import ImageState, Rule, SimilarityJudgement
from ..replicas import on_primary
from ..rules import previewing
from . import health, overlay, whatif

logger = logging.getLogger(__name__)

PREVIEW_LIMIT = 8
WIDGETS = ["similar-items", "complete-the-look", "for-you", "search-by-photo", "popular"]


def category_choices() -> list[tuple[str, str]]:
    """The shop's categories (through the adapter) as form choices, blank first."""
    return [("", "---------"), *((str(c.id), c.name) for c in get_adapter().categories())]


class RuleForm(forms.ModelForm):
    """A rule with what its kind needs: a product to pin/block, a category to exclude, a sensible boost."""

    category = forms.TypedChoiceField(
        coerce=int, empty_value=None, required=False, help_text=Rule._meta.get_field("category_id").help_text
    )
    scope_category = forms.TypedChoiceField(
        coerce=int, empty_value=None, required=False, help_text=Rule._meta.get_field("scope_category_id").help_text
    )

    class Meta:
        model = Rule
        exclude = ["created_by", "category_id", "scope_category_id"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        choices = category_choices()
        for name in ("category", "scope_category"):
            self.fields[name].choices = choices
            self.initial.setdefault(name, getattr(self.instance, f"{name}_id"))

    def clean(self):
        data = super().clean()
        self.instance.category_id, self.instance.scope_category_id = data.get("category"), data.get("scope_category")
        kind, product, category = data.get("kind"), data.get("product"), data.get("category")
        if kind in (Rule.PIN, Rule.BLOCK) and product is None:
            self.add_error("product", "A pin or block needs a product.")
        if kind == Rule.EXCLUDE_CATEGORY and category is None:
            self.add_error("category", "A category exclusion needs a category.")
        if kind == Rule.BOOST:
            if (product is None) == (category is None):
                self.add_error(None, "A boost needs a product or a category (one of them).")
            multiplier = data.get("multiplier")
            if multiplier is not None and not multiplier > 0:
                self.add_error("multiplier", "The multiplier must be greater than 0.")
        starts, ends = data.get("starts_at"), data.get("ends_at")
        if starts and ends and ends <= starts:
            self.add_error("ends_at", "The end must be after the start.")
        widget = data.get("widget")
        if widget and widget not in WIDGETS:
            self.add_error("widget", f"Unknown widget; one of: {', '.join(WIDGETS)} (or blank for all).")
        return data


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    form = RuleForm
    list_display = ["__str__", "kind", "widget", "scope_product", "scope_category_id", "multiplier", "position"]
    list_display += ["starts_at", "ends_at", "is_active"]
    list_filter = ["kind", "is_active", "widget"]
    raw_id_fields = ["product", "scope_product"]
    search_fields = ["note"]
    change_form_template = "admin/recommendations/rule/change_form.html"

    def save_model(self, request, obj: Rule, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)  # the admin writes its own log entry

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        args = [object_id] if object_id else []
        url = reverse("admin:recommendations_rule_preview", args=args)
        extra = {**whatif.buttons(request, url), **(extra_context or {})}
        return super().changeform_view(request, object_id, form_url, extra)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("preview/", view(self.preview_view), name="recommendations_rule_preview"),
            path("<path:object_id>/preview/", view(self.preview_view), name="recommendations_rule_preview"),
            path("health/", view(health_view), name="visrec_health"),
            path("product/<str:object_id>/", view(product_preview_view), name="visrec_product_preview"),
            path("product/<str:object_id>/judge/", view(judge_view), name="visrec_product_judge"),
            path("product/<str:object_id>/overlay/<str:neighbour>/", view(overlay_view), name="visrec_match_overlay"),
            path("health/retry/", view(retry_failed_view), name="visrec_health_retry"),
            *super().get_urls(),
        ]

    def preview_view(self, request, object_id=None):
        """The scoped widget's list before and after the rule in the form (POST, not saved) or as saved (GET).

        ``whatif=quick`` adds the rule's what-if on the logged traffic (:mod:`recommendations.replay`),
        ``whatif=full`` starts it in the background for the whole window.
        """
        obj = self.get_object(request, object_id) if object_id else None
        allowed = self.has_change_permission(request, obj) if obj else self.has_add_permission(request)
        if not allowed or (object_id and obj is None):
            raise PermissionDenied
        form = self.get_form(request, obj)(request.POST or None, instance=obj)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "original": obj, "form": form}
        context["title"] = f"Preview of {obj or 'a new rule'}"
        source = request.POST if request.method == "POST" else request.GET
        if request.method == "POST" and not form.is_valid():
            return TemplateResponse(request, "admin/recommendations/rule/preview.html", context, status=400)
        rule = form.save(commit=False) if request.method == "POST" else obj
        if rule is None:
            raise PermissionDenied
        if whatif.asked(request):
            return self._whatif(request, context, rule, source)
        try:
            context.update(rule_preview(rule, source.get("preview_product"), source.get("preview_category")))
        except ValueError as e:
            context["problem"] = str(e)
            return TemplateResponse(request, "admin/recommendations/rule/preview.html", context, status=400)
        return TemplateResponse(request, "admin/recommendations/rule/preview.html", context)

    def _whatif(self, request, context: dict, rule: Rule, source) -> HttpResponse:
        """The rule's what-if, with the before/after lists too when the form names a page to show them on."""
        found = whatif.respond(request, rule=rule)
        if isinstance(found, HttpResponse):
            return found
        context.update(found)
        try:
            context.update(rule_preview(rule, source.get("preview_product"), source.get("preview_category")))
        except ValueError:
            pass  # no page to show the lists on: the what-if alone
        status = 400 if "whatif_problem" in found else 200
        return TemplateResponse(request, "admin/recommendations/rule/preview.html", context, status=status)


def _scope(rule: Rule, product_id, category_id):
    """The product and category id a preview shows the rule's widget for."""
    Product = get_product_model()
    product, category = rule.scope_product, rule.scope_category_id
    try:
        if product_id:
            product = Product.objects.get(pk=Product._meta.pk.to_python(product_id))
        if category_id:
            category = int(category_id)
            if category not in {c.id for c in get_adapter().categories()}:
                raise ValueError(category_id)
    except (ValueError, ValidationError, Product.DoesNotExist):
        raise ValueError("No such product or category to preview with.") from None
    return product, category


def preview_list(widget: str, product, category, limit: int = PREVIEW_LIMIT) -> serving.RecommendationList:
    """What ``widget`` shows now (computed afresh) on ``product``'s page or for ``category``.

    Read from the primary: the owner previews what they have just saved, which a read
    replica may not have yet.
    """
    with on_primary():
        if widget == "similar-items":
            return serving.similar_items(product, limit, cached=False)
        if widget == "complete-the-look":
            return serving.complete_the_look(product, limit, cached=False)
        if widget == "popular":
            return serving.RecommendationList("popular", serving.popular(limit, category), None, None, "popular")
        return serving.for_you(limit=limit, category=category)


def rule_preview(rule: Rule, product_id=None, category_id=None) -> dict:
    """``before``/``after`` lists of the rule's widget, with the other rules in force; nothing is saved."""
    product, category = _scope(rule, product_id, category_id)
    widget = rule.widget or ("similar-items" if product is not None else "for-you")
    if widget in ("similar-items", "complete-the-look") and product is None:
        raise ValueError("Choose a product to preview its similar items or complete the look.")
    if widget == "search-by-photo":
        raise ValueError("Search by photo needs a photo; preview this rule on another widget.")
    others = [r for r in Rule.objects.filter(is_active=True) if r.pk != rule.pk]
    with previewing(others):
        before = preview_list(widget, product, category)
    with previewing([*others, rule] if rule.is_active else others):
        after = preview_list(widget, product, category)
    changed = {r.product.pk for r in after} ^ {r.product.pk for r in before}
    rows = [
        (b, a)
        for b, a in zip(_padded(before.items), _padded(after.items), strict=True)
        if b is not None or a is not None
    ]
    return {"widget": widget, "product": product, "category": category, "rows": rows, "changed": changed}


def _padded(items: list, n: int = PREVIEW_LIMIT) -> list:
    return list(items[:n]) + [None] * (n - len(items[:n]))


# -- similar-items judgements (buttons on the product admin page) ---------------------------


def judge(user, product, neighbour, verdict: str) -> SimilarityJudgement:
    """Store the owner's verdict on a neighbour (replacing an earlier one) and write the admin log."""
    judgement, created = SimilarityJudgement.objects.update_or_create(
        product=product, neighbour=neighbour, defaults={"verdict": verdict, "created_by": user}
    )
    label = dict(SimilarityJudgement.VERDICTS)[verdict]
    log_change(user, product, f"Similar items: {neighbour} judged “{label}”.", ADDITION if created else CHANGE)
    return judgement


def _product_or_none(Product, key):
    try:
        return Product.objects.filter(pk=Product._meta.pk.to_python(key)).first()
    except (ValidationError, ValueError, TypeError):
        return None


@require_POST
def judge_view(request, object_id):
    """POST ``neighbour`` and ``verdict`` (good / not_similar): the judgement applies to serving at once.

    Redirects back to ``next`` (a local URL: the page the buttons were on) or to visrec's
    product preview page.
    """
    if not request.user.has_perm("recommendations.add_similarityjudgement"):
        raise PermissionDenied
    Product = get_product_model()
    product = _product_or_none(Product, object_id)
    neighbour = _product_or_none(Product, request.POST.get("neighbour", ""))
    verdict = request.POST.get("verdict", "")
    url = _back(request, object_id) if product else reverse("admin:index")
    if (
        product is None
        or neighbour is None
        or neighbour.pk == product.pk
        or verdict not in dict(SimilarityJudgement.VERDICTS)
    ):
        messages.error(request, "Unknown product, neighbour or verdict: nothing was judged.")
        return HttpResponseRedirect(url)
    judge(request.user, product, neighbour, verdict)
    messages.success(request, f"“{neighbour}” marked {dict(SimilarityJudgement.VERDICTS)[verdict].lower()}.")
    return HttpResponseRedirect(url + "#similar-items-preview")


def _back(request, object_id) -> str:
    """Where the judge buttons were: ``next`` when it is a local URL, else the shop's or visrec's product page."""
    from django.utils.http import url_has_allowed_host_and_scheme

    back = request.POST.get("next", "")
    if back and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return back.split("#")[0]
    from ..templatetags.visrec import product_admin_url

    return product_admin_url(object_id) or reverse("admin:visrec_product_preview", args=[object_id])


def _require_view_product(request) -> None:
    opts = get_product_model()._meta
    if not request.user.has_perm(f"{opts.app_label}.view_{opts.model_name}"):
        raise PermissionDenied


def product_preview_view(request, object_id):
    """Visrec's own page of one product of any shop: its similar items as shoppers see them, with the judge buttons."""
    _require_view_product(request)
    product = _product_or_none(get_product_model(), object_id)
    if product is None:
        raise Http404("No such product.")
    context = {
        **admin.site.each_context(request),
        "title": f"Similar items of {product}",
        "original": product,
        **similar_preview(request, product),
    }
    return TemplateResponse(request, "admin/visrec/product_preview.html", context)


def similar_preview(request, product) -> dict:
    """Context of the product page's similar-items preview: exactly what shoppers see, with judgements."""
    try:
        with on_primary():  # the owner's own judgements and rules, just saved
            rec_list = serving.similar_items(product, PREVIEW_LIMIT, cached=False)
    except Exception as e:  # the preview must never break the product page
        return {"similar_error": f"The similar items cannot be computed now ({type(e).__name__})."}
    verdicts = dict(
        SimilarityJudgement.objects.filter(product=product, neighbour__in=rec_list.product_ids).values_list(
            "neighbour_id", "verdict"
        )
    )
    judged = SimilarityJudgement.objects.filter(product=product).select_related("neighbour").order_by("-created_at")
    return {
        "similar_list": rec_list,
        "similar_rows": [(r, verdicts.get(r.product.pk, "")) for r in rec_list],
        "similar_judged": judged[:50],
        "can_judge": request.user.has_perm("recommendations.add_similarityjudgement"),
    }


def overlay_view(request, object_id, neighbour):
    """Where a product's and a neighbour's photos agree (:mod:`.overlay`): the PNG, or 202 while a worker draws it.

    The client polls a 202 again; a reason comes as text (422; 503 when the overlay cannot be drawn or queued now).
    """
    _require_view_product(request)
    product = _product_or_none(get_product_model(), object_id)
    other = _product_or_none(get_product_model(), neighbour)
    if product is None or other is None:
        raise Http404("No such product.")
    try:
        png = overlay.requested_overlay(product, other)
    except overlay.OverlayUnavailable as e:
        return _no_overlay(str(e), e.status)
    except Exception as e:  # the owner gets a reason, the log the traceback
        logger.exception("match overlay failed", extra={"product": product.pk, "neighbour": other.pk})
        return _no_overlay(f"The overlay cannot be drawn now ({type(e).__name__}); the log has the details.", 503)
    if png is None:
        response = _no_overlay("Drawing where the two photos agree…", 202)
        response["Retry-After"] = "1"
        return response
    response = HttpResponse(png, content_type="image/png")
    patch_cache_control(response, private=True, max_age=3600)
    return response


def _no_overlay(text: str, status: int) -> HttpResponse:
    response = HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
    add_never_cache_headers(response)
    return response


# -- catalogue visual health -----------------------------------------------------------------

PAGE_SIZE = 25


def _page(request, name: str, items):
    """One page of ``items`` (``?name=n``) with links to its neighbours that keep the other lists' pages."""
    page = Paginator(items, PAGE_SIZE).get_page(request.GET.get(name))
    for attr, has, number in (("prev_qs", page.has_previous, -1), ("next_qs", page.has_next, 1)):
        query = request.GET.copy()
        query[name] = page.number + number
        setattr(page, attr, query.urlencode() if has() else "")
    return page


def health_view(request):
    """Near-duplicates, failed images, products without vectors, never-recommended products, coverage."""
    _require_view_product(request)
    refresh = request.method == "POST" and request.POST.get("refresh") == "1"
    if refresh and not request.user.has_perm("recommendations.add_taskrun"):
        raise PermissionDenied
    model = serving.active().embedding
    when, pairs, looked = health.near_duplicates(model, refresh=refresh)
    images = ImageState.objects.select_related("product").in_bulk({i for p in pairs for i in p[:2]})
    near = [(images[a], images[b], d) for a, b, d in pairs if a in images and b in images]
    shas = _page(request, "dup", health.duplicate_shas())
    never = _page(request, "never", health.never_recommended_ids(refresh=refresh))
    products = get_product_model().objects.select_related("visrec_snapshot").in_bulk(list(never.object_list))
    context = {
        **admin.site.each_context(request),
        "title": "Catalogue visual health",
        "embedding_model": model,
        "similarity_head": health.similarity_head(refresh=refresh),
        "near": _page(request, "near", near),
        "near_computed_at": when,
        "near_looked_at": looked,
        "near_threshold": health.NEAR_DUPLICATE_DISTANCE,
        "duplicates": shas,
        "duplicate_rows": list(health.images_with_sha(shas.object_list).items()),
        "failed": _page(request, "failed", health.failed_images()),
        "no_vector": _page(request, "novec", health.products_without_vector(model)),
        "never": never,
        "never_products": [products[pk] for pk in never.object_list if pk in products],
        "coverage": health.coverage(refresh=refresh),
        "can_retry": request.user.has_perm("recommendations.add_taskrun"),
    }
    return TemplateResponse(request, "admin/visrec/health.html", context)


@require_POST
def retry_failed_view(request):
    """Queue failed images (all, or the ``image`` ids posted) for embedding again."""
    if not request.user.has_perm("recommendations.add_taskrun"):
        raise PermissionDenied
    failed = health.failed_images()
    ids = [int(i) for i in request.POST.getlist("image") if i.isdigit()]
    queued = health.requeue_images(request.user, failed.filter(pk__in=ids) if ids else failed)
    messages.success(request, f"Queued {queued} failed image(s) for embedding again.")
    return HttpResponseRedirect(reverse("admin:visrec_health"))
