"""Jobs every server process runs every few seconds, whichever processes are alive.

The venue has timers that belong to no request: an auction that ends, a dead man's switch
that fires, the orders of a socket whose process died. Each is a job registered here by
its app (`every`, in `AppConfig.ready`), and every server process runs all of them on one
daemon thread (`start`, from `quantumtrades.asgi`). Nothing is one process's: a job reads
what is due from the database and takes it under a row lock, so two processes running the
same job share the work instead of doing it twice, and when one process dies the others
carry on. A job is short and idempotent; one that fails is logged and runs again at its
next turn.

Why not Celery beat or APScheduler: both put the schedule in one place (a beat process, a
job store with a leader), the single process this is meant not to depend on. The jobs are
"look in the database for what is due", which needs only a loop; tests call `run_due`.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import close_old_connections

from quantumtrades.core import unavailable

log = logging.getLogger(__name__)

# How often the thread wakes up to look for jobs that are due.
TICK_SECONDS = 0.25


@dataclass
class Job:
    name: str
    seconds: float
    run: Callable[[], object]
    next_at: float = 0.0


_jobs: dict[str, Job] = {}
_thread: threading.Thread | None = None
_stopping = threading.Event()


def every(seconds: float, *, name: str | None = None):
    """Register the decorated function to run every `seconds` in every server process."""

    def register(function):
        job_name = name or f"{function.__module__}.{function.__qualname__}"
        _jobs[job_name] = Job(job_name, seconds, function)
        return function

    return register


def jobs() -> list[str]:
    return sorted(_jobs)


def run_due(*, force: bool = True) -> list[str]:
    """Run the jobs that are due (all of them with `force`) once, in this thread; return
    their names. The thread calls it every tick; tests call it to play a tick now."""
    now = time.monotonic()
    ran = []
    for job in list(_jobs.values()):
        if not force and now < job.next_at:
            continue
        job.next_at = now + job.seconds
        try:
            job.run()
        except Exception as exc:  # one failing job must not stop the others, nor the thread
            if unavailable.is_unavailable(exc):
                # As a request that lost the database does: drop the broken connection and
                # have the pool test its idle ones, so the next request (or job) gets a
                # live one instead of another the database closed meanwhile.
                unavailable.recover(exc)
                log.warning("scheduled job %s: the database is unavailable; it runs again at its next turn", job.name)
            else:
                log.exception("scheduled job %s failed", job.name)
        ran.append(job.name)
    return ran


def _loop() -> None:
    while not _stopping.wait(TICK_SECONDS):
        # A job's connection may have been closed under it (a database restart): the
        # thread gets a fresh one, as a request would.
        close_old_connections()
        run_due(force=False)
        # And gives it back at once, as a request does at its end: a connection held
        # between ticks is out of the pool's sight, and one the database closed meanwhile
        # would return to the pool after its check and fail the next request.
        close_old_connections()


def start() -> bool:
    """Start the jobs' thread in this process, once. Returns whether it started now."""
    global _thread
    if _thread is not None and _thread.is_alive():
        return False
    _stopping.clear()
    _thread = threading.Thread(target=_loop, name="scheduler", daemon=True)
    _thread.start()
    return True


def stop(timeout: float = 5.0) -> None:
    global _thread
    _stopping.set()
    if _thread is not None:
        _thread.join(timeout)
    _thread = None
