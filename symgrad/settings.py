"""``symgrad.config``: the settings of the library as a whole.

- ``verbose``: what a build says on stderr. 0 nothing; 1 (the default) a build longer than
  ``announce_after`` seconds prints one line saying what is compiling (title, generated lines),
  then ``done in X s``; 2 the done line also gives the seconds of each phase (trace, emit, load,
  numba compile). The environment variable ``SYMGRAD_VERBOSE`` sets it when ``config`` has not.
- ``announce_after``: seconds a build runs before it says so (default 1.0).
- ``threads``: how many threads a call runs the row blocks of a long fused loop on (numba
  backend; a loop of at least ``codegen.threads.MIN_ROWS`` rows), at most numba's
  ``NUMBA_NUM_THREADS``. The default (None) is all of them. The results have the same bits
  whatever the count. The environment variable ``SYMGRAD_THREADS`` sets it when ``config`` has not.
- ``compile``: when a numba build returns. ``"background"`` (the default): as soon as the graph,
  its derivative and the numpy backend's twin of the kernel are ready; the first calls run on
  that twin while numba compiles the same module in a background thread, and the function then
  switches to numba's machine code (``vg.wait()`` waits for it; ``.kernel``, ``save()`` and
  ``.cache_state`` wait by themselves). ``"sync"``: the build returns when numba's machine code is
  ready. The environment variable ``SYMGRAD_COMPILE`` sets it when ``config`` has not.

The compiler does not import this module: importing it installs the function the compiler's
progress report reads (``codegen.progress.install_settings``) and the one its row blocks read
(``codegen.runtime.install_threads``), and gives the tracer the report
(``frontends.trace.install_build_report``) so that a traced function's trace and compile are one
build.
"""

from __future__ import annotations

import math
import os
from typing import Any

from .codegen import progress, runtime
from .errors import InputError
from .frontends import trace

ENV = "SYMGRAD_VERBOSE"
THREADS_ENV = "SYMGRAD_THREADS"
COMPILE_ENV = "SYMGRAD_COMPILE"
_LEVELS = (0, 1, 2)
_explicit: dict[str, Any] = {}  # what config() was given; the rest comes from the environment/defaults


def _check_verbose(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in _LEVELS:
        raise InputError(f"{where}: verbose must be 0 (silent), 1 (default) or 2 (phases), got {value!r}")
    return value


def _check_announce_after(value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value >= 0)
    ):
        raise InputError(f"symgrad.config: announce_after must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _check_threads(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(
            f"{where}: threads must be an int >= 1 (the threads a long loop runs on), got {value!r}"
        )
    return value


def _check_compile(value: Any, where: str) -> str:
    if not isinstance(value, str) or value not in progress.COMPILE_MODES:
        raise InputError(
            f"{where}: compile must be 'background' (numpy first, numba in a background thread) or "
            f"'sync' (wait for numba), got {value!r}"
        )
    return value


def _threads_from_environment() -> int | None:
    text = os.environ.get(THREADS_ENV)
    if text is None or not text.strip():
        return None
    try:
        value = int(text.strip())
    except ValueError:
        value = text
    return _check_threads(value, f"environment variable {THREADS_ENV}={text!r}")


def threads() -> int | None:
    """The threads in force for row blocks: ``config``'s, else ``SYMGRAD_THREADS``, else None (all)."""
    return _explicit["threads"] if "threads" in _explicit else _threads_from_environment()


def _compile_from_environment() -> str:
    text = os.environ.get(COMPILE_ENV)
    if text is None or not text.strip():
        return progress.DEFAULTS["compile"]
    return _check_compile(text.strip().lower(), f"environment variable {COMPILE_ENV}={text!r}")


def _verbose_from_environment() -> int:
    text = os.environ.get(ENV)
    if text is None or not text.strip():
        return progress.DEFAULTS["verbose"]
    try:
        value = int(text.strip())
    except ValueError:
        value = text
    return _check_verbose(value, f"environment variable {ENV}={text!r}")


def current() -> dict[str, Any]:
    """The settings in force: those given to ``config``, else the environment's, else the defaults."""
    return {
        "verbose": _explicit["verbose"] if "verbose" in _explicit else _verbose_from_environment(),
        "announce_after": _explicit.get("announce_after", progress.DEFAULTS["announce_after"]),
        "threads": threads(),
        "compile": _explicit["compile"] if "compile" in _explicit else _compile_from_environment(),
    }


class Settings(dict):
    """The settings in force after a ``config`` call; as a context manager, the block runs with
    them and the settings given before are back afterwards."""

    def __init__(self, now: dict[str, Any], before: dict[str, Any]) -> None:
        super().__init__(now)
        self._before = before

    def __enter__(self) -> Settings:
        return self

    def __exit__(self, *exc: object) -> None:
        _explicit.clear()
        _explicit.update(self._before)


def config(
    *,
    verbose: int | None = None,
    announce_after: float | None = None,
    threads: int | None = None,
    compile: str | None = None,
) -> Settings:
    """Set what symgrad's builds print (``verbose`` 0, 1 or 2; ``announce_after`` seconds), how
    many threads a long fused loop runs on (``threads``, numba backend) and when a numba build
    returns (``compile``: "background" or "sync"), and return the settings now in force.
    ``with sg.config(verbose=0): ...`` sets them for a block. An argument left at None keeps its
    setting."""
    checked = {}
    if threads is not None:
        checked["threads"] = _check_threads(threads, "symgrad.config")
    if compile is not None:
        checked["compile"] = _check_compile(compile, "symgrad.config")
    if verbose is not None:
        checked["verbose"] = _check_verbose(verbose, "symgrad.config")
    if announce_after is not None:
        checked["announce_after"] = _check_announce_after(announce_after)
    before = dict(_explicit)
    _explicit.update(checked)
    return Settings(current(), before)


progress.install_settings(current)
runtime.install_threads(threads)
trace.install_build_report(progress.building)
