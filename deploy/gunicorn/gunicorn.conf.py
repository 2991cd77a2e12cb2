"""gunicorn settings for every way Kreo is run: `make run` (scripts/run.py),
the Compose web service and the image's CMD (`gunicorn -c` this file).

Threaded workers (gthread), measured against sync workers under slow clients
by bench/bench_slow_clients.py (README "Slow clients"): a sync worker serves
one connection at a time, so a client that trickles an upload body holds a
whole worker until ``timeout`` kills it, and as many such clients as workers
stop the site. A gthread worker parks idle connections in its poller and
gives each request a thread of its own, so a slow client costs one thread and
the others keep answering. Slow bodies are still a thread each: production
puts nginx (deploy/nginx/kreo.conf) in front, which buffers whole requests
before they reach gunicorn.

Environment: KREO_HOST / KREO_PORT (bind), GUNICORN_WORKERS,
GUNICORN_THREADS, GUNICORN_TIMEOUT.
"""

import os

host = os.environ.get("KREO_HOST", "127.0.0.1")
bind = f"{host}:{os.environ.get('KREO_PORT', '8000')}"
wsgi_app = "kreo.wsgi:application"
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# Each thread blocked on a slow body is a parked socket read: cheap in memory
# (no database connection is opened before the body is read), so the pool is
# sized for the slow clients one worker must outlast, not for CPU: gunicorn
# does not spread connections evenly, so each worker gets room for all 200
# of the attack measured (128 a worker left a third of probes unanswered).
threads = int(os.environ.get("GUNICORN_THREADS", "256"))
# gthread's heartbeat comes from the main loop, not from the threads: a slow
# request does not get its worker killed, a hung worker process still does.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
# Idle kept-alive connections wait in the poller, not in a thread.
keepalive = 5
# Header limits (gunicorn's defaults, stated): a request line or header block
# past them is refused with 400 before the app sees it.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = "-"
# Gunicorn's default format plus the worker's pid: which process answered.
access_log_format = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" pid=%(p)s'
)
# Production settings give each worker a bounded PostgreSQL connection pool
# (kreo/settings/production.py): hundreds of threads, a handful of connections.
raw_env = ["KREO_DB_POOL=1"]
# gunicorn's control socket (gunicornc) is not used; left on, every instance
# on a machine would share one path under $HOME.
control_socket_disable = True

# Metrics (monitoring/metrics.py): each worker counts its requests in files
# under PROMETHEUS_MULTIPROC_DIR, so a scrape answered by any worker reports
# all of them. Set here, in the master before any worker starts (and before
# prometheus_client is imported); a folder of this server's own unless the
# environment names one, emptied at start (stale files from an earlier run
# would be added in).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    import tempfile

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="kreo-metrics-")


def on_starting(server):
    import glob

    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(folder, exist_ok=True)
    for name in glob.glob(os.path.join(folder, "*.db")):
        os.remove(name)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
