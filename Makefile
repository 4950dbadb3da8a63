# visrec: `make demo` serves the demo shop, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1:8000
DEMO_ARGS ?= --products 1500 --users 400 --seed 7
export PYTHONUNBUFFERED := 1
# The demo runs one web process with in-process tasks: it may use the demo's defaults (embedded
# database, local cache, its own key) with DEBUG off; production sets the real variables instead
# (README, "Production configuration").
export VISREC_SINGLE_PROCESS ?= 1

.PHONY: setup demo oscar-demo test worker worker-embeddings worker-training worker-default bench lint migrate db-stop clean help

help:
	@echo "make demo    set up everything, load + embed the demo catalog, serve http://$(HOST)"
	@echo "make oscar-demo  the django-oscar example shop (examples/oscar_shop): 300 hm articles, embedded, trained, served on http://$(OSCAR_HOST)"
	@echo "make test    set up everything, then ruff and the whole pytest suite"
	@echo "make worker  run a Celery worker with the beat schedule (needs CELERY_BROKER_URL, e.g. redis://127.0.0.1:6379/0)"
	@echo "make worker-embeddings / worker-training / worker-default  one pool per queue (README, \"Worker pools\")"
	@echo "make bench   run the benchmarks under benchmarks/"
	@echo "make db-stop stop the embedded PostgreSQL"

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

setup: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0

migrate: setup

demo: setup
	$(PY) manage.py visrec_demo $(DEMO_ARGS)
	$(PY) manage.py visrec_embed --missing
	$(PY) manage.py visrec_train --if-missing
	DEBUG=$${DEBUG:-1} $(PY) manage.py visrec_demo_admin
	DEBUG=$${DEBUG:-1} $(PY) manage.py runserver --noreload $(HOST)

# The oscar example shop runs visrec from this tree (PYTHONPATH); the acceptance test
# (tests/browser/test_oscar_shop.py) runs it from the built wheel instead. Its own
# database, visrec_oscar, on the same embedded PostgreSQL server.
OSCAR_HOST ?= 127.0.0.1:8001
OSCAR_ARTICLES ?= 300
OSCAR_MANAGE = cd examples/oscar_shop && PYTHONPATH=$(CURDIR) DATABASE_URL="$$($(CURDIR)/$(PY) -m visrec_shop.dbserver url visrec_oscar)" $(CURDIR)/$(PY) manage.py
oscar-demo: $(STAMP)
	$(OSCAR_MANAGE) migrate --noinput
	$(OSCAR_MANAGE) import_hm --dataset $(abspath $(HM)) --articles $(OSCAR_ARTICLES)
	$(OSCAR_MANAGE) visrec_embed --missing
	$(OSCAR_MANAGE) visrec_train --if-missing
	$(OSCAR_MANAGE) shell -c "from django.contrib.auth.models import User; User.objects.filter(username='admin').exists() or User.objects.create_superuser('admin', 'admin@example.com', 'visrec-demo'); print('admin login: admin / visrec-demo')"
	$(OSCAR_MANAGE) runserver --noreload $(OSCAR_HOST)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: setup lint
	$(PY) -m pytest

NEED_BROKER = @test -n "$$CELERY_BROKER_URL" || { echo "CELERY_BROKER_URL is not set (e.g. export CELERY_BROKER_URL=redis://127.0.0.1:6379/0)"; exit 2; }
CELERY_WORKER = $(VENV)/bin/celery -A visrec_shop worker -l info

# One box: one worker on every queue, with the beat schedule.
worker: setup
	$(NEED_BROKER)
	$(CELERY_WORKER) --beat --schedule var/celerybeat-schedule -Q embeddings,training,default

# Several boxes, one pool per queue (README, "Worker pools"). Embeddings: one process per GPU
# that CUDA_VISIBLE_DEVICES (else nvidia-smi) shows, prefetch 1, each process on its own GPU
# (recommendations/devices.py); one process on a host without a GPU. GPUS=n overrides the count.
GPUS ?= $(shell if [ -n "$${CUDA_VISIBLE_DEVICES+set}" ]; then echo "$$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c '[0-9a-zA-Z]'; \
	elif command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi -L 2>/dev/null | grep -c '^GPU'; else echo 0; fi)
EMBED_PROCESSES = $(if $(filter-out 0,$(strip $(GPUS))),$(strip $(GPUS)),1)
worker-embeddings: setup
	$(NEED_BROKER)
	$(CELERY_WORKER) -Q embeddings -c $(EMBED_PROCESSES) --prefetch-multiplier 1 -n embeddings@%h

# Training: one fit at a time (an advisory lock makes a second one "skipped" anyway).
worker-training: setup
	$(NEED_BROKER)
	$(CELERY_WORKER) -Q training -c 1 --prefetch-multiplier 1 -n training@%h

# Imports and housekeeping, and the beat schedule (run exactly one beat in the whole deployment).
worker-default: setup
	$(NEED_BROKER)
	$(CELERY_WORKER) --beat --schedule var/celerybeat-schedule -Q default -c 2 -n default@%h

HM ?= ../shared/datasets/hm
bench: setup
	$(PY) benchmarks/embed_throughput.py --images $(HM)/images --limit 2000
	$(PY) benchmarks/vector_quality.py --dataset $(HM)
	$(PY) benchmarks/quality.py --dataset $(HM)
	$(PY) benchmarks/demo_models.py
	$(PY) benchmarks/serving.py --products 200000
	$(PY) benchmarks/freshness.py --dataset $(HM)

db-stop:
	@test ! -x $(PY) || $(PY) -c "from pathlib import Path; from visrec_shop import dbserver; dbserver.stop(Path('var/pgdata'))"

clean: db-stop
	rm -rf var
