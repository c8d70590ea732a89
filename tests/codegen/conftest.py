"""Fixtures the compiler's tests share."""

import threading

import pytest

from symgrad.codegen import tiers


@pytest.fixture
def gate(monkeypatch):
    """Background compiles wait until the test sets the returned event."""
    opened = threading.Event()
    run = tiers.NumbaJob.run

    def held(job):
        assert opened.wait(120), "the test never opened the gate"
        run(job)

    monkeypatch.setattr(tiers.NumbaJob, "run", held)
    yield opened
    opened.set()
