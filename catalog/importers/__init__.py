"""Bulk import of products, images and interactions from CSV files.

The importer streams each CSV row by row and writes in batches (``bulk_create`` /
``bulk_update``), so memory does not grow with the file. It is idempotent: products
are matched by SKU, images by the SHA-256 of their bytes, interactions by their
content (user, product, kind, value, time), so importing the same files twice
changes nothing the second time. Every problem is reported with its file and row
number (the header is row 1, as in a spreadsheet); one bad row never stops a run.

The column format is documented in ``docs/import-format.md``.

Modules by concern: ``targets``, ``mapping``, ``report``, ``reading``, ``values``,
``products``, ``interactions`` and ``run``; everything is re-exported here.
"""

from .interactions import (  # noqa: F401
    _KINDS,
    InteractionImporter,
    InteractionKey,
    InteractionRow,
    parse_interaction,
)
from .mapping import (  # noqa: F401
    BoundMapping,
    ColumnMapping,
    Source,
    _check_target,
    _section,
    _sources,
    build_mapping,
)
from .products import (  # noqa: F401
    _FIELD_TARGETS,
    _PRODUCT_PARSERS,
    _SKU_LIMIT,
    _TEXT_LIMITS,
    CategoryResolver,
    ExistingImage,
    ImageCheck,
    ProductImporter,
    ProductRow,
    _convert,
    _delete_files,
    parse_product,
    resolve_image_path,
)
from .reading import (  # noqa: F401
    batched,
    batched_unique,
    count_rows,
    numbered,
    open_csv,
)
from .report import (  # noqa: F401
    Counts,
    Failure,
    ImageCounts,
    ImportReport,
    failure_writer,
)
from .run import (  # noqa: F401
    ImportOptions,
    ProgressFactory,
    _progress,
    run_import,
)
from .targets import (  # noqa: F401
    _CENT,
    _FALSE,
    _MAX_PRICE,
    _TRUE,
    _UNIX_SECONDS,
    _USERNAME_SAFE,
    EXTERNAL_USER_PREFIX,
    INTERACTION_TARGETS,
    PRESETS,
    PRODUCT_TARGETS,
    TARGETS,
    ImportConfigError,
    RowError,
)
from .values import (  # noqa: F401
    external_username,
    parse_bool,
    parse_currency,
    parse_int,
    parse_price,
    parse_timestamp,
)
