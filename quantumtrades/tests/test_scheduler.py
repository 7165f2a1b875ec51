import threading

import pytest

from quantumtrades.core import scheduler


@pytest.fixture
def clean_jobs(monkeypatch):
    monkeypatch.setattr(scheduler, "_jobs", {})
    yield
    scheduler.stop()


def test_a_registered_job_runs_when_due_and_not_before(clean_jobs):
    runs = []
    scheduler.every(3600, name="hourly")(lambda: runs.append("hourly"))
    assert scheduler.jobs() == ["hourly"]
    assert scheduler.run_due(force=False) == ["hourly"]
    assert scheduler.run_due(force=False) == []  # not due again for an hour
    assert scheduler.run_due() == ["hourly"]  # a test's tick runs it anyway
    assert runs == ["hourly", "hourly"]


def test_a_failing_job_is_logged_and_the_others_still_run(clean_jobs, caplog):
    runs = []

    @scheduler.every(1, name="broken")
    def broken():
        raise RuntimeError("boom")

    scheduler.every(1, name="fine")(lambda: runs.append(1))
    assert scheduler.run_due() == ["broken", "fine"]
    assert runs == [1]
    assert "scheduled job broken failed" in caplog.text


def test_the_thread_runs_jobs_until_stopped(clean_jobs):
    ran = threading.Event()
    scheduler.every(0.1, name="quick")(ran.set)
    assert scheduler.start()
    assert not scheduler.start()  # once per process
    assert ran.wait(5)
    scheduler.stop()
    ran.clear()
    assert not ran.wait(0.6)


def test_a_job_that_lost_the_database_recovers_as_a_request_does(clean_jobs, caplog, monkeypatch):
    from django.db import OperationalError

    from quantumtrades.core import unavailable

    recovered = []
    monkeypatch.setattr(unavailable, "recover", recovered.append)

    @scheduler.every(1, name="cut off")
    def cut_off():
        raise OperationalError("terminating connection due to administrator command")

    assert scheduler.run_due() == ["cut off"]
    assert [str(exc) for exc in recovered] == ["terminating connection due to administrator command"]
    assert "scheduled job cut off: the database is unavailable" in caplog.text
    assert "Traceback" not in caplog.text  # a warning, not an error with a traceback
