"""Fixtures the compiler's tests share."""

import threading

import pytest

from symgrad.codegen import tiers


class Gate(threading.Event):
    """Set by the test to let the background compiles run. ``timeout``: how long a call may wait
    for numba while the gate is closed (a first tier that raises waits for numba's machine code,
    which the closed gate holds back) before the test fails instead of hanging."""

    timeout = 30.0


@pytest.fixture
def gate(monkeypatch):
    """Background compiles wait until the test sets the returned ``Gate``."""
    opened = Gate()
    run, wait = tiers.NumbaJob.run, tiers.NumbaJob.wait

    def held(job):
        if not opened.wait(opened.timeout):
            job.cancel("the test never opened the gate")
            return
        run(job)

    def bounded_wait(job):
        if not opened.wait(opened.timeout):
            pytest.fail(
                f"{job.title}: a call waited {opened.timeout:g} s for numba while the test held the "
                "gate closed (did the first tier raise? see the exception above)",
                pytrace=False,
            )
        wait(job)

    monkeypatch.setattr(tiers.NumbaJob, "run", held)
    monkeypatch.setattr(tiers.NumbaJob, "wait", bounded_wait)
    yield opened
    opened.set()
