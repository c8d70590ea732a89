"""Tracing plain numpy code: ``sg.value_and_grad(fn, argnums=...)`` on a Python function.

On a call, each array or number argument is replaced by a symbol standing for
it, named after the function's parameter (``W``, ``b``, ``X``; ``args0``,
``args1`` for ``*args``), and the function runs once on those symbols: numpy
calls on them build the graph (``numpy_protocol``). The graph's value and
gradient with respect to the ``argnums`` parameters are compiled, and the
compiled function is called with the actual arguments. ``argnums`` counts the
function's parameters in order (an int gives one gradient, a tuple a tuple of
gradients, as in JAX); it defaults to 0.

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
symbols (an int differentiated becomes float64); ``bool``, ``None``, strings
and other hashable values are static: the trace sees the value itself and the
cache keys on it.

Some code needs a size as a number: ``range(X.shape[1])``, ``np.arange(K)``
compared with a symbolic axis, ``np.eye(d)``. When tracing on symbolic sizes
fails, the function is traced with every size concrete and then, one class of
equal axes at a time, as few sizes as possible are kept concrete; those sizes
join the cache key (a new value compiles again), the others stay symbolic. So
the function may run a few times on its first call; it should not have side
effects that matter. Branching on a symbolic size compares a SymPy symbol:
``X.shape[0] > 5`` fails (and makes that size concrete), but ``X.shape[0] == 5``
is silently False; write such code with the size as a static argument.

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

import numpy as np

from ..errors import ShapeError, SymgradError, UnsupportedError
from ..graph import Expr, as_dtype, is_float, shape_str
from ..ops import as_expr
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


def _numbers_only(value):
    """A list or tuple (nested or not) of plain numbers: read as an array when differentiated."""
    if isinstance(value, dict):
        return False
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            return False
    return True


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        return False
    return True


class _Leaf:
    """One argument of a call: its label, where it goes back, and how it is traced."""

    __slots__ = ("label", "path", "value", "kind", "dtype", "shape")

    def __init__(self, label, path, value):
        self.label, self.path, self.value = label, path, value
        self.kind = self.dtype = self.shape = None


def is_dask(value):
    """Is ``value`` a Dask array (checked without importing Dask)?"""
    return type(value).__module__.startswith("dask.") and hasattr(value, "chunks")


def traced_value_and_grad(fn, compile, argnums=0, backend="numba"):
    """``fn`` traced on symbolic stand-ins of its arguments, compiled with its gradient by
    ``compile(out, wrt, inputs, backend)`` (the public API's value_and_grad of an expression)."""
    return TracedValueAndGrad(fn, compile, argnums, backend)


class TracedValueAndGrad:
    """Call it like ``fn``; it returns ``(value, gradient)`` or ``(value, (gradients...))``.

    ``.source`` is the generated source of the most recent call's compiled
    function and ``.compiled_for(*args)`` the compiled function serving
    ``args`` (call that one directly in a hot loop: it skips the signature
    lookup). ``.trace_count`` counts the runs of ``fn`` on symbols and
    ``.compile_count`` the compiled functions made."""

    def __init__(self, fn, compile, argnums=0, backend="numba"):
        if not callable(fn):
            raise UnsupportedError(f"value_and_grad: {fn!r:.60} is not a function")
        functools.update_wrapper(self, fn)
        self._fn = fn
        self._name = getattr(fn, "__name__", type(fn).__name__)
        try:
            self._signature = inspect.signature(fn)
        except (TypeError, ValueError):
            self._signature = None
        self._single = not isinstance(argnums, (tuple, list))
        argnums = (argnums,) if self._single else tuple(argnums)
        if not argnums:
            raise UnsupportedError("value_and_grad: argnums is empty; say which arguments to differentiate")
        for a in argnums:
            if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
                raise UnsupportedError(self._not_an_argnum(a))
        self._argnums = tuple(int(a) for a in argnums)
        if len(set(self._argnums)) != len(self._argnums):
            raise UnsupportedError(f"value_and_grad: argnums {self._argnums} repeats an argument")
        self._check_arity()
        self._backend = backend
        self._build = compile
        self._plans = {}  # argument signature -> dim classes that must be concrete
        self._cache = {}  # (signature, sizes of the concrete classes) -> Compiled
        # the same for calls of arrays and numbers only, keyed without binding the signature
        self._fast_plans, self._fast = {}, {}
        self._positional = self._positional_count()
        self._lock = threading.RLock()
        self._last = None
        self.trace_count = 0
        self.compile_count = 0

    def _not_an_argnum(self, a):
        message = (
            f"value_and_grad: argnums must be an int or a tuple of ints (positions of "
            f"{self._name}'s parameters, as in JAX), got {a!r:.60}"
        )
        if isinstance(a, str) and self._signature is not None and a in self._signature.parameters:
            message += f"; {a!r} is parameter {list(self._signature.parameters).index(a)}"
        return message

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
                    f"value_and_grad: argnums {a} is out of range for {self._name}, which takes "
                    f"{n} argument{'' if n == 1 else 's'} ({names})"
                )

    def _positional_count(self):
        """How many arguments a call of only positional arguments binds one to one, or -1."""
        if self._signature is None:
            return -1
        kinds = [p.kind for p in self._signature.parameters.values()]
        plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        return len(kinds) if all(k in plain for k in kinds) else -1

    def __get__(self, instance, owner=None):
        # decorating a method: the instance is the first (static) argument
        return self if instance is None else functools.partial(self, instance)

    def __repr__(self):
        return (
            f"<symgrad traced value_and_grad of {getattr(self._fn, '__qualname__', self._fn)}, "
            f"argnums={self._argnums[0] if self._single else self._argnums}, "
            f"{len(self._cache)} compiled>"
        )

    # ------------------------------------------------------------ calling

    def __call__(self, *args, **kwargs):
        fast = None if kwargs or len(args) != self._positional else self._fast_key(args)
        if fast is not None:
            plan = self._fast_plans.get(fast[0])
            if plan is not None:
                compiled = self._fast.get((fast[0], tuple(fast[1][c] for c in plan)))
                if compiled is not None:
                    self._last = compiled
                    return compiled(*args)
        compiled, numeric, plan = self._lookup(args, kwargs)
        if fast is not None:
            self._fast_plans[fast[0]] = plan
            self._fast[(fast[0], tuple(fast[1][c] for c in plan))] = compiled
        return compiled(*numeric)

    @staticmethod
    def _fast_key(args):
        """For a call with only arrays and numbers: the argument signature (dtypes and which
        axes are equal or 1) and the size of each class of equal axes, without binding."""
        sizes = {}
        key = []
        for a in args:
            kind = type(a)
            if kind is np.ndarray:
                key.append(
                    (a.dtype, tuple(None if d == 1 else sizes.setdefault(d, len(sizes)) for d in a.shape))
                )
            elif kind is float or kind is int:
                key.append(kind)
            else:
                return None
        return tuple(key), list(sizes)

    def compiled_for(self, *args, **kwargs):
        """The Compiled function serving these arguments (tracing and compiling if needed);
        its inputs are the array and number arguments, in order."""
        compiled, _, _ = self._lookup(args, kwargs)
        return compiled

    @property
    def source(self):
        if self._last is None:
            raise UnsupportedError(
                f"{self._name} has not been traced yet: call it once (tracing "
                "needs the arguments' ranks and dtypes), then read .source"
            )
        return self._last.source

    def _lookup(self, args, kwargs):
        bound, leaves = self._flatten(args, kwargs)
        key, classes = self._classify(leaves)
        numeric = [leaf.value for leaf in leaves if leaf.kind != "static"]
        plan = self._plans.get(key)
        compiled = None if plan is None else self._cache.get(self._full_key(key, plan, classes))
        if compiled is None:
            with self._lock:
                plan = self._plans.get(key)
                graph = None
                if plan is None:
                    plan, graph = self._plan(bound, leaves, classes)
                    self._plans[key] = plan
                full_key = self._full_key(key, plan, classes)
                compiled = self._cache.get(full_key)
                if compiled is None:
                    if graph is None:
                        graph = self._trace_or_explain(bound, leaves, classes, set(plan))
                    compiled = self._compile(*graph)
                    self._cache[full_key] = compiled
        self._last = compiled
        return compiled, numeric, plan

    @staticmethod
    def _full_key(key, plan, classes):
        return key, tuple(classes[c][1] for c in plan)

    # ------------------------------------------------------------ arguments

    def _flatten(self, args, kwargs):
        """The call's arguments as leaves in parameter order, and how to call ``fn`` again."""
        if self._signature is None:
            if kwargs:
                raise UnsupportedError(
                    f"{self._name}: keyword arguments need a function whose signature inspect can read"
                )
            return None, [_Leaf(f"arg{i}", (i,), v) for i, v in enumerate(args)]
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self._name}{self._signature}: {exc}") from None
        bound.apply_defaults()
        leaves = []
        for name, value in bound.arguments.items():
            kind = self._signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                leaves.extend(_Leaf(f"{name}{i}", (name, i), v) for i, v in enumerate(value))
            elif kind is inspect.Parameter.VAR_KEYWORD:
                leaves.extend(_Leaf(k, (name, k), v) for k, v in value.items())
            else:
                leaves.append(_Leaf(name, (name,), value))
        used = set()
        for i, leaf in enumerate(leaves):
            if not leaf.label.isidentifier() or leaf.label.startswith("__") or leaf.label in used:
                leaf.label = f"arg{i}"
            used.add(leaf.label)
        return bound, leaves

    def _classify(self, leaves):
        """Give each leaf its kind, dtype and shape pattern; return the cache key."""
        n = len(leaves)
        wrt = set()
        for a in self._argnums:
            if not -n <= a < n:
                raise UnsupportedError(
                    f"value_and_grad: argnums {a} is out of range for "
                    f"{self._name}, called with {n} argument(s)"
                )
            wrt.add(a % n)
        classes = {}
        key = []
        for i, leaf in enumerate(leaves):
            value = leaf.value
            where = f"argument {leaf.label!r} of {self._name}"
            if isinstance(value, Expr):
                raise UnsupportedError(
                    f"{where} is a symgrad expression; a traced function takes "
                    "numbers and arrays (for expressions use "
                    "sg.value_and_grad(expr, wrt=...))"
                )
            if hasattr(value, "tocsr"):
                raise UnsupportedError(
                    f"{where} is a scipy.sparse {type(value).__name__}: sparse matrices are not "
                    f"supported; pass {leaf.label}.toarray()"
                )
            if isinstance(value, (list, tuple, dict)) and not _numbers_only(value):
                if i in wrt or not _hashable(value):
                    raise UnsupportedError(
                        f"{where} is a {type(value).__name__} holding arrays or other objects; "
                        "tuples, lists and dicts of arrays (pytrees) are not supported yet: "
                        "pass each array as its own argument"
                    )
            if i in wrt and isinstance(value, (list, tuple)):
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
                if i in wrt and not is_float(dtype):
                    raise UnsupportedError(
                        f"{where} is differentiated (argnums) but has dtype "
                        f"{dtype}; only float arguments get gradients"
                    )
                leaf.kind, leaf.dtype = ("array" if value.ndim else "scalar"), dtype
                leaf.shape = tuple(
                    self._dim_class(classes, d, leaf.label, axis) for axis, d in enumerate(np.shape(value))
                )
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                leaf.kind, leaf.shape = "scalar", ()
                leaf.dtype = "float64" if (isinstance(value, float) or i in wrt) else "int64"
            else:
                if i in wrt:
                    raise UnsupportedError(
                        f"{where} is differentiated (argnums) but is a "
                        f"{type(value).__name__}, not a float array or number"
                    )
                try:
                    hash(value)
                except TypeError:
                    raise UnsupportedError(
                        f"{where} is a {type(value).__name__}: neither an array, a number nor a "
                        "hashable value the trace can depend on"
                    ) from None
                leaf.kind = "static"
                key.append((leaf.label, "static", type(value), value))
                continue
            key.append((leaf.label, leaf.kind, leaf.dtype, leaf.shape))
        ordered = sorted(classes.items(), key=lambda item: item[1][0])
        return tuple(key), [(name, size) for size, (index, name) in ordered]

    @staticmethod
    def _dim_class(classes, size, label, axis):
        """The class of an axis: None for size 1, else an index shared by all axes of this size,
        named after the first of them."""
        if size == 1:
            return None
        return classes.setdefault(int(size), (len(classes), f"{label}_{axis}"))[0]

    # ------------------------------------------------------------ tracing

    def _plan(self, bound, leaves, classes):
        """Which dim classes must be concrete numbers: none if the function traces on symbolic
        sizes; otherwise as few as tracing allows, found one class at a time."""
        try:
            return (), self._trace(bound, leaves, classes, set())
        except Exception:
            if not classes:
                return (), self._trace_or_explain(bound, leaves, classes, set())
        concrete = set(range(len(classes)))
        graph = self._trace_or_explain(bound, leaves, classes, concrete)
        for c in range(len(classes)):
            try:
                graph = self._trace(bound, leaves, classes, concrete - {c})
            except Exception:
                continue
            concrete.discard(c)
        return tuple(sorted(concrete)), graph

    def _trace_or_explain(self, bound, leaves, classes, concrete):
        try:
            return self._trace(bound, leaves, classes, concrete)
        except SymgradError as exc:
            if hasattr(exc, "add_note"):
                exc.add_note(f"while tracing {self._name}({self._describe(leaves, classes, concrete)})")
                if isinstance(exc, UnsupportedError) and "truth value" in str(exc):
                    exc.add_note(_CONTROL_FLOW_HINT)
            raise

    @staticmethod
    def _shape(leaf, classes, concrete):
        return tuple(
            1 if c is None else classes[c][1] if c in concrete else classes[c][0] for c in leaf.shape
        )

    def _describe(self, leaves, classes, concrete):
        return ", ".join(
            f"{leaf.label}: {shape_str(self._shape(leaf, classes, concrete))} {leaf.dtype}"
            if leaf.kind != "static"
            else f"{leaf.label}={leaf.value!r:.30}"
            for leaf in leaves
        )

    def _trace(self, bound, leaves, classes, concrete):
        """Run the function on symbols; the dim classes in ``concrete`` are their sizes."""
        symbols = {
            leaf.label: tensor(leaf.label, self._shape(leaf, classes, concrete), leaf.dtype)
            for leaf in leaves
            if leaf.kind != "static"
        }
        stand_ins = [symbols[leaf.label] if leaf.kind != "static" else leaf.value for leaf in leaves]
        self.trace_count += 1
        generators = _reachable_generators(self._fn, leaves)
        before = [_generator_state(g) for g in generators]
        with _trace_patches():
            try:
                out = self._call_with(bound, leaves, stand_ins)
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
        if isinstance(out, (tuple, list)):
            raise UnsupportedError(
                f"{self._name} returned a {type(out).__name__}; value_and_grad needs the "
                "function to return one scalar (auxiliary outputs are not supported)"
            )
        out = as_expr(out)
        if out.shape != ():
            raise ShapeError(
                f"{self._name} returned a value of shape {shape_str(out.shape)}; "
                "value_and_grad needs a scalar (reduce it with np.sum or np.mean)"
            )
        if not is_float(out.dtype):
            raise UnsupportedError(
                f"{self._name} returned a value of dtype {out.dtype}; value_and_grad needs a float"
            )
        wrt = [symbols[leaves[a % len(leaves)].label] for a in self._argnums]
        inputs = [symbols[leaf.label] for leaf in leaves if leaf.kind != "static"]
        return out, wrt, inputs

    def _compile(self, out, wrt, inputs):
        self.compile_count += 1
        return self._build(out, wrt[0] if self._single else wrt, inputs, self._backend)

    def _call_with(self, bound, leaves, values):
        if bound is None:
            return self._fn(*values)
        arguments = dict(bound.arguments)
        kinds = {name: self._signature.parameters[name].kind for name in arguments}
        for name, kind in kinds.items():
            if kind is inspect.Parameter.VAR_POSITIONAL:
                arguments[name] = list(arguments[name])
            elif kind is inspect.Parameter.VAR_KEYWORD:
                arguments[name] = dict(arguments[name])
        for leaf, value in zip(leaves, values):
            if len(leaf.path) == 1:
                arguments[leaf.path[0]] = value
            else:
                name, index = leaf.path
                arguments[name][index] = value
        for name, kind in kinds.items():
            if kind is inspect.Parameter.VAR_POSITIONAL:
                arguments[name] = tuple(arguments[name])
        call = inspect.BoundArguments(self._signature, arguments)
        return self._fn(*call.args, **call.kwargs)
