"""WSGI entry point of the example shop (``gunicorn oscar_shop.wsgi``)."""

import os

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # web processes serve requests in parallel; see visrec's README

from django.core.wsgi import get_wsgi_application  # noqa: E402 (after the thread settings)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oscar_shop.settings")
application = get_wsgi_application()
