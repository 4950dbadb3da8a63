"""Celery application.

With ``CELERY_BROKER_URL`` unset, settings make every task run in-process (eager), so
the demo works anywhere; with a broker (Redis) tasks run on real workers.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "visrec_shop.settings")

app = Celery("visrec_shop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
