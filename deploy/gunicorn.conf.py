"""Gunicorn settings shared by every Sceau service (ca, registration, tsa, ocsp, crl,
signing, audit).

Installed as /etc/sceau/gunicorn.conf.py and used by deploy/systemd/sceau@.service:

    gunicorn -c /etc/sceau/gunicorn.conf.py 'sceau.services:create_app("tsa")'

The application factory builds the service and starts nothing; the post_worker_init hook
below starts the service's scheduled jobs in each worker.

Everything is read from the environment so that one file serves every service:

    SCEAU_SERVICE          service name; picks the default port, the process name and
                           the scheduled jobs each worker starts
    SCEAU_BIND             listen address (default 127.0.0.1:<the service's port below>)
    SCEAU_WORKERS          worker processes (default 2 x CPUs + 1)
    SCEAU_TIMEOUT          seconds a worker may spend on one request before it is
                           killed and replaced (default 30)
    SCEAU_MAX_REQUESTS     recycle a worker after this many requests, 0 = never
                           (default 0)
    SCEAU_LOG_LEVEL        gunicorn's error-log level (default info)
"""

import os

# The ports nginx (deploy/nginx/sceau.conf) routes to.
PORTS = {
    "ca": 8100,
    "registration": 8101,
    "tsa": 8102,
    "ocsp": 8103,
    "crl": 8104,
    "signing": 8105,
    "audit": 8106,
}

service = os.environ.get("SCEAU_SERVICE", "sceau")

bind = [os.environ.get("SCEAU_BIND") or f"127.0.0.1:{PORTS.get(service, 8000)}"]

# Pre-fork: the arbiter forks the workers, and each worker then imports and builds
# the application itself.
#
# preload_app must stay False. create_app() opens the PKCS#11 session (and the
# database pool). A PKCS#11 library's state does not survive fork(): PKCS#11 leaves
# the use of a parent's sessions and object handles in a forked child undefined (the
# child must call C_Initialize itself), and HSM client libraries hold sockets, locks
# and threads that would end up shared by every worker, or deadlocked. Building the
# application in each worker gives each worker its own C_Initialize, session and
# login, and its own database connections. The cost: one import per worker.
preload_app = False

workers = int(os.environ.get("SCEAU_WORKERS", str(2 * (os.cpu_count() or 1) + 1)))
# One request at a time per worker: the worker's PKCS#11 session is not shared
# between threads. Scale with workers (or machines), not threads. The worker class is
# gunicorn's threaded one with two changes (core/http/worker.py): unparsable requests get
# a problem+json answer, and a connection waits for its whole header block in the poller,
# not in the worker's one thread (a client that dribbles its headers costs nothing).
worker_class = "core.http.worker.ProblemThreadWorker"
threads = 1

timeout = int(os.environ.get("SCEAU_TIMEOUT", "30"))
graceful_timeout = 30  # on SIGTERM/SIGHUP, let in-flight requests finish
keepalive = 5

max_requests = int(os.environ.get("SCEAU_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10

# Bodies are small (CSRs, timestamp and OCSP requests): nginx caps them at 1 MiB;
# these cap the request line and headers.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

# Behind nginx on the same machine: trust its X-Forwarded-Proto from loopback only.
forwarded_allow_ips = "127.0.0.1,::1"

# gunicorn >= 25 opens a control socket, by default in $HOME, which would be shared
# by every service of the same user; systemd's RuntimeDirectory gives each its own.
if os.environ.get("RUNTIME_DIRECTORY"):
    control_socket = os.path.join(os.environ["RUNTIME_DIRECTORY"], "gunicorn.ctl")

proc_name = f"sceau-{service}"

# Logs go to stdout/stderr, i.e. the journal under systemd.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("SCEAU_LOG_LEVEL", "info")
# The request id is set by nginx (X-Request-ID: $request_id) and also logged by
# nginx, so one request can be followed from nginx's log to the service's log
# and the audit log. %(M)s is the duration in milliseconds.
access_log_format = (
    'rid=%({x-request-id}i)s %({x-forwarded-for}i)s "%(r)s" %(s)s %(B)s %(M)sms "%(a)s"'
)


# Scheduled jobs (CRL publication, OCSP pre-signing, retention purge, audit checkpoints...).
# The factory starts none; each worker starts its service's, after fork, on the application
# it loaded (worker.wsgi). Every worker of every machine runs the same schedule, and a
# lease in the database (core/jobs.py) makes exactly one of them run each tick.
#
# Imported here, in the worker, not at the top of this file: the arbiter reads this file,
# and a module it imported would be inherited by every worker it forks, so that a reload
# (HUP) would start new workers on the old code.
def post_worker_init(worker):
    from flask import Flask  # noqa: PLC0415 - in the worker, see above

    from sceau.services import SERVICES, start_jobs  # noqa: PLC0415 - in the worker

    if service not in SERVICES:
        worker.log.warning("SCEAU_SERVICE=%r names no Sceau service: no scheduled jobs", service)
    elif isinstance(worker.wsgi, Flask):  # not gunicorn's error app after a failed reload
        worker.sceau_jobs = runner = start_jobs(service, worker.wsgi)
        names = ", ".join(job.id for job in runner.scheduler.get_jobs()) or "none"
        worker.log.info("sceau-%s worker %s: scheduled jobs %s", service, worker.pid, names)


def worker_exit(server, worker):
    jobs = getattr(worker, "sceau_jobs", None)
    if jobs is not None:
        jobs.shutdown()
