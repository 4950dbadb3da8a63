"""WSGI entry point.

A web process serves many requests at once with its own workers and threads, so the
numeric libraries it loads (numpy's BLAS, OpenMP in torch) run single-threaded there
unless the environment says otherwise: their extra threads keep spinning after each small
matrix product (a factor model's scores on every widget) and take the CPU the other
requests need. Celery workers, which train and embed in batches, keep their defaults.
"""

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, os.environ.get("VISREC_WEB_THREADS", "1"))

from django.core.wsgi import get_wsgi_application  # noqa: E402 (after the thread settings)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "visrec_shop.settings")
application = get_wsgi_application()
