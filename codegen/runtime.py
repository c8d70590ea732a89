"""The Compiled object, the on-disk module cache, and the argument checks generated entry points call.

Generated modules are written to a per-user cache directory (``$SYMGRAD_CACHE_DIR``,
else ``~/.cache/symgrad``, checked to be private to the user) under a name that is the hash
of their text, and run from the text in memory with that file as their ``__file__``, so
numba's ``cache=True`` keeps their machine code beside it and a second process loads it
instead of compiling again. The cache is kept under a size cap by evicting the least
recently used modules.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import threading
import time
import types
import warnings
import weakref
from collections.abc import Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from symgrad._version import __version__
from symgrad.errors import InputError, UnsupportedError
from symgrad.graph import shape_str, topo_order

from .numba_cache import load_cached
from .progress import building
from .standalone import standalone_source

if TYPE_CHECKING:  # for the hints only
    from symgrad.graph import Expr

ndarray = np.ndarray
# the entries' allocations of the arrays the machine code fills (emit.entry_alloc)
empty = np.empty
zeros = np.zeros
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


class _Missing:
    """The default of every parameter of a generated entry: the argument was not given by position."""

    def __repr__(self):
        return "<missing>"


MISSING = _Missing()

# The scalar kinds a generated entry passes to the machine code as they are, per parameter dtype:
# numba reads a float parameter with PyNumber_Float (what float() does), an int one with
# PyNumber_Long (int()) and a bool one with PyObject_IsTrue (bool()), which give each of these
# kinds exactly the value ``scalar`` converts it to. The entry tests the type's membership first
# (one set lookup: a Python float costs no more than with isinstance); a 0-d array of the
# parameter's dtype and (for a float64) a float subclass are tested after it, in the entry
# itself: see emit.direct_scalar_lines. Anything else goes through ``scalar``, which converts or
# refuses it. A Python int goes as it is: numba's read of one too large for the parameter (past
# int64, or past float64's range) raises OverflowError, which the entry's ``except`` hands to
# ``refused``, and ``scalar`` names it (no range test on every call: ints were 1.3x the float call).
_NUMPY_INTS = [np.int64, np.int32, np.int16, np.int8, np.uint32, np.uint16, np.uint8]
direct_float64 = frozenset(
    [float, int, np.float64, np.float32, np.float16, np.uint64, np.bool_, _builtin_bool, *_NUMPY_INTS]
)
direct_float32 = frozenset([np.float32, np.float16])
direct_int64 = frozenset([int, np.bool_, _builtin_bool, *_NUMPY_INTS])
direct_bool = frozenset([np.bool_, _builtin_bool])
# a saved module calls numba's dispatcher, which compiles a version for each argument type: there
# only the kinds numba types as the parameter's dtype go as they are
typed_float64 = frozenset([float, np.float64])
typed_float32 = frozenset([np.float32])
typed_int64 = frozenset([np.int64])
typed_bool = frozenset([np.bool_, _builtin_bool])
DIRECT_SCALARS = ("float64", "float32", "int64", "bool")  # the dtypes with direct_ and typed_ sets


def _reads_refuse_arrays():
    """Do float() and int() (numba's reads of a float and an int parameter) raise TypeError for
    an array of rank > 0? NumPy 2 does (numba's entry then raises TypeError); NumPy 1.25-1.26
    give a size-1 array's value with a DeprecationWarning. bool() takes a size-1 array in both."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for read, one in ((float, np.ones(1)), (int, np.ones(1, dtype=np.int64))):
            try:
                read(one)
            except TypeError:
                continue
            return False
    return True


# the parameter dtypes whose 0-d arrays the entry tests for dtype alone: the machine code's read
# refuses any other rank, and the entry's ``except TypeError`` names the argument (see
# emit.direct_scalar_lines); a test of the rank costs a 0-d array's call ~10 %
RANK_READ_BY_KERNEL = ("float64", "float32", "int64") if _reads_refuse_arrays() else ()
_load_lock = threading.Lock()


# ---------------------------------------------------------------- argument conversion


_DTYPES = {}  # dtype name -> np.dtype: np.dtype("float64") parses its text on every call


def as_dtype(dtype):
    """``np.dtype(dtype)`` for the name of a built dtype, from a table after the first time."""
    found = _DTYPES.get(dtype)
    if found is None:
        found = _DTYPES[dtype] = np.dtype(dtype)
    return found


def kind_ok(value_kind, dtype):
    """May an array of numpy dtype kind ``value_kind`` be passed for an argument of ``dtype``?"""
    target = as_dtype(dtype).kind
    if target == "f":
        return value_kind in "fiub"
    if target in "iu":
        return value_kind in "iub"
    return value_kind == "b"


# numpy's flags C_CONTIGUOUS | ALIGNED (ndarray.flags.num), the layout the compiled entry assumes
_C_ALIGNED = 0x1 | 0x100

# scalar kinds float() converts to the same float64 value a kernel computes with
_EXACT_FLOAT64 = frozenset([np.float64, np.float32, np.float16, np.ndarray])
_INT64_LIMIT = 2**63


def scalar(value, name, dtype):
    """A scalar argument as a value of ``dtype``, or InputError naming the argument."""
    if dtype == "float64" and type(value) in _EXACT_FLOAT64:
        # the common kinds (Python floats come in unconverted), without the checks below
        if type(value) is not np.ndarray or (value.dtype is float64 and not value.ndim):
            return float(value)
    if dtype == "float64" and type(value) is int and -_INT64_LIMIT <= value < _INT64_LIMIT:
        return float(value)
    if isinstance(value, np.ndarray):
        if isinstance(value, np.ma.MaskedArray):
            raise masked_error(value, name)
        if value.ndim != 0:
            raise InputError(f"argument {name!r} must be a scalar, got an array of shape {value.shape}")
        value = value[()]
    if not isinstance(value, (int, float, np.number, np.bool_, _builtin_bool)):
        raise InputError(
            f"argument {name!r} must be {_a(dtype)} scalar, got {type(value).__name__} {_short(value)}"
        )
    if type(value) is int and not -_INT64_LIMIT <= value < _INT64_LIMIT:
        # a Python int past int64, which numpy would make an object array
        if dtype == "bool":
            raise InputError(f"argument {name!r} must be a bool scalar, got int {_short(value)}")
        if dtype not in ("float64", "float32"):
            raise InputError(f"argument {name!r}: {_short(value)} does not fit in {dtype}")
        try:
            value = float(value)  # as numpy's float64 makes it
        except OverflowError:
            raise InputError(f"argument {name!r}: the int {_short(value)} is too large for {dtype}") from None
    kind = np.asarray(value).dtype.kind
    if not kind_ok(kind, dtype):
        raise InputError(
            f"argument {name!r} must be {_a(dtype)} scalar, got {np.asarray(value).dtype} {_short(value)}"
        )
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


def refused(error, checks):
    """The InputError naming the scalar argument the machine code's read refused with ``error``
    (a TypeError for an array of rank > 0, see ``RANK_READ_BY_KERNEL``; an OverflowError for an
    int too large for the parameter), or ``error`` when each of the (value, name, dtype)
    ``checks`` is a scalar of its parameter."""
    for value, name, dtype in checks:
        try:
            scalar(value, name, dtype)
        except InputError as refused:
            return refused
    return error


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
    """An array argument as a C-contiguous array of ``dtype`` and rank ``ndim``, or InputError.

    An ndarray subclass is read as the plain array of its data (``np.asarray``): a ``np.matrix``
    or ``np.memmap`` holds nothing else the result depends on. A masked array is refused: its
    mask would be ignored."""
    target = as_dtype(dtype)
    if type(value) is np.ndarray and value.ndim == ndim:
        # the common kinds first, with no attribute read twice: an array of another layout (a
        # strided view), of integers for floats, read-only, or given by keyword
        have = value.dtype
        if have is target:
            return value if value.flags.num & _C_ALIGNED == _C_ALIGNED else value.copy()
        if target.kind == "f" and have.kind in "iub" and value.size:
            # (integers whose range holds only for an integer target: see below)
            converted = value.astype(target)
            return converted if converted.flags.num & _C_ALIGNED == _C_ALIGNED else converted.copy()
    if type(value) is not np.ndarray and isinstance(value, np.ndarray):
        if isinstance(value, np.ma.MaskedArray):
            raise masked_error(value, name)
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        if isinstance(value, (str, bytes, dict, set)) or value is None:
            raise InputError(
                f"argument {name!r} must be a {ndim}-d {dtype} array, got "
                f"{type(value).__name__} {_short(value)}"
            )
        if hasattr(value, "tocsr"):  # scipy.sparse; np.asarray would make a 0-d object array
            raise InputError(f"argument {name!r}: sparse matrices are not supported; pass {name}.toarray()")
        try:
            value = np.asarray(value)
        except Exception as exc:
            raise InputError(f"argument {name!r} could not be read as an array: {exc}") from None
    if value.ndim != ndim:
        raise InputError(
            f"argument {name!r} must have rank {ndim}, got an array of shape {value.shape} "
            f"(rank {value.ndim})"
        )
    if not kind_ok(value.dtype.kind, dtype):
        raise InputError(f"argument {name!r} must hold {dtype} values, got dtype {value.dtype}")
    if value.dtype != target:
        if target.kind in "iu" and value.size:
            info = np.iinfo(dtype)
            if value.dtype.kind in "iu" and (value.min() < info.min or value.max() > info.max):
                raise InputError(f"argument {name!r}: values do not fit in {dtype}")
        # a new array, so aligned; in the order of value's strides ("K", much cheaper than "C"),
        # so C-ordered when value is
        converted = value.astype(target)
        return converted if converted.flags.c_contiguous else np.ascontiguousarray(converted)
    # C-ordered and aligned, as the compiled entry point (called without the dispatcher's type
    # checks) assumes; a copy (order "C") is a new such array (np.require cost ~3x more)
    if value.flags.c_contiguous and value.flags.aligned:
        return value
    return value.copy()


def masked_error(value, name):
    masked = int(np.ma.count_masked(value))
    return InputError(
        f"argument {name!r} is a masked array ({masked} of {value.size} values masked); compiled "
        f"functions do not read masks, so pass {name}.filled(fill_value) to choose what masked "
        f"values become, or np.asarray({name}) to use the data under the mask as it is"
    )


def call_by_name(entry, title, names, given, more, named):
    """A call of a generated entry that was not plain positional: bind it by name, then call."""
    n = next((k for k, v in enumerate(given) if v is MISSING), len(given))
    if more:
        return entry(*bind(title, names, list(given) + list(more), named))
    # the values after the first missing one were given by name (the entry took them out of named)
    by_name = {names[k]: given[k] for k in range(n, len(given)) if given[k] is not MISSING}
    return entry(*bind(title, names, list(given[:n]), {**by_name, **named}))


def bind(title, names, args, kwargs):
    """Positional and keyword arguments as one positional list, or InputError naming the problem."""
    n = len(names)
    if len(args) > n:
        raise InputError(
            f"{title} takes {n} argument{'s' if n != 1 else ''} ({', '.join(names)}), got {len(args)}"
        )
    bound = list(args) + [None] * (n - len(args))
    given = [True] * len(args) + [False] * (n - len(args))
    for key, value in kwargs.items():
        if key not in names and isinstance(key, str):
            # names are NFKC-normalised where they are made, as Python normalises f(ｘ=1); a
            # local import: a saved module copies bind() and imports only what it names
            import unicodedata

            key = unicodedata.normalize("NFKC", key)
        if key not in names:
            raise InputError(f"{title} got an unexpected argument {key!r}; its inputs are {', '.join(names)}")
        i = names.index(key)
        if given[i]:
            raise InputError(f"{title} got argument {key!r} twice (by position and by name)")
        bound[i] = value
        given[i] = True
    missing = [names[i] for i in range(n) if not given[i]]
    if missing:
        raise InputError(
            f"{title} is missing argument{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)}"
        )
    return bound


def fixed_dim_error(name, axis, got, expected):
    return InputError(f"argument {name!r}: dimension {axis} must be {expected}, got {got}")


def dim_error(name, axis, got, dim, first_name, first_axis, bound):
    return InputError(
        f"argument {name!r}: dimension {axis} is {got}, but dimension {dim!r} is {bound} "
        f"(from axis {first_axis} of {first_name!r})"
    )


def too_small(dim, value, minimum, what, where=""):
    origin = f" ({where})" if where else ""
    return InputError(f"dimension {dim} is {value}{origin}, but {what} needs it to be at least {minimum}")


def _a(dtype):
    return f"an {dtype}" if dtype.startswith("int") else f"a {dtype}"


def _short(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------- module cache


_dirs = {}  # the cache directory asked for -> the one used (itself, or a private fallback)
_dirs_lock = threading.Lock()


def cache_dir():
    """The directory generated modules and numba's machine code live in: ``$SYMGRAD_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/symgrad`` or ``~/.cache/symgrad``.

    Whoever can write to it can run code as this user (a module or a numba index file planted
    there is executed), so on the first use in each process it must be a directory owned by the
    current user that neither group nor others can write, as must its ``__pycache__``; the
    directories symgrad creates for it get mode 0700. If it is not, or cannot be written,
    a warning says why and a fresh private directory (``tempfile.mkdtemp``) is used instead."""
    root = os.environ.get("SYMGRAD_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "symgrad"
    )
    found = _dirs.get(root)
    if found is None or not os.path.isdir(found):  # deleted while this process runs: check again
        with _dirs_lock:
            found = _dirs.get(root)
            if found is None or not os.path.isdir(found):
                found = _dirs[root] = _private_dir(root)
    return found


def _private_dir(root):
    import warnings

    try:
        _make_dirs(root)
        problem = _not_private(root)
        if problem is None:
            pycache = os.path.join(root, "__pycache__")
            _make_dirs(pycache)
            problem = _not_private(pycache)
        if problem is None:
            probe = os.path.join(root, f".probe{os.getpid()}")
            with open(probe, "w"):
                pass
            os.remove(probe)
            _check_numba_cache_dir()
            return root
        reason = f"is not private to this user: {problem}"
    except OSError as exc:
        reason = f"cannot be written ({exc.strerror or exc})"
    fallback = tempfile.mkdtemp(prefix="symgrad-")  # mode 0700, a new name: nobody else's
    os.mkdir(os.path.join(fallback, "__pycache__"), 0o700)
    import atexit
    import shutil

    atexit.register(shutil.rmtree, fallback, True)
    warnings.warn(
        f"symgrad: the cache directory {root} {reason}; using the private directory {fallback} for "
        "this process instead (set SYMGRAD_CACHE_DIR to a directory only you can write)",
        RuntimeWarning,
        stacklevel=3,
    )
    return fallback


def _check_numba_cache_dir():
    # with NUMBA_CACHE_DIR set, numba keeps the index and machine code of symgrad's functions
    # there instead of beside the module, where symgrad cannot choose the place: say so if others
    # could write to it (numba unpickles its index files)
    import warnings

    folder = os.environ.get("NUMBA_CACHE_DIR")
    problem = _not_private(folder) if folder and os.path.isdir(folder) else None
    if problem is not None:
        warnings.warn(
            f"symgrad: NUMBA_CACHE_DIR is set, so numba keeps symgrad's compiled code in {folder}, "
            f"which is not private to this user ({problem}); whoever can write there can run code "
            "as you",
            RuntimeWarning,
            stacklevel=4,
        )


def _make_dirs(path):
    """Create ``path`` and any missing parents with mode 0700 (only this user may enter them)."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            if not os.path.isdir(folder):
                raise


def _not_private(path):
    """Why another user could write to directory ``path`` (None if nobody but its owner can)."""
    st = os.stat(path)
    uid = os.getuid() if hasattr(os, "getuid") else None
    if uid is not None and st.st_uid != uid:
        return f"{path} is owned by uid {st.st_uid}, not by this user (uid {uid})"
    if uid is not None and st.st_mode & 0o022:
        return f"{path} can be written by its group or by others (mode {st.st_mode & 0o777:o})"
    return None


def _entries(root):
    """The cache's files grouped by generated module: name -> [(path, size, last use)]."""
    groups = {}
    for folder in (root, os.path.join(root, "__pycache__")):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if not name.startswith("symgrad_"):
                continue
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not os.path.isfile(path):
                continue
            # a module's last use is its source file's access time, set on every load (numba's
            # index checks only the modification time and the size)
            used = max(st.st_atime, st.st_mtime)
            groups.setdefault(name.split(".", 1)[0], []).append((path, st.st_size, used))
    return groups


def cache_size(root=None):
    """(bytes, files) the generated modules and their compiled code take in the cache."""
    groups = _entries(root or cache_dir())
    return sum(s for g in groups.values() for _, s, _ in g), sum(len(g) for g in groups.values())


DEFAULT_MAX_BYTES = 1 << 30
EVICT_GRACE_SECONDS = 60.0  # a module written or loaded this recently is never evicted


def cache_max_bytes():
    """The cache's size cap: ``$SYMGRAD_CACHE_MAX_BYTES`` (a number of bytes), else 1 GiB."""
    text = os.environ.get("SYMGRAD_CACHE_MAX_BYTES", "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        value = int(float(text))
    except ValueError:
        raise UnsupportedError(f"SYMGRAD_CACHE_MAX_BYTES must be a number of bytes, got {text!r}") from None
    return max(value, 0)


def evict(root=None, max_bytes=None, now=None):
    """Delete least recently used modules (with their compiled code) until the cache is at most
    ``max_bytes``; returns (files, bytes) removed. Safe with other processes doing the same or
    using the modules: a module loaded is not read from disk again, a file already gone is
    skipped, and a module used in the last ``EVICT_GRACE_SECONDS`` is kept."""
    root = root or cache_dir()
    limit = cache_max_bytes() if max_bytes is None else max_bytes
    now = time.time() if now is None else now
    groups = _entries(root)
    total = sum(s for g in groups.values() for _, s, _ in g)
    files = size = 0
    for _, group in sorted(groups.items(), key=lambda item: max(u for _, _, u in item[1])):
        if total <= limit:
            break
        if max(u for _, _, u in group) > now - EVICT_GRACE_SECONDS:
            continue
        # the source last: a process that finds it then finds no stale compiled code beside it
        for path, nbytes, _ in sorted(group, key=lambda f: f[0].endswith(".py")):
            try:
                os.remove(path)
            except OSError:
                continue
            files += 1
            size += nbytes
            total -= nbytes
    return files, size


def clear_cache():
    """Delete symgrad's generated modules and their compiled code; returns (files, bytes) removed."""
    import shutil

    root = cache_dir()
    files = size = 0
    for entry in os.listdir(root):
        path = os.path.join(root, entry)
        if entry.startswith("symgrad_"):
            if os.path.isdir(path):
                for dirpath, _, names in os.walk(path):
                    for name in names:
                        files += 1
                        size += os.path.getsize(os.path.join(dirpath, name))
                shutil.rmtree(path, ignore_errors=True)
            else:
                files += 1
                size += os.path.getsize(path)
                os.remove(path)
    # the files in __pycache__, not the directory: it stays private (mode 0700)
    pycache = os.path.join(root, "__pycache__")
    for name in os.listdir(pycache) if os.path.isdir(pycache) else ():
        path = os.path.join(pycache, name)
        if os.path.isfile(path):
            files += 1
            size += os.path.getsize(path)
            os.remove(path)
    return files, size


_versions_text = None


def base_versions():
    """The versions every generated module depends on (numba's aside): part of its name."""
    return f"symgrad {__version__}; numpy {np.__version__}; python {sys.version.split()[0]} {sys.implementation.cache_tag}"


def library_versions():
    """The versions the cached machine code depends on; they are part of every numba module's
    name. It imports numba: a module of the numpy backend is named by ``base_versions``."""
    global _versions_text
    if _versions_text is None:
        try:
            import numba

            numba_version = numba.__version__
            # machine code compiled with Intel's SVML calls __svml_* functions: loaded in a
            # process without SVML it would crash, so each setting gets its own modules
            svml = "on" if getattr(numba.config, "USING_SVML", False) else "off"
        except ImportError:
            numba_version, svml = "absent", "off"
        # numba's cache checks only the module's own file: a change to the helpers it calls
        # must give the module another name (numba_runtime.py and the sibling modules it
        # imports, whose functions are compiled into the kernels: special, memory_kernels, ...)
        helpers = _helper_sources()
        _versions_text = (
            f"{base_versions()}; numba {numba_version}; "
            f"helpers {hashlib.sha256(helpers).hexdigest()[:12]}; svml {svml}"
        )
    return _versions_text


def _helper_sources():
    """The text of numba_runtime.py followed by that of each sibling module it imports."""
    here = os.path.dirname(__file__)
    text = _read_bytes(os.path.join(here, "numba_runtime.py")) or b""
    parts = [text]
    for line in text.decode("utf-8", "replace").splitlines():
        if line.startswith("from .") and not line.startswith("from .."):
            module = line[len("from .") :].split()[0]
            parts.append(_read_bytes(os.path.join(here, module + ".py")) or b"")
    return b"\0".join(parts)


def _read_bytes(path):
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _write_atomically(path, data):
    # a reader (another process) sees the old file or the new one, never a partial one
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def drop_compiled_caches(module_name):
    """Delete the bytecode and numba cache files of a cached module (after they failed to load)."""
    folder = os.path.join(cache_dir(), "__pycache__")
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    dropped = 0
    for name in names:
        if name.startswith(module_name + "."):
            try:
                os.remove(os.path.join(folder, name))
                dropped += 1
            except OSError:
                pass
    return dropped


_modules = weakref.WeakValueDictionary()  # the generated modules alive in this process, by name
_holders = {}  # (module name, id) -> live Compiled objects using it
_holders_lock = threading.RLock()  # taken by finalizers, which may run inside any code


def load_module(source, backend, fresh=False):
    """Write ``source`` to the cache (named by the hash of its text and of the library versions)
    and run it as a new module; returns (module, whether a valid copy was already on disk). The
    module is made from the text in memory, never from a file another process could have
    written: no bytecode is written or read. A missing, truncated or corrupt cache file is
    rewritten (numba needs it on disk: it keys its own cache by the file's time and size).
    ``fresh`` runs it again even if this process already has it. The module stays in
    ``sys.modules`` (numba finds it there when it loads machine code from its cache) while the
    caller holds it: give it to ``hold``.

    A numba module's kernel (the text up to ``KERNEL_END``: imports, constants, ``kernel``) is a
    module of its own, named by the hash of that text alone, which the module's entry part runs
    on: two modules that differ only in their entries' checks (a rolled loop's trip count read
    from an input's shape, traced at two lengths) share one kernel, and numba's machine code of
    it, in this process and in its disk cache."""
    modname = module_name(source, backend)
    cut = kernel_end(source) if backend == "numba" else None
    with _load_lock:
        kernel = None
        if cut is not None:
            kernel, _ = _load_text(source[:cut], kernel_module_name(source), fresh)
        try:
            return _load_text(source, modname, fresh, kernel, cut)
        except BaseException:
            if kernel is not None:
                _release((kernel.__name__, id(kernel)), kernel)
            raise


def _load_text(source, modname, fresh, kernel=None, cut=None):
    """``load_module`` of ``source`` as ``modname`` (the lock held); with ``kernel``, only the text
    from ``cut`` on runs, on the kernel module's names (the module keeps its loan of ``kernel``)."""
    data = source.encode("utf-8")
    root = cache_dir()
    path = os.path.join(root, modname + ".py")
    module = None if fresh else _lend(modname)
    if module is not None:
        _mark_used(path)
        if kernel is not None:  # this module holds a loan of it already
            _release((kernel.__name__, id(kernel)), kernel)
        return module, True
    existed = _read_bytes(path) == data
    if not existed:
        _write_atomically(path, data)
    try:
        module = _run_source(modname, path, source, kernel, cut)
    except Exception:
        drop_compiled_caches(modname)
        _write_atomically(path, data)
        module = _run_source(modname, path, source, kernel, cut)
    with _holders_lock:
        _modules[modname] = module
        _holders[(modname, id(module))] = 1
        sys.modules[modname] = module
    _mark_used(path)
    if not existed:
        evict(root)
    return module, existed


# where a numba module's kernel ends and its entry begins (codegen/emit.py prints it there)
KERNEL_END = "# the entry point of the machine code compiled for the argument types call() checks\n"


def kernel_end(source):
    """The offset of ``KERNEL_END`` in a module's ``source`` (after its kernel), or None."""
    at = source.find("\ndef kernel(")
    at = -1 if at < 0 else source.find("\n" + KERNEL_END, at)
    return None if at < 0 else at + 1


def kernel_module_name(source):
    """The name of the module holding a numba module's kernel (the hash of the kernel's text),
    or None for a module without that part."""
    cut = kernel_end(source)
    return None if cut is None else module_name(source[:cut], "numba")


def kernel_module(module):
    """The module whose kernel ``module`` (a numba module from ``load_module``) runs, or None."""
    return vars(module).get("__symgrad_kernel__")


def module_name(source, backend):
    """The name ``load_module`` gives the module of ``source``: the hash of its text and of the
    library versions (``library_versions`` for the numba backend's, ``base_versions`` for the
    others': naming a numpy module imports no numba)."""
    versions = library_versions() if backend == "numba" else base_versions()
    digest = hashlib.sha256(versions.encode() + b"\0" + source.encode("utf-8")).hexdigest()[:24]
    return f"symgrad_{backend}_{digest}"


def numba_signature(inputs, passed=()):
    """numba's types of ``inputs`` (``kernel``'s signature), then of the ``passed`` nodes (the
    arrays ``kernel_into`` fills, given after the inputs)."""
    import numba  # the numba backend's machine code only: not on a background build's first tier

    def type_of(node, ndim):
        scalar = numba.from_dtype(np.dtype(node.dtype))
        return numba.types.Array(scalar, ndim, "C") if ndim else scalar

    return tuple(type_of(s, s.ndim) for s in inputs) + tuple(type_of(t, len(t.shape)) for t in passed)


def phase_timer(phases):
    """``measure(phase)``, a context manager adding the seconds of ``phase`` to ``phases``."""

    @contextmanager
    def measure(phase):
        begin = time.perf_counter()
        try:
            yield
        finally:
            phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - begin

    return measure


def _run_source(modname, path, source, kernel=None, cut=None):
    module = types.ModuleType(modname)
    module.__file__ = path  # numba's cache=True keeps its files in __pycache__ beside this path
    module.__loader__ = None
    if kernel is not None:
        # the entry part alone, at its lines of the file, on the kernel module's names
        module.__dict__.update((k, v) for k, v in vars(kernel).items() if not k.startswith("__"))
        module.__dict__["__symgrad_kernel__"] = kernel
        source = "\n" * source.count("\n", 0, cut) + source[cut:]
    # compiled from the text, so nothing loaded comes from a .pyc (the filename is for
    # tracebacks and for numba, which reads the file's stamp)
    exec(compile(source, path, "exec", dont_inherit=True), module.__dict__)
    return module


def _mark_used(path):
    # the access time is the cache's least-recently-used clock; the modification time, which
    # numba's index compares, is kept
    try:
        st = os.stat(path)
        os.utime(path, ns=(time.time_ns(), st.st_mtime_ns))
    except OSError:
        pass


def _lend(modname):
    """The module of this name this process has, counted as held (``load_module`` lends every
    module it returns: ``hold`` gives the loan to its Compiled), or None."""
    with _holders_lock:
        module = _modules.get(modname)
        if module is None:
            return None
        key = (modname, id(module))
        _holders[key] = _holders.get(key, 0) + 1
        if _modules.get(modname) is not module:  # released by a finalizer that ran just now
            _release(key, module)
            return None
        sys.modules[modname] = module
        return module


def has_overload(modname, signature):
    """Whether this process holds the module ``modname`` with machine code for ``signature``."""
    with _holders_lock:
        module = _modules.get(modname)
    kernel = None if module is None else machine_kernel(module)
    return kernel is not None and tuple(signature) in getattr(kernel, "overloads", {})


def machine_kernel(module):
    """The function of a generated module whose machine code ``call()`` runs: ``kernel_into``
    (the output arrays its loops fill given after the inputs) when the module has one, else
    ``kernel``."""
    return getattr(module, "kernel_into", None) or getattr(module, "kernel", None)


def hold(owner, module):
    """Hand the loan of ``module`` from ``load_module`` to ``owner`` (a Compiled): the module
    stays in ``sys.modules`` until the last owner is collected, then leaves it, so a process that
    compiles many functions and drops them keeps no module of theirs. A module loaded without
    an owner (a Dask worker's) stays."""
    with _holders_lock:
        sys.modules[module.__name__] = module
        kernel = kernel_module(module)
        if kernel is not None:
            sys.modules[kernel.__name__] = kernel
    weakref.finalize(owner, _release, (module.__name__, id(module)), module)


def _release(key, module):
    with _holders_lock:
        left = _holders.get(key, 1) - 1
        if left > 0:
            _holders[key] = left
            return
        _holders.pop(key, None)
        if _modules.get(key[0]) is module:
            del _modules[key[0]]  # a later build of the same source runs it again
        # numba keeps a dispatcher's compiled overloads from a finalizer that runs when the
        # dispatcher is freed, and they hold the module's globals: a dispatcher in those globals
        # would keep itself alive forever. Without it, it lives as long as someone holds it
        # (``.kernel``); ``kernel_entry``, which the module's ``call`` uses, keeps its own code.
        dispatchers = [
            name
            for name, value in vars(module).items()
            if type(value).__module__.startswith("numba.") and hasattr(value, "overloads")
        ]
        kernel = vars(module).pop("__symgrad_kernel__", None)
        if kernel is not None:
            # the kernel module's dispatchers are its own to let go (other modules may run them)
            for name in [n for n in dispatchers if vars(module)[n].py_func.__globals__ is not vars(module)]:
                dispatchers.remove(name)
                vars(module).pop(name)
            _release((kernel.__name__, id(kernel)), kernel)
        # the module stays in sys.modules while a dispatcher of it lives: numba imports the
        # module by name when it compiles (or loads from its cache) a new type, and would
        # otherwise cache the new machine code against a placeholder module no process has
        left = [len(dispatchers)]
        # a dispatcher another calls by name (the .kernel wrapper calls kernel_into) stays in the
        # globals while its caller lives: numba looks it up there when the caller compiles a type
        callees = {
            name: [n for n in vars(module)[name].py_func.__code__.co_names if n in dispatchers and n != name]
            for name in dispatchers
        }
        called = {n for names in callees.values() for n in names}

        def let_go(names):
            for n in names:
                if n in vars(module):
                    dispatcher = vars(module).pop(n)
                    weakref.finalize(dispatcher, _dispatcher_gone, key, left)
                    if callees[n]:
                        weakref.finalize(dispatcher, let_go, callees[n])

        let_go([name for name in dispatchers if name not in called])
        if not dispatchers:
            _dispatcher_gone(key, [1])


def _dispatcher_gone(key, left):
    with _holders_lock:
        left[0] -= 1
        module = sys.modules.get(key[0])
        if left[0] == 0 and module is not None and id(module) == key[1] and key not in _holders:
            del sys.modules[key[0]]


def generated_modules():
    """Names of the generated modules this process holds in ``sys.modules``."""
    return sorted(name for name in list(sys.modules) if name.startswith("symgrad_"))


# ---------------------------------------------------------------- Compiled


class Compiled:
    """A compiled function: call it, read ``.source``, reach the numba dispatcher as ``.kernel``
    (no checks) or ``.kernel_checked`` (the entry's size checks, raising ValueError).

    After a background build (``symgrad.config(compile="background")``, codegen/tiers.py) the
    first calls run on the numpy twin of the kernel while numba compiles; ``wait()`` returns once
    numba's machine code runs, and ``.kernel``, ``.kernel_checked``, ``.cache_state`` and
    ``save()`` wait by themselves. ``.tier`` says which kernel runs now."""

    source: str  # the generated module, exactly what was imported and compiled
    inputs: tuple[Expr, ...]  # the symbols, in call order
    outputs: tuple[Expr, ...]
    output_names: tuple[str, ...]
    backend: str
    title: str
    build_seconds: float  # until the build returned (a background build: its first tier ready)
    build_phases: dict[str, float]  # seconds per phase: (trace,) emit, load, numba compile
    graph_nodes: int

    def __init__(
        self,
        source: str,
        module: types.ModuleType,
        entry: str,
        inputs: Sequence[Expr],
        outputs: Sequence[Expr],
        output_names: Sequence[str],
        backend: str,
        title: str,
        build_seconds: float,
        graph_nodes: int,
        cache_state: str | None,
        job: Any = None,
    ) -> None:
        self.source = source
        # a background numba compile (codegen.tiers.NumbaJob): ``module`` is then the namespace
        # the entry runs in, and the numba module comes from the job when it is ready
        self._job = job
        self._ready_module = None if job is not None else module
        self._cache_state = cache_state
        self._entry = getattr(module, entry)
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.output_names = tuple(output_names)
        self.backend = backend
        self.title = title
        self.build_seconds = build_seconds
        self.build_phases: dict[str, float] = {}
        self.graph_nodes = graph_nodes
        self._names = [s.name for s in inputs]
        self._signature = None  # _build_signature's
        self._index = {s.name: i for i, s in enumerate(inputs)}

    def wait(self) -> Compiled:
        """Return this function once numba's machine code runs its calls (at once after a sync
        build or on the numpy backend); raise the error numba's compile raised, if it failed."""
        job = self._job
        if job is not None and self._ready_module is None:
            job.wait()
            self._cache_state = job.cache_state
            self.build_phases.update(job.phases)
            self._ready_module = job.module
        return self

    @property
    def tier(self) -> str:
        """The kernel that runs a call now: "numba" (machine code) or "numpy" (the numpy backend,
        or a background build's first tier while numba compiles)."""
        if self.backend != "numba":
            return "numpy"
        job = self._job
        return "numpy" if job is not None and (job.module is None) else "numba"

    @property
    def _module(self) -> types.ModuleType:
        return self.wait()._ready_module

    @property
    def _build_signature(self) -> tuple[Any, ...] | None:
        """numba's types of the inputs, the signature the numba backend compiles (None for the
        numpy backend); computed when first asked for, so a background build imports no numba."""
        if self.backend != "numba":
            return None
        if self._signature is None:
            self._signature = numba_signature(self.inputs)
        return self._signature

    @property
    def kernel(self) -> Any:
        """The numba dispatcher (numba backend; waits for a background compile) or the plain
        function (numpy backend)."""
        module = self._module
        kernel = module.kernel
        built = self._build_signature
        if kernel is not machine_kernel(module) and built is not None and not kernel.signatures:
            # the machine code call() runs is kernel_into's; kernel (allocating the arrays it
            # fills) compiles when first asked for, for the built types
            kernel.compile(built)
        return kernel

    @property
    def kernel_checked(self) -> Any:
        """The kernel after the entry's size checks (ValueError), for numba code: see emit.checked_kernel."""
        return self._module.kernel_checked

    @property
    def cache_state(self) -> str:
        """What the build did with the caches (waits for a background numba compile)."""
        return self.wait()._cache_state

    @property
    def compiles(self) -> list[dict[str, Any]]:
        """Every machine-code compile of this function, each with its cause. A call from Python
        never adds one: the entry converts arguments to the built types, and sizes are not part
        of a signature, so a new batch size compiles nothing. Only a call of ``.kernel`` from
        numba code with other argument types adds an entry, naming the arguments that differ.
        The build's record has ``seconds`` (the build, until it returned) and ``phases`` (seconds
        per phase, including the trace of a traced function), ``compile`` ("sync" or
        "background"), ``first_tier`` (the kernel that ran the first calls: "numpy" or "numba"),
        ``numba_ready_s`` (seconds from the start of the build until numba's machine code ran
        the calls; None while it compiles in the background), ``numba_s`` (the background load
        and compile) and ``tier`` (the kernel running now). Reading it does not wait."""
        built = self._build_signature
        if built is None:
            return []
        job = self._job
        record = {
            "signature": ", ".join(f"{s.name}: {t}" for s, t in zip(self.inputs, built)),
            "cause": "build",
            "cache": self._cache_state,
            "seconds": self.build_seconds,
            "phases": dict(self.build_phases),
            "compile": "sync" if job is None else "background",
            "first_tier": "numba" if job is None else "numpy",
            "numba_ready_s": self.build_seconds,
            "numba_s": None,
            "tier": self.tier,
        }
        if job is not None:
            done = job.finished.is_set()
            record["cache"] = job.cache_state if done else "numba compiling in the background"
            if job.error is not None:
                record["cache"] = f"numba failed: {type(job.error).__name__}"
            record["phases"].update(job.phases)
            record["numba_ready_s"] = job.ready_at - job.started if done and job.error is None else None
            record["numba_s"] = sum(job.phases.values()) if done and job.error is None else None
        records = [record]
        if self.tier != "numba":
            return records  # nobody has had the dispatcher yet: no other signature
        for sig in self._module.kernel.signatures:
            if tuple(sig) == tuple(built):
                continue
            new = [
                f"argument {s.name!r} is {t} (built for {b})"
                for s, t, b in zip(self.inputs, sig, built)
                if t != b
            ]
            records.append(
                {
                    "signature": ", ".join(f"{s.name}: {t}" for s, t in zip(self.inputs, sig)),
                    "cause": "called from numba code with new types: " + "; ".join(new),
                    "cache": None,
                    "seconds": None,
                    "phases": None,
                }
            )
        return records

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name == "_entry":
            _owners[value] = self
            # a call goes straight into the generated entry (its checks are code specialised for
            # this function), with no Python frame of ours in between
            self.__class__ = type(
                "Compiled", (Compiled,), {"__call__": staticmethod(value), "__module__": __name__}
            )

    def __reduce__(self):
        raise UnsupportedError(
            f"{self.title}: a Compiled function cannot be pickled; build it again in the other "
            "process (its machine code is cached on disk, so that is fast)"
        )

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(self._names)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs or len(args) != len(self._names):
            args = self._bind(args, kwargs)
        return self._entry(*args)

    def _bind(self, args, kwargs):
        return bind(self.title, self._names, args, kwargs)

    def scipy(self, *fixed: Any, **fixed_by_name: Any) -> Any:  # a symgrad.optimize.ScipyProblem
        """fun / jac / hess / hessp on flat float64 vectors for ``scipy.optimize.minimize``
        (a ``value_and_grad`` only); see ``symgrad.optimize.ScipyProblem``."""
        if _scipy_problem is None:
            raise UnsupportedError(f"{self.title}: .scipy() needs symgrad.optimize (import symgrad)")
        return _scipy_problem(self, *fixed, **fixed_by_name)

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the generated module to ``path`` as a standalone file that imports only numpy
        and numba (symgrad's helpers it calls are copied in), so ``import loss_grad;
        loss_grad.call(...)`` works without symgrad. Numba backend only. Returns the path."""
        self.wait()
        text = standalone_source(self)
        path = os.path.abspath(os.fspath(path))
        _write_atomically(path, text.encode("utf-8"))
        return path

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}: {shape_str(s.shape)} {s.dtype}" for s in self.inputs)
        outs = ", ".join(
            f"{name}: {shape_str(o.shape)} {o.dtype}" for name, o in zip(self.output_names, self.outputs)
        )
        return (
            f"<symgrad.Compiled {self.title}\n  inputs:  {ins}\n  outputs: {outs}\n"
            f"  graph: {self.graph_nodes} nodes after CSE ({_tree_size(self.outputs)} as a tree "
            f"without sharing); source: {self.source.count(chr(10))} lines\n"
            f"  backend: {self.backend}; cache: {self.compiles[0]['cache'] if self.compiles else self._cache_state}; "
            f"build: {self.build_seconds:.3f} s>"
        )


def _tree_size(outputs):
    """Nodes the outputs would have as expression trees, every use of a shared node counted
    again: what CSE saved. A node's tree size is one plus its inputs' (no recursion)."""
    limit = 10**12  # deep sharing makes trees exponentially large; stop counting there
    size = {}
    for node in topo_order(list(outputs)):
        size[id(node)] = min(limit, 1 + sum(size[id(i)] for i in node.inputs))
    total = sum(size[id(o)] for o in outputs)
    return str(total) if total < limit else "over 10^12"


def timed():
    return time.perf_counter()


def checked_indices(kernel, *args):
    """Run ``kernel``; an index value out of range (found by the kernel) becomes an InputError."""
    try:
        return kernel(*args)
    except IndexError:
        raise InputError(
            "an integer index passed to the compiled function is out of range for the "
            "axis it indexes (valid: -size <= index < size)"
        ) from None


def _all_threads():
    return None


_threads = _all_threads  # () -> the threads row blocks run on (None: all numba has); install_threads


def install_threads(read):
    """Let ``read()`` (an int >= 1, or None for every thread numba has) say how many threads the
    row blocks of a long fused loop run on (``symgrad.config(threads=...)``)."""
    global _threads
    _threads = read


def run_blocks(kernel, args):
    """Run ``kernel`` (a generated ``kernel_blocks``: long fused loops in row blocks under
    ``numba.prange``) on the threads ``install_threads``'s reader gives, at most numba's. The first
    call compiles it (a parallel compile, seconds; numba's disk cache keeps it). Its bits do not
    depend on the threads (codegen/threads.py)."""
    # numba's OpenMP threads sleep while they wait for work, unless the user chose otherwise:
    # spinning ones take the core from the thread they wait for on a busy machine (rosen/1e6 on 2
    # threads, 4 other processes running: 56 ms spinning, 7 ms sleeping; 10 ms on 1 thread).
    # libgomp reads it when it starts, with numba's first parallel loop
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if not hasattr(kernel, "overloads"):
        return kernel(*args)  # a background build's first tier (codegen/tiers.py): the numpy twin
    # numba: heavy optional import (see tests/test_layering.py); only numba kernels come here
    import numba

    # the types the entry checked, as kernel_entry's (codegen._compile_numba): a Python int or a
    # 0-d array for a float goes to the same machine code, read as numba reads kernel_entry's
    # arguments, not to one compiled for int64 (a second parallel compile, integer arithmetic); a
    # saved module's dispatcher has none, and its entry passes only kinds numba types as built
    signature = getattr(kernel, "built_signature", None)
    if signature is None:
        signature = tuple(numba.typeof(a) for a in args)
    if signature not in kernel.overloads:
        with building("row blocks for threads") as build, build.measure("numba compile"):
            if not load_cached(kernel, signature):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    kernel.compile(signature)
    kernel = kernel.overloads[signature].entry_point
    wanted = _threads()
    most = numba.config.NUMBA_NUM_THREADS
    count = most if wanted is None else min(wanted, most)
    if numba.get_num_threads() != count:
        numba.set_num_threads(count)
    if count == 1:
        # numba's one chunk: handing blocks out one by one costs a call of the loop's body per
        # block (rosen/1e6, 62 blocks: 1.57 ms one by one, 1.32 ms at once; the plain loop 1.31)
        return kernel(*args)
    # blocks are handed out one at a time: on a busy machine a thread that gets less of a core
    # takes fewer (which blocks a thread runs never changes the bits: each has its own partials)
    chunk = numba.set_parallel_chunksize(1)
    try:
        return kernel(*args)
    finally:
        numba.set_parallel_chunksize(chunk)


# ---------------------------------------------------------------- hooks for the layers above
#
# The compiler knows numpy arrays only; symgrad's public layer plugs in the rest when it is
# imported: symgrad.dask_arrays registers Dask arrays as an argument kind it handles, and
# symgrad.optimize provides what Compiled.scipy() builds. Neither the generated code nor this
# module imports them.

_array_hooks = []  # (predicate, handler), in registration order
_owners = weakref.WeakValueDictionary()  # generated entry -> the Compiled it belongs to
_scipy_problem = None


def register_array_hook(predicate, handler):
    """Let a generated entry hand arguments of another kind to ``handler``.

    On its slow path (an array argument that is not a C-contiguous ndarray of the built
    dtype and rank), the entry asks ``predicate(value)`` for that argument; when it is
    true, the entry returns ``handler(entry, args)`` (``args``: every argument, positional)
    instead of converting the value with ``np.asarray``. ``owner_of(entry)`` gives the
    Compiled. Registering the same predicate again replaces its handler."""
    _array_hooks[:] = [(p, h) for p, h in _array_hooks if p is not predicate]
    _array_hooks.append((predicate, handler))


def hooked(value):
    """Is ``value`` an argument kind a registered hook handles? The entry's slow path asks, never
    of a numpy array (no hook's kind)."""
    for predicate, _ in _array_hooks:
        if predicate(value):
            return True
    return False


def call_hooked(entry, args):
    """The call of ``entry`` with ``args``, some of which a registered hook handles."""
    for predicate, handler in _array_hooks:
        if any(predicate(a) for a in args):
            return handler(entry, args)
    raise AssertionError("call_hooked without a hooked argument")


def owner_of(entry):
    """The Compiled whose generated entry function is ``entry`` (None if it is gone)."""
    return _owners.get(entry)


def install_scipy_problem(factory):
    """``Compiled.scipy(*fixed, **fixed_by_name)`` returns ``factory(compiled, *fixed, **fixed_by_name)``."""
    global _scipy_problem
    _scipy_problem = factory
