"""Tracing plain numpy code: ``sg.grad(fn)``, ``sg.value_and_grad(fn)``, ``sg.jacobian(fn)``,
``sg.hessian(fn)`` and ``sg.compile(fn)`` on a Python function.

On a call, each array or number argument is replaced by a symbol standing for
it, named after the function's parameter (``W``, ``b``, ``X``; ``args0``,
``args1`` for ``*args``), and the function runs once on those symbols: numpy
calls on them build the graph (``numpy_protocol``). An argument may be a pytree
(nested tuples, lists, dicts, namedtuples, dataclasses; ``symgrad.pytree``):
each leaf is a symbol named after its path (``params_W``, ``layers_0_b``). The
transformation (``symgrad.transforms``: the gradient with respect to the
``argnums`` arguments, a Jacobian, a Hessian, or the output itself) is applied
to what the function returned, the result is compiled, and the compiled function
is called with the actual leaves. ``argnums`` counts the function's parameters
in order (an int gives one result, a tuple a tuple, as in JAX); it defaults to 0.
Called with symgrad expressions instead (inside another trace: ``sg.grad(sg.grad(f))``),
the transformation is applied symbolically and expressions come back.

Sizes are symbolic, so one trace and one compile serve every batch size. Each
axis of an array argument is a named dim, and axes of equal size share one
dim, named after the first parameter and axis that has that size: for
``loss(W, b, X, t)`` with ``W`` (3,), ``X`` (100, 3) and ``t`` (100,), the
symbols are ``W: (W_0,)``, ``X: (X_0, W_0)``, ``t: (X_0,)``. That is how ops
that need equal sizes (``X @ W``, ``p - t``) see equal dims. An axis of size 1
stays the number 1, because broadcasting depends on it.

A trace is cached per signature of the arguments: each argument's rank and
dtype, and which of the axes are equal to one another or to 1 (so a batch
size that happens to equal the feature count, or is 1, traces again; any other
batch size reuses the compiled function). Python floats and ints are scalar
symbols (an int differentiated becomes float64); ``bool``, strings and other
hashable values are static: the trace sees the value itself and the cache keys
on it. ``None`` is an empty pytree, as in JAX; a pytree's structure is part of
the key too.

Some code needs a size as a number: ``range(X.shape[1])``, ``np.arange(K)``
compared with a symbolic axis, ``np.eye(d)``. When tracing on symbolic sizes
fails, the function is traced with every size concrete and then, one class of
equal axes at a time, as few sizes as possible are kept concrete; those sizes
join the cache key (a new value compiles again), the others stay symbolic. So
the function may run a few times on its first call; it should not have side
effects that matter. Branching on a symbolic size compares a SymPy symbol:
``X.shape[0] > 5`` fails (and makes that size concrete), but ``X.shape[0] == 5``
is silently False; write such code with the size as a static argument.

A call of arrays and numbers only, given positionally, goes through a small generated
dispatcher for the most recent signature: it checks each argument's type and dtype and
that the sizes of different classes of axes still differ and are not 1, then calls the
compiled entry, which checks the rest; any other call (keywords, pytrees, another
signature, an entry's InputError) takes the full path above.

Random numbers cannot be drawn inside a traced function (they would be drawn once
and compiled in as constants): ``np.random.*``, a ``Generator``/``RandomState`` the
function reaches, or one called on a traced value raise ``UnsupportedError``; draw
the noise outside and pass it in as an argument.
"""

import contextlib
import functools
import inspect
import pickle
import sys
import threading
import types
import typing
from typing import Any

import numpy as np

from .. import loops, pytree, transforms
from ..autodiff import RuleNotes
from ..errors import InputError, SymgradError, UnsupportedError
from ..graph import Expr, as_dtype, is_float, shape_str
from ..symbol_constructors import tensor
from . import numpy_protocol  # installs numpy's protocols on Expr

_CONTROL_FLOW_HINT = (
    "a traced function runs on symbolic values, so Python `if`/`while`/`and`/`or` cannot look "
    "at their numbers; use np.where(cond, a, b) (or sg.where) to pick between values instead"
)


# ---------------------------------------------------------------- random numbers in a trace
# A traced function runs once, so numbers drawn in it would be baked into the compiled
# function as constants: every call would see the same "noise". Three guards refuse it:
# np.random's functions are wrapped while any trace runs and refuse in a tracing thread
# (other threads pass through to numpy); an error raised inside numpy.random's code on a
# traced value is reported as such; and a Generator/RandomState the function can reach
# (its closure, globals, defaults, static arguments and their attributes) whose state
# changed during the trace is refused. Generator methods themselves cannot be wrapped
# (numpy's types are immutable), so a generator reachable only some other way is not seen.

_NOISE_HINT = (
    "random numbers drawn while tracing would be drawn once and baked into the compiled "
    "function as constants (every call the same noise). Draw them outside the function and "
    "pass them in as an argument, e.g. vg(W, X, noise) with noise = rng.normal(size=X.shape)"
)


class _RandomNumbersInTrace(UnsupportedError):
    pass


_tracing = threading.local()
_patch_lock = threading.Lock()
_patch_users = 0
_patch_saved = {}  # (module, name) -> the original attribute, while patched
_patch_wrappers = {}  # (module name, name) -> wrapper: made once, installed while a trace runs


def _refusing(name, original):
    @functools.wraps(original)
    def refusing(*args, **kwargs):
        if getattr(_tracing, "depth", 0):
            raise _RandomNumbersInTrace(
                f"np.random.{name} was called inside a traced function; {_NOISE_HINT}"
            )
        return original(*args, **kwargs)

    return refusing


def _patches():
    """(module, name, make_wrapper) for every module attribute swapped while a trace runs:
    np.random's functions refuse in tracing threads; scipy.special's functions that have an
    op (logsumexp, softmax, ...) route symbolic arguments to it (numpy_protocol.SCIPY_FUNCTIONS)."""
    out = []
    for name in getattr(np.random, "__all__", ()):
        original = getattr(np.random, name, None)
        if callable(original) and not isinstance(original, type):
            out.append((np.random, name, functools.partial(_refusing, name)))
    special = sys.modules.get("scipy.special")
    if special is not None:
        for name in numpy_protocol.SCIPY_FUNCTIONS:
            if callable(getattr(special, name, None)):
                out.append((special, name, functools.partial(numpy_protocol.scipy_router, name)))
    # np.array/np.mean/... of lists of traced values, builtins max/min/sum, np.r_/np.c_
    out.extend(numpy_protocol.trace_patches())
    scipy_linalg = sys.modules.get("scipy.linalg")
    if scipy_linalg is not None:
        for name in numpy_protocol.SCIPY_LINALG_FUNCTIONS:
            if callable(getattr(scipy_linalg, name, None)):
                out.append((scipy_linalg, name, functools.partial(numpy_protocol.scipy_linalg_router, name)))
    return out


@contextlib.contextmanager
def _trace_patches():
    """While any thread traces, the _patches() wrappers are installed (they pass every other
    call through to the original, so other threads are unaffected); the last trace to end
    puts the originals back."""
    global _patch_users
    with _patch_lock:
        if _patch_users == 0:
            for module, name, make in _patches():
                original = getattr(module, name)
                key = (module.__name__, name)
                wrapper = _patch_wrappers.get(key)
                if wrapper is None or wrapper.__symgrad_original__ is not original:
                    wrapper = _patch_wrappers[key] = make(original)
                    wrapper.__symgrad_original__ = original
                _patch_saved[(module, name)] = original
                setattr(module, name, wrapper)
        _patch_users += 1
    _tracing.depth = getattr(_tracing, "depth", 0) + 1
    try:
        yield
    finally:
        _tracing.depth -= 1
        with _patch_lock:
            _patch_users -= 1
            if _patch_users == 0:
                for (module, name), original in _patch_saved.items():
                    if getattr(getattr(module, name, None), "__symgrad_original__", None) is original:
                        setattr(module, name, original)
                _patch_saved.clear()


def _random_frame(tb):
    """The numpy.random function an exception passed through (Cython adds its frames), or None."""
    while tb is not None:
        code = tb.tb_frame.f_code
        if "numpy/random/" in code.co_filename.replace("\\", "/"):
            return code.co_name.replace("numpy.random._generator.", "").replace("numpy.random.mtrand.", "")
        tb = tb.tb_next
    return None


_GENERATORS = (np.random.Generator, np.random.RandomState)


def _reachable_generators(fn, leaves):
    """Generators and RandomStates the function can reach: closure cells, the globals its code
    names, its defaults, static arguments, and one level of attributes of each of those."""
    found = {}
    candidates = [leaf.value for leaf in leaves if leaf.kind == "static"]
    seen_fns = set()
    stack = [fn]
    while stack:
        f = stack.pop()
        if id(f) in seen_fns:
            continue
        seen_fns.add(id(f))
        if isinstance(f, functools.partial):
            candidates.extend(f.args)
            candidates.extend(f.keywords.values())
            stack.append(f.func)
            continue
        if isinstance(f, types.MethodType):
            candidates.append(f.__self__)
            stack.append(f.__func__)
            continue
        if not isinstance(f, types.FunctionType):
            candidates.append(f)  # a callable object: its attributes
            continue
        candidates.extend(f.__defaults__ or ())
        candidates.extend((f.__kwdefaults__ or {}).values())
        for cell in f.__closure__ or ():
            try:
                candidates.append(cell.cell_contents)
            except ValueError:
                pass
        codes = [f.__code__]
        while codes:
            code = codes.pop()
            for name in code.co_names:
                if name in f.__globals__:
                    candidates.append(f.__globals__[name])
            codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    for c in candidates:
        if isinstance(c, _GENERATORS):
            found[id(c)] = c
            continue
        if isinstance(c, (types.ModuleType, type)):
            continue
        attrs = getattr(c, "__dict__", None)
        if isinstance(attrs, dict):
            for v in list(attrs.values()):
                if isinstance(v, _GENERATORS):
                    found[id(v)] = v
    return list(found.values())


def _generator_state(g):
    bits = g.bit_generator if isinstance(g, np.random.Generator) else g._bit_generator
    return pickle.dumps(bits.state)


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        return False
    return True


class _Leaf:
    """One array, number or static value among a call's arguments (a leaf of their pytrees):
    its label (the symbol's name), which top-level argument it belongs to, and how it is traced."""

    __slots__ = ("label", "top", "value", "kind", "dtype", "shape", "mapped")

    def __init__(self, label, top, value):
        self.label, self.top, self.value = label, top, value
        self.kind = self.dtype = self.shape = self.mapped = None


class _MappedSize(int):
    """The size of an axis sg.vmap maps over, as a key of the classes of equal axes: its own
    class whatever its size (1 too, and equal to another axis or not), so one trace serves every
    batch size."""

    def __eq__(self, other):
        return type(other) is _MappedSize and int(self) == int(other)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(("mapped", int(self)))


def is_dask(value):
    """Is ``value`` a Dask array (checked without importing Dask)?"""
    return type(value).__module__.startswith("dask.") and hasattr(value, "chunks")


class _Unreported:
    """A build nobody reports on (until the compiler's progress report is installed)."""

    @staticmethod
    def measure(phase):
        return contextlib.nullcontext()


def _unreported(title):
    return contextlib.nullcontext(_Unreported)


_building = _unreported  # title -> context manager of a build; see install_build_report


def install_build_report(building):
    """Let ``building(title)`` (a context manager giving an object with ``measure(phase)``, as
    ``symgrad.codegen.progress.building``) report a traced function's trace and compile as one
    build: the compile joins it."""
    global _building
    _building = building


def traced(fn, compile, spec, backend="numba", mapped=None):
    """``fn`` transformed by ``spec`` (a ``transforms.Spec``), traced on symbolic stand-ins of its
    arguments and compiled by ``compile(result, inputs, backend) -> (Compiled, unflatten)``
    (the public API's compile of a ``transforms.Result``). ``mapped(args)``, for sg.vmap, gives
    the axis each leaf of the positional arguments is mapped over (or None): that axis is a
    symbolic size of its own for every batch size."""
    return TracedFunction(fn, compile, spec, backend, mapped)


class _Missing:
    def __repr__(self):
        return "<no argument>"


_MISSING = _Missing()
_STATIC_SINGLETONS = (True, False, None)


class TracedFunction:
    """A Python function, transformed (value_and_grad, grad, jacobian, hessian) or only compiled,
    traced on symbolic stand-ins of its arguments: call it like ``fn``.

    Arguments are pytrees (nested tuples, lists, dicts, namedtuples, dataclasses) of arrays and
    numbers; derivatives come back in the structure of the differentiated arguments. Called
    with symgrad expressions (inside another trace, as in ``sg.grad(sg.grad(f))``) it returns
    expressions. It has what a ``Compiled`` has, for the most recent call's compiled function:
    ``.source``, ``.kernel``, ``.inputs`` (the leaves of the arguments, in order; static values
    are not inputs), ``.outputs``, ``.compiles``, ``.save(path)``; and ``.scipy(*args)``,
    ``.compiled_for(*args)`` (the Compiled serving ``args``, taking the leaves), ``.trace_count``
    (runs of ``fn`` on symbols) and ``.compile_count``.

    A call of arrays and numbers only, positionally, goes through a dispatcher generated for the
    last signature seen: it checks each argument's type and dtype and that no two classes of
    equal axes have become equal or 1, then calls the compiled entry (which checks the rest)."""

    def __init__(self, fn, compile, spec, backend="numba", mapped=None):
        if not callable(fn):
            raise UnsupportedError(f"{spec.kind}: {fn!r:.60} is not a function")
        functools.update_wrapper(self, fn, updated=())
        self._fn = fn
        self._spec = spec
        self._name = getattr(fn, "__name__", type(fn).__name__)
        try:
            self._signature = inspect.signature(fn)
        except (TypeError, ValueError):
            self._signature = None
        self._argnums = spec.argnums
        self._single = spec.single
        if spec.differentiates:
            self._check_arity()
        self._backend = backend
        self._build = compile
        self._plans = {}  # argument signature -> dim classes that must be concrete
        self._loop_axes = set()  # (leaf label, axis): a loop's length, a class of its own even at size 1
        self._cache = {}  # (signature, sizes of the concrete classes) -> (Compiled, output treedef)
        self._dispatchers = {}  # id(Compiled) -> the class whose __call__ dispatches to it
        self._lock = threading.RLock()
        self._mapped = mapped
        self._last = None
        self.trace_count = 0
        self.compile_count = 0

    def _check_arity(self):
        """argnums out of range for a function of a fixed number of parameters is refused now,
        naming the arity (with *args or **kwargs the call decides, in _classify)."""
        if self._signature is None:
            return
        params = self._signature.parameters.values()
        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        if any(p.kind in variadic for p in params):
            return
        n = len(self._signature.parameters)
        for a in self._argnums:
            if not -n <= a < n:
                names = ", ".join(self._signature.parameters)
                raise UnsupportedError(
                    f"{self._spec.kind}: argnums {a} is out of range for {self._name}, which takes "
                    f"{n} argument{'' if n == 1 else 's'} ({names})"
                )

    def __get__(self, instance, owner=None):
        # decorating a method: the instance is the first (static) argument
        return self if instance is None else functools.partial(self, instance)

    def __repr__(self):
        head = (
            f"<symgrad traced {self._spec.describe(getattr(self._fn, '__qualname__', self._name))}: "
            f"{len(self._cache)} compiled, {self.trace_count} trace{'' if self.trace_count == 1 else 's'}"
        )
        if self._last is None:
            return head + " (not called yet: a call traces and compiles it)>"
        last = repr(self._last[0]).replace("\n", "\n  ")
        return f"{head}\n  most recent call: {last}>"

    # ------------------------------------------------------------ calling

    def __call__(self, *args, **kwargs):
        return self._slow_call(args, kwargs)

    def _slow_call(self, args, kwargs):
        found = self._resolve(args, kwargs)
        if found is None:  # symgrad values: the transformation, symbolically
            return transforms.call_symbolic(self._spec, self._fn, args, kwargs, self._name)
        (compiled, unflat), leaves, numeric = found
        if not kwargs and len(leaves) == len(args) and all(leaf.value is a for leaf, a in zip(leaves, args)):
            self._install_dispatcher(compiled, unflat, leaves)
        out = compiled(*numeric)
        return out if unflat is None else pytree.unflatten(unflat, out)

    def _install_dispatcher(self, compiled, unflat, leaves):
        cls = self._dispatchers.get(id(compiled))
        if cls is None:
            dispatch = _dispatcher(compiled, unflat, leaves, TracedFunction._slow_call, self._loop_axes)
            if dispatch is None:
                return
            cls = self._dispatchers[id(compiled)] = type(
                "TracedFunction", (TracedFunction,), {"__call__": dispatch, "__module__": __name__}
            )
        if self.__class__ is not cls:
            self.__class__ = cls

    def compiled_for(self, *args, **kwargs):
        """The Compiled function serving these arguments (tracing and compiling if needed);
        its inputs are the array and number leaves of the arguments, in order."""
        return self._numeric(args, kwargs)[0][0]

    def _numeric(self, args, kwargs):
        found = self._resolve(args, kwargs)
        if found is None:
            raise UnsupportedError(
                f"{self._name}: this needs arrays and numbers as arguments, not symgrad expressions"
            )
        return found

    # ------------------------------------------------------------ what a Compiled has

    def _current(self, what):
        if self._last is None:
            raise UnsupportedError(
                f"{self._name} has not been traced yet: call it once (tracing "
                f"needs the arguments' ranks and dtypes), then read .{what}"
            )
        return self._last[0]

    @property
    def source(self):
        return self._current("source").source

    @property
    def kernel(self):
        return self._current("kernel").kernel

    @property
    def kernel_checked(self):
        return self._current("kernel_checked").kernel_checked

    @property
    def inputs(self):
        return self._current("inputs").inputs

    @property
    def input_names(self):
        return self._current("input_names").input_names

    @property
    def outputs(self):
        return self._current("outputs").outputs

    @property
    def output_names(self):
        return self._current("output_names").output_names

    @property
    def compiles(self):
        """Every machine-code compile of every compiled function this traced function made."""
        return [record for compiled, _ in list(self._cache.values()) for record in compiled.compiles]

    @property
    def tier(self):
        """The kernel the most recent call's compiled function runs now: "numba" or "numpy"
        (``Compiled.tier``)."""
        return self._current("tier").tier

    def wait(self):
        """Return this function once numba's machine code runs every compiled function it made
        (``Compiled.wait``: a background build's first calls run on the numpy backend)."""
        for compiled, _ in list(self._cache.values()):
            compiled.wait()
        return self

    def save(self, path):
        """Save the most recent call's compiled function (``Compiled.save``); the saved module's
        ``call`` takes the leaves of the arguments in ``.inputs`` order and returns the outputs
        as a flat tuple when the result holds namedtuples or dataclasses."""
        return self._current("save()").save(path)

    def scipy(self, *args, **kwargs):
        """A SciPy problem (``Compiled.scipy``) for a traced ``value_and_grad``: give every
        argument, as in a call; the differentiated ones are the starting point (``p.x0``, packed)
        and the others are held fixed. ``p.pack(tree)`` and ``p.unpack(x)`` convert between the
        differentiated arguments' structure and SciPy's flat vector."""
        self._check_value_and_grad("scipy()")
        (compiled, _), leaves, _ = self._numeric(args, kwargs)
        wrt_tops = self._wrt_tops(leaves)
        fixed = {
            leaf.label: leaf.value for leaf in leaves if leaf.kind != "static" and leaf.top not in wrt_tops
        }
        treedefs = self._wrt_treedefs(args, kwargs)
        problem = compiled.scipy(**fixed)
        start = [leaf.value for leaf in leaves if leaf.top in wrt_tops]
        return TreeProblem(problem, treedefs, self._single, start)

    def _check_value_and_grad(self, what):
        if self._spec.kind != "value_and_grad" or self._spec.has_aux:
            raise UnsupportedError(
                f"{what} takes a function made by sg.value_and_grad without has_aux; this is "
                f"{self._spec.describe(self._name)}"
            )

    def _wrt_tops(self, leaves):
        n = (max(leaf.top for leaf in leaves) + 1) if leaves else 0
        return {a % n for a in self._argnums} if n else set()

    def _wrt_treedefs(self, args, kwargs):
        _, tops, _, _ = self._flatten(args, kwargs)
        return [pytree.flatten(tops[a % len(tops)][1], numbers_leaf=True)[1] for a in self._argnums]

    def for_check_grad(self, args, kwargs):
        """The Compiled serving this call and its argument leaves (``sg.check_grad``)."""
        self._check_value_and_grad("check_grad")
        found = self._numeric(args, kwargs)
        return found[0][0], found[2]

    # ------------------------------------------------------------ resolving a call

    def _resolve(self, args, kwargs):
        """((Compiled, output treedef or None), leaves, numeric leaf values) serving this call,
        tracing and compiling if needed; None when an argument holds a symgrad expression."""
        bound, tops, leaves, structure = self._flatten(args, kwargs)
        if any(isinstance(leaf.value, Expr) for leaf in leaves):
            return None
        if self._mapped is not None:
            self._mark_mapped(tops, leaves)
        key, classes = self._classify(leaves, len(tops))
        key = key + structure if structure else key
        numeric = [leaf.value for leaf in leaves if leaf.kind != "static"]
        plan = self._plans.get(key)
        entry = None if plan is None else self._cache.get(self._full_key(key, plan, classes))
        if entry is None:
            title = self._spec.describe(getattr(self._fn, "__qualname__", self._name))
            with self._lock, _building(title) as build:
                plan = self._plans.get(key)
                graph = None
                if plan is None:
                    with build.measure("trace"):
                        plan, graph = self._plan(bound, tops, leaves, classes)
                        grown = self._loop_axes_at_one(bound, tops, leaves, plan, classes, graph)
                    if grown is not None:
                        # the trace of any other length serves this call: its signature and plan
                        self._loop_axes |= grown[0]
                        key, classes = self._classify(leaves, len(tops))
                        key = key + structure if structure else key
                        plan = self._plans.get(key)
                        graph = None if plan is not None else grown[2]
                        plan = grown[1] if plan is None else plan
                    self._plans[key] = plan
                full_key = self._full_key(key, plan, classes)
                entry = self._cache.get(full_key)
                if entry is None:
                    if graph is None:
                        with build.measure("trace"):
                            graph = self._trace_or_explain(bound, tops, leaves, classes, set(plan))
                    self.compile_count += 1
                    entry = self._build(*graph, self._backend)
                    self._cache[full_key] = entry
        self._last = entry
        return entry, leaves, numeric

    def _mark_mapped(self, tops, leaves):
        """Set each array leaf's mapped axis (sg.vmap's in_axes); axes the trace will refuse
        (out of range, structures that differ) are left unmarked for it to explain."""
        try:
            axes = self._mapped([value for _, value in tops])
        except SymgradError:
            return
        if len(axes) != len(leaves):
            return
        for leaf, axis in zip(leaves, axes):
            ndim = getattr(leaf.value, "ndim", 0)
            if axis is not None and ndim and -ndim <= axis < ndim:
                leaf.mapped = int(axis) % ndim

    @staticmethod
    def _full_key(key, plan, classes):
        return key, tuple(classes[c][1] for c in plan)

    # ------------------------------------------------------------ arguments

    def _flatten(self, args, kwargs):
        """How to call ``fn`` again, the call's top-level arguments (label, value) in parameter
        order, their leaves, and the structure of those that are pytrees."""
        if self._signature is None:
            if kwargs:
                raise UnsupportedError(
                    f"{self._name}: keyword arguments need a function whose signature inspect can read"
                )
            bound, tops = None, [(f"arg{i}", v) for i, v in enumerate(args)]
        else:
            try:
                bound = self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{self._name}{self._signature}: {exc}") from None
            bound.apply_defaults()
            tops = []
            for name, value in bound.arguments.items():
                kind = self._signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_POSITIONAL:
                    tops.extend((f"{name}{i}", v) for i, v in enumerate(value))
                elif kind is inspect.Parameter.VAR_KEYWORD:
                    tops.extend((k, v) for k, v in value.items())
                else:
                    tops.append((name, value))
        leaves, structure = [], []
        for t, (label, value) in enumerate(tops):
            if type(value) is np.ndarray or isinstance(value, (float, int)):
                leaves.append(_Leaf(label, t, value))
                continue
            values, paths, treedef = pytree.flatten_with_paths(value, numbers_leaf=True)
            if not treedef.is_leaf:
                # the structure is part of what the trace saw (a tuple is not a list, None is not ())
                structure.append((t, treedef))
            leaves.extend(
                _Leaf("_".join([label] + [str(p) for p in path]), t, v) for v, path in zip(values, paths)
            )
        used = set()
        for i, leaf in enumerate(leaves):
            if not leaf.label.isidentifier() or leaf.label.startswith("__") or leaf.label in used:
                leaf.label = f"arg{i}"
            used.add(leaf.label)
        return bound, tops, leaves, tuple(structure)

    def _classify(self, leaves, ntops, loop_axes=None):
        """Give each leaf its kind, dtype and shape pattern; return the cache key. The axes in
        ``loop_axes`` (default: those learnt to be loop lengths) get a class even at size 1."""
        loop_axes = self._loop_axes if loop_axes is None else loop_axes
        wrt = set()
        if self._spec.differentiates:
            for a in self._argnums:
                if not -ntops <= a < ntops:
                    raise UnsupportedError(
                        f"{self._spec.kind}: argnums {a} is out of range for "
                        f"{self._name}, called with {ntops} argument(s)"
                    )
                wrt.add(a % ntops)
        classes = {}
        key = []
        for leaf in leaves:
            value = leaf.value
            differentiated = leaf.top in wrt
            where = f"argument {leaf.label!r} of {self._name}"
            if hasattr(value, "tocsr"):
                raise UnsupportedError(
                    f"{where} is a scipy.sparse {type(value).__name__}: sparse matrices are not "
                    f"supported; pass {leaf.label}.toarray()"
                )
            if differentiated and isinstance(value, (list, tuple)):
                try:
                    value = leaf.value = np.asarray(value, dtype=np.float64)
                except ValueError as exc:  # ragged nesting
                    raise UnsupportedError(
                        f"{where} is a {type(value).__name__} that is not an array: {exc}"
                    ) from None
            if isinstance(value, (np.ndarray, np.generic)) or is_dask(value):
                if is_dask(value) and any(np.isnan(d) for d in value.shape):
                    raise UnsupportedError(
                        f"{where} is a Dask array of unknown size {value.shape}; "
                        "call .compute_chunk_sizes() on it first"
                    )
                dtype = as_dtype(value.dtype, where=where)
                if differentiated and not is_float(dtype):
                    raise UnsupportedError(
                        f"{where} is differentiated (argnums) but has dtype "
                        f"{dtype}; only float arguments get gradients"
                    )
                leaf.kind, leaf.dtype = ("array" if value.ndim else "scalar"), dtype
                leaf.shape = tuple(
                    self._dim_class(
                        classes, d, leaf.label, axis, axis == leaf.mapped, (leaf.label, axis) in loop_axes
                    )
                    for axis, d in enumerate(np.shape(value))
                )
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                leaf.kind, leaf.shape = "scalar", ()
                leaf.dtype = "float64" if (isinstance(value, float) or differentiated) else "int64"
            else:
                if differentiated:
                    raise UnsupportedError(
                        f"{where} is differentiated (argnums) but is a "
                        f"{type(value).__name__}, not a float array or number"
                    )
                if not _hashable(value):
                    raise UnsupportedError(
                        f"{where} is a {type(value).__name__}: neither an array, a number nor a "
                        "hashable value the trace can depend on"
                    )
                leaf.kind = "static"
                key.append((leaf.label, "static", type(value), value))
                continue
            key.append((leaf.label, leaf.kind, leaf.dtype, leaf.shape))
        ordered = sorted(classes.items(), key=lambda item: item[1][0])
        return tuple(key), [(name, size) for size, (index, name) in ordered]

    @staticmethod
    def _dim_class(classes, size, label, axis, mapped=False, loop=False):
        """The class of an axis: None for size 1 (it may broadcast) unless it is a ``loop``
        length, else an index shared by all axes of this size, named after the first of them;
        an axis sg.vmap maps over is a class of its own."""
        if mapped:
            return classes.setdefault(_MappedSize(size), (len(classes), f"{label}_{axis}"))[0]
        if size == 1 and not loop:
            return None
        return classes.setdefault(int(size), (len(classes), f"{label}_{axis}"))[0]

    # ------------------------------------------------------------ tracing

    def _loop_axes_at_one(self, bound, tops, leaves, plan, classes, graph):
        """A call whose trace built a loop of length 1 from an argument axis of size 1 (``xs`` of
        one step): that axis made symbolic, so that the compile of every other length serves it.
        The leading size-1 axes are tried together, then each dropped when the loop does without
        it; they are kept only if the function traces with them symbolic, a loop's length is
        made of their dim and every output has the shape of the size-1 trace (nothing squeezed or
        broadcast them away). Returns (axes, plan, graph) of that signature, or None."""
        if not any(isinstance(n, int) and n == 1 for n in graph[0].loop_lengths):
            return None
        candidates = {
            (leaf.label, 0)
            for leaf in leaves
            if leaf.kind == "array" and leaf.shape[0] is None and (leaf.label, 0) not in self._loop_axes
        }
        concrete_names = {classes[c][0] for c in plan}
        truth = [o.shape for o in graph[0].outputs], graph[0].treedef

        def attempt(axes):
            _, trial = self._classify(leaves, len(tops), self._loop_axes | axes)
            ones = [name for name, size in trial if size == 1]
            if not ones:
                return None
            concrete = {k for k, (name, _) in enumerate(trial) if name in concrete_names}
            try:
                found = self._trace(bound, tops, leaves, trial, concrete)
            except Exception:
                return None
            name = ones[0]
            lengths = found[0].loop_lengths
            if not any(name in {s.name for s in getattr(n, "free_symbols", ())} for n in lengths):
                return None
            shapes = [tuple(_at_one(d, name) for d in o.shape) for o in found[0].outputs]
            if (shapes, found[0].treedef) != truth:
                return None
            return axes, tuple(sorted(concrete)), found

        best = attempt(candidates) if candidates else None
        if best is not None:
            for axis in sorted(candidates):
                smaller = attempt(best[0] - {axis}) if len(best[0]) > 1 else None
                best = smaller or best
        self._classify(leaves, len(tops))  # the leaves' shapes as the call's signature has them
        return best

    def _plan(self, bound, tops, leaves, classes):
        """Which dim classes must be concrete numbers: none if the function traces on symbolic
        sizes; otherwise as few as tracing allows, found one class at a time. The trials only
        run the function; the derivative is taken once, of the trace chosen (a Python loop over
        T = 1000 steps: each trial's derivative cost as much as its trace, twice over)."""
        try:
            return (), self._evaluated(self._trace(bound, tops, leaves, classes, set(), evaluate=False))
        except Exception:
            if not classes:
                return (), self._trace_or_explain(bound, tops, leaves, classes, set())
        concrete = set(range(len(classes)))
        traced = None
        for c in range(len(classes)):
            if concrete == {c}:
                continue  # all symbolic: the first trace above failed
            try:
                traced = self._trace(bound, tops, leaves, classes, concrete - {c}, evaluate=False)
            except Exception:
                continue
            concrete.discard(c)
        if traced is not None:
            try:
                return tuple(sorted(concrete)), self._evaluated(traced)
            except Exception:
                concrete = set(range(len(classes)))  # the derivative needs every size: as before
        return tuple(sorted(concrete)), self._trace_or_explain(bound, tops, leaves, classes, concrete)

    def _trace_or_explain(self, bound, tops, leaves, classes, concrete):
        try:
            return self._trace(bound, tops, leaves, classes, concrete)
        except SymgradError as exc:
            if hasattr(exc, "add_note"):
                exc.add_note(f"while tracing {self._name}({self._describe(leaves, classes, concrete)})")
                if isinstance(exc, UnsupportedError) and "truth value" in str(exc):
                    exc.add_note(_CONTROL_FLOW_HINT)
            raise

    @staticmethod
    def _shape(leaf, classes, concrete):
        return tuple(
            1 if c is None else int(classes[c][1]) if c in concrete else classes[c][0] for c in leaf.shape
        )

    def _describe(self, leaves, classes, concrete):
        return ", ".join(
            f"{leaf.label}: {shape_str(self._shape(leaf, classes, concrete))} {leaf.dtype}"
            if leaf.kind != "static"
            else f"{leaf.label}={leaf.value!r:.30}"
            for leaf in leaves
        )

    def _trace(self, bound, tops, leaves, classes, concrete, evaluate=True):
        """Run the function on symbols (the dim classes in ``concrete`` are their sizes) and
        apply the transformation: (transforms.Result, the input symbols). With ``evaluate``
        False, the function is only run: a ``_Traced`` for ``_evaluated``."""
        symbols = {
            leaf.label: tensor(leaf.label, self._shape(leaf, classes, concrete), leaf.dtype)
            for leaf in leaves
            if leaf.kind != "static"
        }
        stand_ins = [symbols[leaf.label] if leaf.kind != "static" else leaf.value for leaf in leaves]
        values = self._tops_with(tops, leaves, stand_ins)
        self.trace_count += 1
        generators = _reachable_generators(self._fn, leaves)
        before = [_generator_state(g) for g in generators]
        with loops.recording_lengths() as lengths, _trace_patches():
            try:
                out = self._call_with(bound, tops, values)
            except Exception as exc:
                where = _random_frame(exc.__traceback__)
                if where is None or isinstance(exc, _RandomNumbersInTrace):
                    raise
                raise _RandomNumbersInTrace(f"{where} was called on a traced value; {_NOISE_HINT}") from exc
        for g, state in zip(generators, before):
            if _generator_state(g) != state:
                raise _RandomNumbersInTrace(
                    f"{self._name} drew random numbers from {type(g).__name__} {g!r:.60} while it was "
                    f"traced; {_NOISE_HINT}"
                )
        wrt_trees = [values[a % len(values)] for a in self._argnums] if self._spec.differentiates else []
        inputs = [symbols[leaf.label] for leaf in leaves if leaf.kind != "static"]
        traced = _Traced(out, wrt_trees, tuple(lengths), inputs)
        return self._evaluated(traced) if evaluate else traced

    def _evaluated(self, traced):
        """The transformation (the derivative, ...) of a trace: (transforms.Result, the input symbols)."""
        out, wrt_trees, lengths, inputs = traced
        notes = RuleNotes()  # this compile's rule comments (nodes carry none)
        # the derivative is taken here, once: the compile is handed the result (api._compile_result)
        with (
            _building(self._name) as build,
            build.measure("differentiate") if wrt_trees else contextlib.nullcontext(),
        ):
            result = transforms.evaluate(self._spec, out, wrt_trees, self._name, notes)
        result.notes = notes
        result.loop_lengths = lengths  # the trip count of every loop the function built
        return result, inputs

    @staticmethod
    def _tops_with(tops, leaves, values):
        """Each top-level argument rebuilt with ``values`` (one per leaf) in place of its leaves."""
        per_top = [[] for _ in tops]
        for leaf, v in zip(leaves, values):
            per_top[leaf.top].append(v)
        out = []
        for (label, value), vs in zip(tops, per_top):
            if type(value) is np.ndarray or isinstance(value, (float, int)):
                out.append(vs[0])
            else:
                out.append(pytree.unflatten(pytree.flatten(value, numbers_leaf=True)[1], vs))
        return out

    def _call_with(self, bound, tops, values):
        if bound is None:
            return self._fn(*values)
        arguments = dict(bound.arguments)
        it = iter(values)
        for name in list(arguments):
            kind = self._signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                arguments[name] = tuple(next(it) for _ in arguments[name])
            elif kind is inspect.Parameter.VAR_KEYWORD:
                arguments[name] = {k: next(it) for k in arguments[name]}
            else:
                arguments[name] = next(it)
        for name, param in self._signature.parameters.items():
            # a default left as it was is not passed (numpy's ufuncs refuse some explicit defaults)
            if name in arguments and param.default is not param.empty and arguments[name] is param.default:
                del arguments[name]
        call = inspect.BoundArguments(self._signature, arguments)
        return self._fn(*call.args, **call.kwargs)


class _Traced(typing.NamedTuple):
    """A function run on symbols, before its transformation (``_evaluated``)."""

    out: Any
    wrt_trees: list[Any]
    lengths: tuple[Any, ...]
    inputs: list[Expr]


def _at_one(dim, name):
    """``dim`` with the dim called ``name`` set to 1."""
    if not hasattr(dim, "free_symbols"):
        return dim
    dim = dim.subs({s: 1 for s in dim.free_symbols if s.name == name})
    return int(dim) if dim.is_number else dim


# the old name, kept for code that imported it
TracedValueAndGrad = TracedFunction


def _dispatcher(compiled, unflat, leaves, slow, loop_axes=frozenset()):
    """A ``__call__`` for calls shaped like ``leaves`` (arrays and numbers, positional): generated
    code checking each argument's type and dtype, and that the sizes of different classes
    of equal axes are still different and not 1 (a loop length in ``loop_axes`` may be 1) (else
    the function traces again, as a call with those sizes would), then calling the compiled
    entry; anything else goes to ``slow``."""
    n = len(leaves)
    namespace = {"_M": _MISSING, "_entry": compiled._entry, "_nd": np.ndarray, "_IE": InputError}
    namespace.update({"_slow": slow, "_unflatten": pytree.unflatten, "_td": unflat})
    checks, sizes, numeric = [], {}, []
    for i, leaf in enumerate(leaves):
        a = f"a{i}"
        value = leaf.value
        if leaf.kind == "static":
            if not any(value is s for s in _STATIC_SINGLETONS):
                return None
            checks.append(f"{a} is {value!r}")
            continue
        numeric.append(a)
        if type(value) is float or type(value) is int:
            checks.append(f"type({a}) is {type(value).__name__}")
        elif type(value) is np.ndarray:
            # the rank is the entry's check (a shape index out of range is an IndexError here)
            namespace[f"_d{i}"] = value.dtype
            checks.append(f"type({a}) is _nd and {a}.dtype is _d{i}")
            for axis, c in enumerate(leaf.shape):
                if c is not None and c not in sizes and axis != leaf.mapped:
                    sizes[c] = (f"_s{len(sizes)}", f"{a}.shape[{axis}]", (leaf.label, axis) in loop_axes)
        else:
            return None
    # each class's size once (the first axis of it), not 1, and unlike every other class's
    checks.extend(
        f"({name} := {size}) != 1" if not loop else f"({name} := {size}) >= 0"
        for name, size, loop in sizes.values()
    )
    names = [name for name, _, _ in sizes.values()]
    checks.extend(f"{r} != {s}" for k, r in enumerate(names) for s in names[k + 1 :])
    call = f"_entry({', '.join(numeric)})"
    if unflat is not None:
        call = f"_unflatten(_td, {call})"
    params = ", ".join(f"a{i}=_M" for i in range(n))
    given = ", ".join(f"a{i}" for i in range(n))
    lines = [
        f"def __call__(self, {params + ', /, ' if n else ''}*more, **kw):",
        "    try:",
        f"        if not more and not kw and {' and '.join(checks) or 'True'}:",
        f"            return {call}",
        "    except (_IE, IndexError):",
        "        pass",
        f"    return _slow(self, tuple(a for a in ({given}{',' if n == 1 else ''}) if a is not _M) + more, kw)",
    ]
    exec("\n".join(lines), namespace)  # noqa: S102  (generated from types and indices only)
    return namespace["__call__"]


class TreeProblem:
    """``vg.scipy(*args)`` of a traced value_and_grad: the SciPy problem of its compiled function
    (``fun``, ``jac``, ``hess``, ``hessp``, ``value``), with ``pack``/``unpack`` in the structure of
    the differentiated arguments and ``x0``, the packed starting point."""

    def __init__(self, problem, treedefs, single, start):
        self.problem = problem
        self._treedefs = treedefs
        self._single = single
        self.x0 = problem.pack(*start)

    def __getattr__(self, name):
        return getattr(self.problem, name)

    def __call__(self, x, *args):
        return self.problem.fun(x, *args)

    def pack(self, *trees):
        """The differentiated arguments (as many as argnums names) as SciPy's flat vector."""
        if len(trees) != len(self._treedefs):
            raise InputError(
                f"pack() takes {len(self._treedefs)} argument{'s' if len(self._treedefs) != 1 else ''} "
                f"(the differentiated ones), got {len(trees)}"
            )
        leaves = []
        for tree, td in zip(trees, self._treedefs):
            values, got = pytree.flatten(tree, numbers_leaf=True)
            if got != td:
                raise InputError(f"pack(): expected the structure {td}, got {got}")
            leaves.extend(values)
        return self.problem.pack(*leaves)

    def unpack(self, x):
        """SciPy's flat vector as the differentiated arguments, in their structure."""
        parts = self.problem.unpack(x)
        trees, start = [], 0
        for td in self._treedefs:
            trees.append(pytree.unflatten(td, parts[start : start + td.num_leaves]))
            start += td.num_leaves
        return trees[0] if self._single else tuple(trees)
