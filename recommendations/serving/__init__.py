"""Serving: candidates (pgvector + the active model) -> rules -> cache -> fallback.

Views, template tags and the API call these functions; nothing here renders.

- ``similar_items``: the product's visual neighbours (HNSW, filters inside the SQL,
  iterative index scans so filtered lists stay full) blended with the active model's
  item neighbours.
- ``for_you``: the active model's scores for a shopper it knows, blended with the
  session's live taste (image vectors of what the shopper just viewed, clicked, carted
  or bought); cold shoppers get what is trending in the current category, then overall.
- ``complete_the_look``: products of other categories bought with the product, then the
  compatibility model's partners of its picture (for a product with no history).
- ``recently_viewed``, ``search_by_image``, ``trending``, ``popular``.

Lists are cached by candidate ids (the Django cache; Redis when configured). Keys carry
the active model and embedding versions, the anchor product's version (bumped on save)
or the shopper's last interaction id, so activation, product edits and new events all
change the list. Products are always (re)loaded through the rules' SQL filter, so a
cached list never shows a product that went inactive or out of stock meanwhile.

The package by concern: ``results`` (what callers get), ``keys`` (cache keys),
``versions`` (active versions, loaded models), ``cards``, ``vectors`` (pgvector SQL, prepared
statements), ``rules_sql``, ``lists`` (cards, arranging, blending), ``fallbacks``
(popular, trending, topping up), ``similar``, ``taste`` (shopper history, session
taste), ``personal`` (for you, recently viewed), ``complements`` (complete the look),
``photo``, ``reasons`` ("why this?": the shopper's own product behind a "for you" item,
what a similar item shares) and ``page`` (the products a page's widgets have shown, so
none repeats another). Everything is re-exported here:
``from recommendations import serving; serving.similar_items(...)``.
"""

from django.core.cache import cache  # noqa: F401  (tests patch serving.cache)

from ..rules import Rules, rules_for  # noqa: F401
from .cards import (  # noqa: F401
    CARD_DEFERRED,
    _card_fields,
    product_image_url,
    products_from_rows,
)
from .complements import (  # noqa: F401
    complete_the_look,
    copurchased,
    other_categories,
)
from .fallbacks import (  # noqa: F401
    _LAST_GOOD_CHECK,
    _LAST_GOOD_REFRESH,
    _LAST_GOOD_SIZE,
    _RANKED_DEPTH,
    _RANKED_KEPT,
    _by_popularity,
    _fill,
    _last_good_checked,
    _rank,
    _ranked_ids,
    _ranked_local,
    _ranked_lock,
    _remember_popular,
    fallback_list,
    popular,
    remember_popular_if_stale,
    trending,
)
from .keys import (  # noqa: F401
    _cache_get_many,
    _cache_set,
    _key,
    _prefix,
    bump_product_version,
    bump_product_versions,
    product_version_key,
)
from .lists import (  # noqa: F401
    _arranged,
    _blend,
    _finish,
    _has_shopper,
    _load,
    _normalised,
    products_sql,
    raw_products,
)
from .page import ShownOnPage, shown_on_page  # noqa: F401
from .personal import (  # noqa: F401
    _for_you_ranked,
    _model_for_shopper,
    for_you,
    recently_viewed,
)
from .photo import (  # noqa: F401
    _read_image,
    decode_slot,
    embed_query_image,
    search_by_image,
)
from .reasons import (  # noqa: F401
    colour_similarities,
    history_reasons,
    why,
    why_text,
)
from .results import (  # noqa: F401
    Because,
    InvalidImage,
    ProductNotEmbedded,
    Ranked,
    Recommendation,
    RecommendationList,
    SearchBusy,
)
from .rules_sql import (  # noqa: F401
    _RULES_SQL_KEPT,
    _rules_sql,
    rules_where,
)
from .similar import (  # noqa: F401
    _experiment_arm,
    _model_neighbours,
    _similar_ranked,
    anchor_product,
    cached_ranked,
    similar_items,
    similar_items_or_fallback,
)
from .taste import (  # noqa: F401
    History,
    _taste_weights,
    history,
    taste_expression,
)
from .vectors import (  # noqa: F401
    SQLVector,
    _iterative,
    _names,
    _names_memo,
    _prepared_cursor,
    _prepared_rows,
    _quoted_names,
    _rows,
    _search_settings,
    _ServerCursor,
    _set_locally,
    _supports_iterative_scan,
    _vector_text,
    anchor_vector,
    fetch_rows,
    int_array,
    literal_vector,
    nearest_products,
    neighbour_sql,
    pk_array,
    pk_db_type,
    product_key,
    product_vector,
    search_rows,
    text_array,
    vector_search,
)
from .versions import (  # noqa: F401
    _ACTIVE_SECONDS,
    _MODELS_KEPT,
    Active,
    LoadedModel,
    _load_model,
    _local_active,
    _models,
    _models_lock,
    _neighbour_model,
    active,
    forget_active,
    loaded_model,
)
