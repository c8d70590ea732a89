"""The fast first tier of a numba build (``symgrad.config(compile="background")``, the default).

numba's type inference and compile take seconds, most of a build; the numpy backend's twin of
the same kernel builds in milliseconds. A background build returns as soon as the numba module's
text and the numpy twin are ready. The ``Compiled`` calls the numba module's entry function
(argument checks and conversions, exactly as in ``.source``) from the first call on, run from its
own text in a namespace of its own whose ``kernel_entry`` is ``first_tier``: the numpy twin, fed
and boxed as numba's machine code is. A worker thread loads the numba module, compiles the kernel
and then rebinds ``kernel_entry`` to the machine code; it starts once the first call has returned
(``START_DELAY``: its Python work would hold that first result back). That one assignment is the switch: a call
runs wholly on one tier, nothing else in the call path changes, and the entry costs what it costs
after a sync build. If numba fails, ``kernel_entry`` becomes a function raising numba's error, so
the next call (or ``wait()``) raises what a sync build would have raised.

numba's type inference is Python and shares the GIL with the caller: a program that does
nothing but call the function would slow numba down as much as numba slows its calls, so once
the first tier's calls take more than half of the time since the build (after a quarter of a
second), a call waits for numba instead (``FIRST_TIER_SHARE``, ``FIRST_TIER_FLOOR``).

The two tiers compute the same expressions; numba's fused loops may add in another order, so the
first calls' results may differ from numba's in the last bits. If the numpy twin raises (an index
out of range, say), the call waits for numba and numba's machine code decides what it does.

The worker is one non-daemon thread that lives while there are compiles to run. At interpreter
exit, Python joins it: the compile running finishes (its machine code goes to the disk cache)
and the ones not started are dropped, so exit neither kills a thread inside LLVM nor hangs.
"""

import collections
import os
import sys
import threading
import time
import warnings

import numpy as np

from symgrad.errors import UnsupportedError


class NumbaJob:
    """One background numba compile. ``compile(owner)`` runs in the worker and returns
    (module, cache state, seconds per phase); ``namespace`` is the entry's globals, whose
    ``kernel_entry`` it rebinds. ``owner`` is a weak reference to the Compiled (set by the
    caller): a function collected before its turn is not compiled."""

    def __init__(self, title, compile, namespace, started, verbose):
        self.title = title
        self._compile = compile
        self.namespace = namespace
        self.started = started  # perf_counter at the start of the build
        self.verbose = verbose
        self.owner = None
        self.finished = threading.Event()
        self.go = threading.Event()  # set once the first call has returned (see START_DELAY)
        self.module = None
        self.cache_state = None
        self.phases = {}
        self.error = None
        self._traceback = None
        self.ready_at = None  # perf_counter when numba's machine code was bound (or the compile failed)

    def run(self):
        owner = self.owner() if self.owner is not None else None
        if owner is None:
            self.cancel("the compiled function was collected before numba compiled it")
            return
        try:
            _ignore_numba_warnings()
            module, state, phases = self._compile(owner)
        except Exception as exc:
            self.error, self._traceback = exc, exc.__traceback__
            self._bind(self._raise, self._raise)
        else:
            self.module, self.cache_state, self.phases = module, state, phases
            self._bind(module.kernel_entry, getattr(module, "kernel_blocks", None))  # the switch
        finally:
            del owner
            self.ready_at = time.perf_counter()
            self.finished.set()
        if self.verbose >= 2:
            what = "failed" if self.error is not None else f"ready ({self.cache_state})"
            _say(
                f"symgrad: {self.title}: numba {what} {self.ready_at - self.started:.1f} s after the build began"
            )

    def cancel(self, reason):
        self.error = UnsupportedError(f"{self.title}: numba did not compile it: {reason}")
        self._bind(self._raise, self._raise)
        self.ready_at = time.perf_counter()
        self.finished.set()

    def _bind(self, entry, blocks):
        """Point the entry's kernels at numba's (or at the error): ``kernel_entry``, and
        ``kernel_blocks`` (the row blocks of long loops, codegen/threads.py) when the entry has one."""
        if "kernel_blocks" in self.namespace and blocks is not None:
            self.namespace["kernel_blocks"] = blocks
        self.namespace["kernel_entry"] = entry

    def _raise(self, *args):
        raise self.error.with_traceback(self._traceback)

    def wait(self):
        """Return once numba's machine code is bound; raise numba's error if it failed."""
        if not self.finished.is_set():
            self.go.set()
            _start_worker()
            self.finished.wait()
        if self.error is not None:
            raise self.error.with_traceback(self._traceback)


# When the calls themselves become the program's work (a loop calling the function), the first
# tier costs more than it gives: numba's compile is Python (type inference) sharing the GIL with
# the calls, so both slow down (measured: an RNN's calls 4x slower and numba ready 2.5x later).
# Once the first tier's calls have taken more than FIRST_TIER_FLOOR seconds and more than
# FIRST_TIER_SHARE of the time since the build began, a call waits for numba instead.
FIRST_TIER_FLOOR = 0.25
FIRST_TIER_SHARE = 0.5

# The worker's load of the numba module (and numba's cache lookup) is Python too: run beside the
# first call, which follows a traced function's build at once, it holds that call back (measured:
# the MLP's warm first result 0.38-0.42 s with it, 0.10-0.29 s without). So a compile starts once
# the first call has returned, a caller waits for numba, or START_DELAY seconds have passed
# without a call.
START_DELAY = 0.25


def first_tier(numpy_kernel, inputs, outputs, job, passed=(), bare=False):
    """The numba module's ``kernel_entry`` until numba is ready: the numpy twin's kernel with
    scalars as numpy scalars (IEEE arithmetic, as machine code), scalar results as numba boxes
    them (Python float, int, bool) and arrays C-contiguous of the built dtype. ``passed``: the
    positions of the outputs the machine code (``kernel_into``) writes into arrays given after
    the inputs: those are copied there, and the others returned; ``bare``: the one other output
    returned as it is, not in a tuple, as the machine code returns it (``Emitter.bare``)."""
    scalars = [(k, np.dtype(s.dtype).type) for k, s in enumerate(inputs) if s.ndim == 0]
    boxes = [(o.ndim == 0, np.dtype(o.dtype)) for o in outputs]
    count, passed = len(inputs), list(passed)
    spent = [0.0]  # seconds in this tier's calls

    def kernel_entry(*args):
        given = args
        begin = time.perf_counter()
        if spent[0] > FIRST_TIER_FLOOR and spent[0] > FIRST_TIER_SHARE * (begin - job.started):
            job.wait()  # a loop of calls: numba's machine code, as soon as the GIL lets it finish
            return job.namespace["kernel_entry"](*given)
        if scalars:
            args = list(args)
            for k, kind in scalars:
                if type(args[k]) is np.ndarray and args[k].ndim:
                    # as numba's read of a scalar refuses it (the entry names the argument)
                    raise TypeError(f"a scalar argument is an array of rank {args[k].ndim}")
                args[k] = kind(args[k])
        try:
            with np.errstate(all="ignore"):
                out = numpy_kernel(*args[:count])
            for k, into in zip(passed, args[count:]):
                into[...] = out[k]
            spent[0] += time.perf_counter() - begin
            result = tuple(
                np.asarray(o).item() if scalar else np.ascontiguousarray(o, dtype)
                for k, (o, (scalar, dtype)) in enumerate(zip(out, boxes))
                if k not in passed
            )
        except Exception:
            job.wait()
            return job.namespace["kernel_entry"](*given)
        if not job.go.is_set():
            job.go.set()  # the first result is out: numba's compile may start (START_DELAY)
        return result[0] if bare else result

    return kernel_entry


class _NumbaWarnings:
    # numba's warnings about a generated module (attributed to its file) are symgrad's business,
    # not the user's; the sync build silences them with catch_warnings, which a second thread
    # cannot use (it swaps the process's filter list), so the worker adds one filter for them
    installed = False


def _ignore_numba_warnings():
    if not _NumbaWarnings.installed:
        # numba: heavy optional import (see tests/test_layering.py); only numba builds come here
        from numba.core.errors import NumbaWarning

        warnings.filterwarnings("ignore", category=NumbaWarning, module=r".*symgrad_numba_[0-9a-f]+$")
        _NumbaWarnings.installed = True


def _say(line):
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


# ---------------------------------------------------------------- the worker

_jobs = collections.deque()
_lock = threading.Lock()
_state = {"worker": None, "pid": None, "running": None}


def submit(job):
    """Queue ``job`` for the worker thread (started if none runs)."""
    with _lock:
        _jobs.append(job)
    _start_worker()


def _start_worker():
    with _lock:
        alive = _state["pid"] == os.getpid() and _state["worker"] is not None
        if alive or not (_jobs or _state["running"]):
            return
        if _state["running"] is not None:  # a fork's child: the parent's thread ran it
            _jobs.appendleft(_state["running"])
            _state["running"] = None
        # not a daemon: at exit Python joins it, so no thread is killed inside numba or LLVM
        thread = threading.Thread(target=_work, name="symgrad-numba-compile", daemon=False)
        _state["worker"], _state["pid"] = thread, os.getpid()
    thread.start()


def _work():
    while True:
        with _lock:
            if not _jobs:
                _state["worker"] = None
                return
            job = _state["running"] = _jobs.popleft()
        try:
            if threading.main_thread().is_alive():
                # taken while the program runs: an exit during the wait still compiles it (as the
                # compile running at exit, so the next process finds its machine code)
                job.go.wait(START_DELAY)
                job.run()
            else:
                job.cancel("the interpreter exited first")
        finally:
            with _lock:
                _state["running"] = None


def _after_fork_in_child():
    # the parent's worker may have held the lock at the fork; the child's first wait() or
    # submit() starts its own worker, which runs the parent's running job again (numba's own
    # compiler lock is numba's: a fork in the middle of a compile leaves the child's held)
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def pending():
    """Background compiles queued or running in this process (for tests)."""
    with _lock:
        return len(_jobs) + (_state["running"] is not None)
