"""gunicorn settings for serving the shop in production (``gunicorn -c visrec_shop/gunicorn.conf.py``).

Sized for a small machine: one process per core plus one, each with two threads, so a
request waiting on PostgreSQL does not hold a core. Four threads per process gave a longer
similar-items latency tail on a 2-core machine in trial runs of benchmarks/serving.py
(``--threads``): the threads share one interpreter lock, and each keeps its own, less often
used (colder) database connection. Command-line options override these (``-w``,
``--threads``, ``-b``).
"""

import multiprocessing

wsgi_app = "visrec_shop.wsgi:application"
bind = "127.0.0.1:8000"
workers = multiprocessing.cpu_count() + 1
worker_class = "gthread"
threads = 2
keepalive = 5
backlog = 2048
timeout = 30
graceful_timeout = 10
max_requests = 10_000
max_requests_jitter = 1_000
accesslog = None
errorlog = "-"
loglevel = "warning"
