"""The Compiled object, the on-disk module cache, and the argument checks generated entry points call.

Generated modules are written to a per-user cache directory (``$SYMGRAD_CACHE_DIR``,
else ``~/.cache/symgrad``) under a name that is the hash of their text, and
imported from there, so numba's ``cache=True`` keeps their machine code and a
second process loads it instead of compiling again.
"""

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
import time

import numpy as np

from symgrad.errors import InputError, UnsupportedError
from symgrad.graph import shape_str

ndarray = np.ndarray
float64 = np.dtype("float64")
float32 = np.dtype("float32")
int64 = np.dtype("int64")
int32 = np.dtype("int32")
int16 = np.dtype("int16")
int8 = np.dtype("int8")
uint8 = np.dtype("uint8")
uint16 = np.dtype("uint16")
uint32 = np.dtype("uint32")
uint64 = np.dtype("uint64")
bool = np.dtype("bool")  # noqa: A001  (generated code compares dtypes by these names)

_builtin_bool = type(True)
_load_lock = threading.Lock()


# ---------------------------------------------------------------- argument conversion


def _kind_ok(value_kind, dtype):
    target = np.dtype(dtype).kind
    if target == "f":
        return value_kind in "fiub"
    if target in "iu":
        return value_kind in "iub"
    return value_kind == "b"


def scalar(value, name, dtype):
    """A scalar argument as a value of ``dtype``, or InputError naming the argument."""
    if isinstance(value, np.ndarray):
        if value.ndim != 0:
            raise InputError(f"argument {name!r} must be a scalar, got an array of shape {value.shape}")
        value = value[()]
    if not isinstance(value, (int, float, np.number, np.bool_, _builtin_bool)):
        raise InputError(f"argument {name!r} must be {_a(dtype)} scalar, got {type(value).__name__} "
                         f"{_short(value)}")
    kind = np.asarray(value).dtype.kind
    if not _kind_ok(kind, dtype):
        raise InputError(f"argument {name!r} must be {_a(dtype)} scalar, got {np.asarray(value).dtype} "
                         f"{_short(value)}")
    if dtype == "float64":
        return float(value)
    if dtype == "bool":
        return _builtin_bool(value)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        if not info.min <= int(value) <= info.max:
            raise InputError(f"argument {name!r}: {value} does not fit in {dtype}")
        return np.dtype(dtype).type(value) if dtype != "int64" else int(value)
    return np.dtype(dtype).type(value)


def numpy_scalar(value, name, dtype):
    """``scalar`` as a numpy scalar, for kernels that run as plain Python (IEEE arithmetic)."""
    return np.dtype(dtype).type(scalar(value, name, dtype))


def ieee_errors_ignored():
    """inf and nan propagate silently, as they do in the machine-code backends."""
    return np.errstate(all="ignore")


def zero_d_as_scalars(outputs):
    """numpy operations may leave a scalar result as a 0-d array; return it as a numpy scalar."""
    return tuple(v[()] if isinstance(v, np.ndarray) and v.ndim == 0 else v for v in outputs)


def array(value, name, ndim, dtype):
    """An array argument as a C-contiguous array of ``dtype`` and rank ``ndim``, or InputError."""
    if not isinstance(value, np.ndarray):
        if isinstance(value, (str, bytes, dict, set)) or value is None:
            raise InputError(f"argument {name!r} must be a {ndim}-d {dtype} array, got "
                             f"{type(value).__name__} {_short(value)}")
        try:
            value = np.asarray(value)
        except Exception as exc:
            raise InputError(f"argument {name!r} could not be read as an array: {exc}") from None
    if value.ndim != ndim:
        raise InputError(f"argument {name!r} must have rank {ndim}, got an array of shape {value.shape} "
                         f"(rank {value.ndim})")
    if not _kind_ok(value.dtype.kind, dtype):
        raise InputError(f"argument {name!r} must hold {dtype} values, got dtype {value.dtype}")
    if value.dtype != dtype:
        if np.dtype(dtype).kind in "iu" and value.size:
            info = np.iinfo(dtype)
            if value.dtype.kind in "iu" and (value.min() < info.min or value.max() > info.max):
                raise InputError(f"argument {name!r}: values do not fit in {dtype}")
        value = value.astype(dtype)
    return np.ascontiguousarray(value)


def fixed_dim_error(name, axis, got, expected):
    return InputError(f"argument {name!r}: dimension {axis} must be {expected}, got {got}")


def dim_error(name, axis, got, dim, first_name, first_axis, bound):
    return InputError(
        f"argument {name!r}: dimension {axis} is {got}, but dimension {dim!r} is {bound} "
        f"(from axis {first_axis} of {first_name!r})")


def too_small(dim, value, minimum, what, where=""):
    origin = f" ({where})" if where else ""
    return InputError(f"dimension {dim} is {value}{origin}, but {what} needs it to be at least {minimum}")


def _a(dtype):
    return f"an {dtype}" if dtype.startswith("int") else f"a {dtype}"


def _short(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------- module cache


def cache_dir():
    root = os.environ.get("SYMGRAD_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "symgrad")
    try:
        os.makedirs(root, exist_ok=True)
        probe = os.path.join(root, f".probe{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
        return root
    except OSError:
        fallback = os.path.join(tempfile.gettempdir(), f"symgrad-{os.getuid() if hasattr(os, 'getuid') else 'user'}")
        os.makedirs(fallback, exist_ok=True)
        return fallback


def _read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def load_module(source, backend):
    """Write ``source`` to the cache (named by its hash) and import it; returns the module."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:24]
    modname = f"symgrad_{backend}_{digest}"
    with _load_lock:
        if modname in sys.modules:
            return sys.modules[modname], True
        path = os.path.join(cache_dir(), modname + ".py")
        existed = os.path.exists(path)
        if not existed or _read(path) != source:
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(source)
            os.replace(tmp, path)
        spec = importlib.util.spec_from_file_location(modname, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[modname] = module
        return module, existed


# ---------------------------------------------------------------- Compiled


class Compiled:
    """A compiled function: call it, read ``.source``, reach the numba dispatcher as ``.kernel``."""

    def __init__(self, source, module, entry, inputs, outputs, output_names, backend, title,
                 build_seconds, graph_nodes, cache_state):
        self.source = source
        self._module = module
        self._entry = getattr(module, entry)
        self.kernel = module.kernel
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.output_names = tuple(output_names)
        self.backend = backend
        self.title = title
        self.build_seconds = build_seconds
        self.graph_nodes = graph_nodes
        self.cache_state = cache_state
        self._names = [s.name for s in inputs]
        self._index = {s.name: i for i, s in enumerate(inputs)}

    def __reduce__(self):
        raise UnsupportedError(
            f"{self.title}: a Compiled function cannot be pickled; build it again in the other "
            "process (its machine code is cached on disk, so that is fast)")

    @property
    def input_names(self):
        return tuple(self._names)

    def __call__(self, *args, **kwargs):
        if kwargs or len(args) != len(self._names):
            args = self._bind(args, kwargs)
        return self._entry(*args)

    def _bind(self, args, kwargs):
        n = len(self._names)
        if len(args) > n:
            raise InputError(f"{self.title} takes {n} argument{'s' if n != 1 else ''} "
                             f"({', '.join(self._names)}), got {len(args)}")
        bound = list(args) + [None] * (n - len(args))
        given = [True] * len(args) + [False] * (n - len(args))
        for key, value in kwargs.items():
            if key not in self._index:
                raise InputError(f"{self.title} got an unexpected argument {key!r}; "
                                 f"its inputs are {', '.join(self._names)}")
            i = self._index[key]
            if given[i]:
                raise InputError(f"{self.title} got argument {key!r} twice (by position and by name)")
            bound[i] = value
            given[i] = True
        missing = [self._names[i] for i in range(n) if not given[i]]
        if missing:
            raise InputError(f"{self.title} is missing argument{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(repr(m) for m in missing)}")
        return bound

    def __repr__(self):
        ins = ", ".join(f"{s.name}: {shape_str(s.shape)} {s.dtype}" for s in self.inputs)
        outs = ", ".join(f"{name}: {shape_str(o.shape)} {o.dtype}"
                         for name, o in zip(self.output_names, self.outputs))
        return (f"<symgrad.Compiled {self.title}\n  inputs:  {ins}\n  outputs: {outs}\n"
                f"  graph: {self.graph_nodes} nodes; source: {self.source.count(chr(10))} lines; "
                f"backend: {self.backend}; cache: {self.cache_state}; build: {self.build_seconds:.3f} s>")


def timed():
    return time.perf_counter()
