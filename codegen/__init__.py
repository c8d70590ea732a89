"""Turn a finished symgrad graph into source text and machine code.

``compile_graph`` is the only entry point ``symgrad`` uses. A backend is an
``Emitter`` subclass in its own module, listed in ``BACKENDS``.
"""

import sys
import threading
import time
import types
from contextlib import contextmanager, nullcontext
import warnings
import weakref

from symgrad.errors import UnsupportedError
from symgrad.ops.linalg import share_factor
from .numba_backend import NumbaEmitter
from .numba_cache import load_cached
from .numpy_backend import NumpyEmitter
from . import runtime, tiers
from .progress import building, setting
from .runtime import Compiled, drop_compiled_caches, hold, load_module, module_name

BACKENDS = {"numba": NumbaEmitter, "numpy": NumpyEmitter}


def _numba_signature(inputs, emitter=None):
    """numba's types of ``inputs`` (``kernel``'s signature); with the ``emitter`` that printed the
    module, those of the machine code it calls (``kernel_into`` takes the arrays it fills after)."""
    return runtime.numba_signature(inputs, [alloc.target for _, alloc in getattr(emitter, "passed", ())])


def max_statements():
    """The largest module (in lines) the numba backend will compile: numba's compile time grows
    faster than linearly with straight-line code (about 26 s for 9,000 lines here). Lines are
    counted after runs of repeated scalar statements are rolled into loops (a recurrence of any
    depth is a few dozen lines; see ``schedule.find_loops``)."""
    import os

    try:
        return int(os.environ.get("SYMGRAD_MAX_STATEMENTS", "20000"))
    except ValueError:
        return 20000


def compile_graph(
    outputs,
    inputs,
    *,
    output_names,
    structure,
    primary=1,
    backend="numba",
    title="f",
    entry="call",
    notes=None,
):
    """Emit, load and (for numba) compile the module computing ``outputs`` from ``inputs``.

    ``notes`` (``symgrad.autodiff.RuleNotes``, from the derivative call that built the outputs)
    gives the rule comments; without it the source has none. A build longer than a second says
    so on stderr (``progress.building``); the ``Compiled`` keeps the seconds of each phase in
    ``build_phases``."""
    if backend not in BACKENDS:
        raise UnsupportedError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    with building(title) as build:
        compiled = _compile(
            build, outputs, inputs, output_names, structure, primary, backend, title, entry, notes
        )
    return compiled


def _compile(build, outputs, inputs, output_names, structure, primary, backend, title, entry, notes):
    start = time.perf_counter()
    emitter = BACKENDS[backend](notes)
    outputs = share_factor(outputs)  # one Cholesky factorisation for every use of the matrix
    arguments = (list(outputs), list(output_names), list(inputs), primary, entry, title, structure)
    with build.measure("emit"):
        source = emitter.module(*arguments)
    statements = source.count("\n")
    build.lines = statements
    if backend == "numba" and statements > max_statements():
        raise UnsupportedError(
            f"the generated module has {statements} lines, more than numba compiles in reasonable "
            f"time (the limit is {max_statements()}, set by SYMGRAD_MAX_STATEMENTS); use "
            "backend='numpy' for this graph, or an hvp/vjp instead of a dense derivative"
        )
    graph = emitter.order  # topo_order(outputs), walked by the emitter
    job = None
    if backend == "numba" and setting("compile") == "background":
        job = _background(build, emitter, source, graph, inputs, arguments, notes)
    if job is not None:
        module, cache_state = job.namespace_module, None
    else:
        with build.measure("load"):
            module, existed = load_module(source, backend)
        cache_state = "source cached" if existed else "new"
        if backend == "numba":
            signature = _numba_signature(inputs, emitter)
            module, cache_state = _compile_numba(module, source, signature, build.measure)
    seconds = time.perf_counter() - start
    nodes = len(graph)
    compiled = Compiled(
        source, module, entry, inputs, outputs, output_names, backend, title, seconds, nodes, cache_state, job
    )
    compiled.build_phases = dict(build.phases)  # a traced function's build includes its trace

    def standalone_module():
        # the same module printed for save(): see Emitter.standalone
        printer = BACKENDS[backend](notes)
        printer.standalone = True
        return printer.module(*arguments)

    compiled._standalone_module = standalone_module
    if job is None:
        hold(compiled, module)  # its module leaves sys.modules when the last Compiled using it is gone
    else:
        hold(compiled, job.numpy_module)
        job.owner = weakref.ref(compiled)
        tiers.submit(job)
    return compiled


@contextmanager
def _numba_warnings_silenced():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# numba's SSA pass recurses once per basic block along a variable's definitions: a kernel of
# thousands of branches (the Jacobian of an unrolled RNN's stacked states, 5,600 lines) goes past
# Python's default limit of 1,000 frames. Its frames are Python's own (no C stack in 3.11), so a
# compile runs with room for this many
COMPILE_RECURSION = 50_000
_recursion = {"depth": 0, "saved": None}
_recursion_lock = threading.Lock()


@contextmanager
def deep_recursion(limit=COMPILE_RECURSION):
    """Python's recursion limit at least ``limit`` while numba compiles (restored when the last
    compile of the process, on any thread, has finished)."""
    with _recursion_lock:
        if _recursion["depth"] == 0:
            _recursion["saved"] = sys.getrecursionlimit()
            if _recursion["saved"] < limit:
                sys.setrecursionlimit(limit)
        _recursion["depth"] += 1
    try:
        yield
    finally:
        with _recursion_lock:
            _recursion["depth"] -= 1
            if _recursion["depth"] == 0 and sys.getrecursionlimit() == max(_recursion["saved"], limit):
                sys.setrecursionlimit(_recursion["saved"])


def _compile_numba(module, source, signature, measure, silenced=_numba_warnings_silenced):
    """Compile ``module``'s kernel for ``signature`` (or load it from numba's disk cache) and bind
    ``kernel_entry`` to its machine code: (the module, what the cache did). ``measure(phase)``
    times a phase; ``silenced()`` keeps numba's warnings from the user (catch_warnings swaps the
    process's filters: the background worker passes ``contextlib.nullcontext``, see tiers)."""
    # the stats count over the dispatcher's life; what this compile did is the difference
    stats = runtime.machine_kernel(module).stats
    hits, misses = sum(stats.cache_hits.values()), sum(stats.cache_misses.values())
    with measure("numba compile"), deep_recursion():
        try:
            # a second process loads the machine code without numba's start-up (numba_cache)
            if not load_cached(runtime.machine_kernel(module), signature):
                with silenced():
                    runtime.machine_kernel(module).compile(signature)
        except Exception:
            # a truncated or corrupt numba cache file: drop it, import afresh, compile again
            kernel = runtime.kernel_module(module)
            dropped = drop_compiled_caches(module.__name__)
            if kernel is not None:
                dropped += drop_compiled_caches(kernel.__name__)
            if not dropped:
                raise
            module, _ = load_module(source, "numba", fresh=True)
            stats = runtime.machine_kernel(module).stats
            hits, misses = sum(stats.cache_hits.values()), sum(stats.cache_misses.values())
            with silenced():
                runtime.machine_kernel(module).compile(signature)
    # call() has checked the argument types, so it calls this overload's machine code directly
    module.kernel_entry = runtime.machine_kernel(module).overloads[signature].entry_point
    if getattr(module, "kernel_blocks", None) is not None:
        # the row blocks of long loops take the same arguments: runtime.run_blocks compiles and
        # calls them for these types
        module.kernel_blocks.built_signature = signature
    stats = runtime.machine_kernel(module).stats
    if sum(stats.cache_hits.values()) > hits:
        return module, "machine code loaded from cache"
    if sum(stats.cache_misses.values()) > misses:
        return module, "compiled, saved to cache"
    return module, "already compiled in this process"


def _background(build, emitter, source, graph, inputs, arguments, notes):
    """The first tier of a background build (see ``tiers``): the numpy twin loaded and the numba
    module's entry run from its text, calling the twin; the numba compile queued for the worker
    thread. None when the numpy backend cannot build this graph, when it holds float32 values
    (numba's reductions of them add in float64, numpy's in float32: the first calls would be
    less exact), or when this process has the machine code already (the build then waits for
    numba, or needs not)."""
    if any(node.dtype == "float32" for node in graph):
        return None
    # the machine code of its kernel is here already (this function at another loop length);
    # a process that has not imported numba has none, and the first tier needs no numba: the
    # worker imports it (0.5-1 s), not the build
    if "numba" in sys.modules:
        name = module_name(source, "numba")
        if runtime.has_overload(
            runtime.kernel_module_name(source) or name, _numba_signature(inputs, emitter)
        ):
            return None
    with build.measure("numpy twin"):
        try:
            twin_source = NumpyEmitter(notes, rolled=emitter.rolled).module(*arguments)
            twin, _ = load_module(twin_source, "numpy")
        except Exception:
            return None

    def compile_numba(owner):
        phases = {}
        measure = runtime.phase_timer(phases)
        with measure("load"):
            module, _ = load_module(source, "numba")
        signature = _numba_signature(inputs, emitter)
        module, cache_state = _compile_numba(module, source, signature, measure, nullcontext)
        hold(owner, module)
        return module, cache_state, phases

    name = module_name(source, "entry")  # the numba module's entry, run on the twin until numba is ready
    namespace = types.ModuleType(name)
    namespace.__dict__.update(np=runtime.np, _cv=runtime)
    job = tiers.NumbaJob(build.title, compile_numba, namespace.__dict__, build.start, setting("verbose"))
    job.namespace_module, job.numpy_module = namespace, twin
    passed = [k for k, _ in emitter.passed]
    namespace.kernel_entry = tiers.first_tier(twin.kernel, inputs, arguments[0], job, passed, emitter.bare)
    if "kernel_blocks" in emitter.entry_source:
        # a long loop's row blocks (codegen/threads.py) run on the twin too until numba is ready
        namespace.kernel_blocks = namespace.kernel_entry
    filename = f"<symgrad entry of {name}>"
    exec(compile(emitter.entry_source, filename, "exec", dont_inherit=True), namespace.__dict__)
    return job
