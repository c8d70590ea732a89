"""What a build tells the user while it runs, and how long each of its phases took.

A build (``compile_graph``, and a traced function's trace-then-compile) runs inside
``building(title)``. Nothing is printed for a build shorter than ``announce_after`` seconds;
a longer one prints one line to stderr when that time has passed (one watching thread for all
builds: a build only puts itself on its heap) saying what is compiling, then ``done in X s`` when it ends. A build
nested in another (the compile of a traced function) joins the outer one, so a build prints at
most two lines. Every build records the seconds of each phase (``trace``, ``emit``, ``load``,
``numba compile``); ``compile_graph`` hands them to the ``Compiled`` it makes.

The settings (``verbose``: 0 silent, 1 the two lines, 2 the done line also lists the phases;
``announce_after``: seconds) belong to the public API (``symgrad.config``), which installs the
function reading them with ``install_settings``; until then the defaults hold.
"""

import heapq
import itertools
import os
import sys
import threading
import time
from contextlib import contextmanager

DEFAULTS = {"verbose": 1, "announce_after": 1.0, "compile": "background"}
COMPILE_MODES = ("background", "sync")  # see symgrad/settings.py and codegen/tiers.py


def _defaults():
    return DEFAULTS


_settings = _defaults  # () -> {"verbose": int, "announce_after": float}; see install_settings
_current = threading.local()


def install_settings(read):
    """Let ``read()`` (a dict with ``verbose``, ``announce_after`` and ``compile``) decide what
    builds print and when a numba build returns."""
    global _settings
    _settings = read


def setting(name):
    """The value of one setting in force (the defaults until ``install_settings``)."""
    return _settings().get(name, DEFAULTS[name])


class Build:
    """One build: its title, the generated lines once known, the seconds of each phase."""

    def __init__(self, title, verbose, announce_after, stream):
        self.title = title
        self.lines = None
        self.phases = {}
        self.phase = None
        self._nested = 0.0  # seconds of the phases measured inside the one running
        self.verbose = verbose
        self.announce_after = announce_after
        self.stream = stream
        self.start = time.perf_counter()
        self.announced = False
        self.finished = False
        self._lock = threading.Lock()
        if verbose > 0:
            _WATCHER.watch(self, self.start + announce_after)

    @contextmanager
    def measure(self, phase):
        """Time ``phase``; the seconds add up if the phase runs more than once. A phase measured
        inside another (a traced function's differentiation inside its trace) counts for itself
        alone: the outer phase's seconds are the rest."""
        outer, self.phase = self.phase, phase
        self.phases.setdefault(phase, 0.0)  # listed in the order the phases begin
        inner, self._nested = self._nested, 0.0
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            self.phases[phase] += seconds - self._nested
            self._nested = inner + seconds
            self.phase = outer if outer is not None else phase

    def _what(self):
        """What is compiling: the title, the generated lines once emitted, the phase running."""
        lines = "" if self.lines is None else f", {self.lines} generated line{'' if self.lines == 1 else 's'}"
        phase = "" if self.phase is None else f" ({self.phase})"
        return f"symgrad: compiling {self.title}{lines}{phase} ..."

    def _announce(self):
        with self._lock:
            if self.announced or self.finished:
                return
            self.announced = True
            self._write(self._what())

    def _write(self, line):
        try:
            print(line, file=self.stream, flush=True)
        except (OSError, ValueError):  # a closed stderr must not fail the build
            pass

    def finish(self, failed=False):
        seconds = time.perf_counter() - self.start
        with self._lock:
            self.finished = True
            if self.verbose == 0:
                return
            if not self.announced:
                # the timer may not have run yet although the time has passed
                if seconds < self.announce_after:
                    return
                self.announced = True
                self._write(self._what())
            detail = []
            if self.lines is not None:
                detail.append(f"{self.lines} generated line{'' if self.lines == 1 else 's'}")
            if self.verbose >= 2 and self.phases:
                detail.append(", ".join(f"{p} {s:.2f} s" for p, s in self.phases.items()))
            end = "failed after" if failed else "done in"
            tail = f" ({'; '.join(detail)})" if detail else ""
            self._write(f"symgrad: {self.title} {end} {seconds:.1f} s{tail}")


class _Watcher:
    """One daemon thread for every build: it sleeps until the earliest build's announce time and
    announces the builds still running then. A build only pushes (time, build) on a heap:
    starting a thread per build would cost more than a small build itself."""

    def __init__(self):
        self._cond = threading.Condition()
        self._heap = []
        self._order = itertools.count()
        self._pid = None  # the process whose thread runs (a forked child starts its own)

    def watch(self, build, when):
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._order), build))
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="symgrad-build-report", daemon=True).start()
            elif self._heap[0][2] is build:
                self._cond.notify()

    def _run(self):
        with self._cond:
            while True:
                if not self._heap:
                    self._cond.wait()
                    continue
                when, _, build = self._heap[0]
                wait = when - time.perf_counter()
                if wait > 0 and not build.finished:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                if not build.finished:
                    build._announce()


_WATCHER = _Watcher()


def current():
    """The build running in this thread, or None."""
    return getattr(_current, "build", None)


@contextmanager
def building(title):
    """Run a build named ``title``; inside a build already running in this thread, join it."""
    outer = current()
    if outer is not None:
        yield outer
        return
    settings = _settings()
    build = Build(title, settings["verbose"], settings["announce_after"], sys.stderr)
    _current.build = build
    failed = True
    try:
        yield build
        failed = False
    finally:
        _current.build = None
        build.finish(failed)
