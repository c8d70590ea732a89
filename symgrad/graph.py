"""The expression graph: immutable, hash-consed nodes with static shapes and dtypes.

A node (``Expr``) is an op name, a tuple of input nodes, static attributes, a
shape and a dtype. Nodes are interned: building the same node twice returns the
same object, which is the first layer of common-subexpression elimination.
The intern table is process-global and holds nodes weakly, so a graph nobody
references any more is freed.

A shape is a tuple of dimensions. A dimension is an ``int`` or a symbolic
dimension: a SymPy integer expression over named dims (``n``, ``n - 1``,
``n*d``). Named dims come from input declarations such as
``sg.tensor("X", shape=("n", "d"))``; derived ones come from slicing,
reshaping and concatenation.
"""

from __future__ import annotations

import functools
import itertools
import re
import threading
import unicodedata
import weakref
from hashlib import blake2b as _blake2b

from collections.abc import Iterable
from typing import Any, NoReturn, Union

import numpy as np
import sympy

# SymPy's Add imports sympy.tensor (with sympy.combinatorics, 0.05-0.1 s) the first time it adds
# two terms: a dim's arithmetic (n - 1, a rolled loop's trip count) would pay it during a build,
# on the way to the first result; it belongs with SymPy's own import
import sympy.tensor.tensor  # noqa: F401

from .errors import ShapeError, SymgradError, UnsupportedError

# a dimension: a size, or a SymPy expression over dimension names (``n``, ``2*n + 1``)
Dim = Union[int, sympy.Expr]
Shape = tuple[Dim, ...]
# what as_shape takes: one dim, a sequence of them (ints, names, SymPy expressions), or None
ShapeLike = Union[None, int, str, Iterable[Union[int, str, sympy.Expr]]]

# ---------------------------------------------------------------- dtypes

FLOAT_DTYPES = ("float32", "float64")
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
ALL_DTYPES = FLOAT_DTYPES + INT_DTYPES + ("bool",)


class DType(str):
    """A node's dtype: its name (a ``str``, so every table keyed by name works) that also
    compares like numpy's dtype: ``x.dtype == np.float64``, ``== np.dtype("float64")``,
    ``== float`` and ``== "float64"`` hold, and ``.name``, ``.kind``, ``.itemsize``,
    ``.type``, ``.char`` are numpy's."""

    __slots__ = ()

    def __eq__(self, other):
        if self is other:
            return True
        if isinstance(other, str):
            return str.__eq__(self, other)
        if isinstance(other, (np.dtype, type)):
            try:
                return np.dtype(other).name == str.__str__(self)
            except TypeError:
                return False
        return NotImplemented

    def __ne__(self, other):
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = str.__hash__

    @property
    def numpy(self):
        """numpy's dtype of this name."""
        return _NUMPY_DTYPES[self]

    name = property(lambda self: str.__str__(self))
    kind = property(lambda self: _NUMPY_DTYPES[self].kind)
    itemsize = property(lambda self: _NUMPY_DTYPES[self].itemsize)
    type = property(lambda self: _NUMPY_DTYPES[self].type)
    char = property(lambda self: _NUMPY_DTYPES[self].char)


# keyed by the DType objects themselves: a lookup with one (the common case) matches by
# identity, without calling DType.__eq__
_DTYPES = {d: d for d in map(DType, ALL_DTYPES)}
_NUMPY_DTYPES = {d: np.dtype(d) for d in _DTYPES}
_FLOATS = frozenset(_DTYPES[name] for name in FLOAT_DTYPES)


def as_dtype(dtype, where="dtype"):
    """Normalise a dtype spelling (``np.float32``, ``"float32"``, ``float``) to its name."""
    if isinstance(dtype, str):
        named = _DTYPES.get(dtype)
        if named is not None:
            return named  # the common case, on the path of every node built
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        raise UnsupportedError(f"{where}: {dtype!r} is not a dtype") from None
    name = np_dtype.name
    if name not in ALL_DTYPES:
        # str(), not .name: numpy calls '<U3' "str96"
        raise UnsupportedError(
            f"{where}: dtype {np_dtype} is not supported; use one of {', '.join(ALL_DTYPES)}"
        )
    return _DTYPES[name]


def is_float(dtype):
    return dtype in _FLOATS


def promote(*dtypes):
    """numpy's promotion of array dtypes (NumPy 2 rules, no value-based casting)."""
    return _promote(dtypes)


@functools.lru_cache(maxsize=None)
def _promote(dtypes):
    # np.result_type costs microseconds and runs for every binary node built; dtype
    # names are few, so remember each combination
    return _DTYPES[np.result_type(*[np.dtype(d) for d in dtypes]).name]


def float_of(dtype):
    """The float dtype an op on ``dtype`` computes in: floats keep theirs, ints go to float64."""
    return dtype if is_float(dtype) else _DTYPES["float64"]


# ---------------------------------------------------------------- dims and shapes

_dim_symbols = {}


def user_name(name: str, what: str, where: str, error: type[SymgradError] = ShapeError) -> str:
    """``name`` as symgrad keeps it: a plain ``str`` identifier, normalised as Python normalises
    identifiers (NFKC, so ``"ｎ"`` is ``"n"``: two names are the same name exactly when Python
    would read them as the same variable). Every symbol and dimension name passes here where it
    is made; names starting with ``__`` are refused (codegen keeps that space for escapes)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise error(f"{where}: {what} must be an identifier string, got {name!r}")
    # a plain str: a subclass could answer repr() or str() with other text than its characters
    name = unicodedata.normalize("NFKC", str.__str__(name))
    if not name.isidentifier():
        raise error(f"{where}: {what} {name!r} is not an identifier after NFKC normalisation")
    if name.startswith("__"):
        raise error(f"{where}: {what} may not start with '__': {name!r}")
    return name


def dim_symbol(name):
    """The SymPy symbol of a named dimension; the same name is always the same symbol."""
    name = user_name(name, "dimension name", "dim")
    if name not in _dim_symbols:
        _dim_symbols[name] = sympy.Symbol(name, integer=True, nonnegative=True)
    return _dim_symbols[name]


# what a dimension expression may be built of: the shapes symgrad derives are polynomials in
# named dims; anything else (a user-made sympy.Function, a Float) is refused where it arrives
# sympy.floor: the number of blocks of a checkpointed loop of symbolic length (symgrad/loops.py)
_DIM_PARTS = (sympy.Symbol, sympy.Integer, sympy.Rational, sympy.Add, sympy.Mul, sympy.Pow, sympy.floor)


def as_dim(d, where="shape"):
    """Normalise one dimension: a non-negative int, a dim name, or a SymPy expression over
    dim names (each name checked and normalised by ``user_name``, whatever type it came as)."""
    if isinstance(d, (bool, np.bool_)):
        raise ShapeError(f"{where}: dimension {d!r} is a bool, not a size")
    if isinstance(d, (int, np.integer)):
        if d < 0:
            raise ShapeError(f"{where}: dimension {d} is negative")
        return int(d)
    if isinstance(d, str):
        return dim_symbol(user_name(d, "dimension name", where))
    if isinstance(d, sympy.Expr):
        if d.is_Integer:
            return int(d)
        for part in sympy.preorder_traversal(d):
            if not isinstance(part, _DIM_PARTS):
                raise ShapeError(
                    f"{where}: dimension {str(d)!r} contains {type(part).__name__}; a dimension is an "
                    "int, a name, or sums and products of names"
                )
        symbols = d.free_symbols
        renamed = {s: dim_symbol(user_name(s.name, "dimension name", where)) for s in symbols}
        return d.xreplace(renamed) if any(renamed[s] is not s for s in symbols) else d
    raise ShapeError(f"{where}: dimension {d!r} is neither an int nor a name")


def as_shape(shape: ShapeLike, where: str = "shape") -> Shape:
    if shape is None:
        return ()
    if isinstance(shape, (int, np.integer, str)):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise ShapeError(f"{where}: {shape!r} is not a shape (a tuple of ints and names)") from None
    return tuple(as_dim(d, where) for d in dims)


def dim_str(d):
    return str(d) if isinstance(d, int) else str(d).replace(" ", "")


def shape_str(shape):
    """A shape as users write it: ``(n, 3)``."""
    inner = ", ".join(dim_str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def dims_equal(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if a == b:  # the same expression (simplify is slow, and its first call imports sympy.physics)
        return True
    diff = sympy.expand(sympy.Integer(a) - b if isinstance(a, int) else a - b)
    if diff == 0:
        return True
    if diff.is_number or diff.is_polynomial():  # a polynomial that expands to non-zero is not zero
        return False
    return sympy.simplify(sympy.Integer(a) - b if isinstance(a, int) else a - b) == 0


def dim_product(dims):
    out = 1
    for d in dims:
        out = out * d
    if isinstance(out, sympy.Expr):
        out = sympy.expand(out)
        if out.is_Integer:
            return int(out)
    return out


def size_of(shape):
    return dim_product(shape)


def concrete(shape):
    """True when every dimension is an int."""
    return all(isinstance(d, int) for d in shape)


def broadcast_shapes(*shapes, what="operands"):
    """numpy broadcasting of static shapes; a named dim only matches itself or 1."""
    if shapes and all(s == shapes[0] for s in shapes):
        return tuple(shapes[0])
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dim = 1
        for s in shapes:
            k = i - (rank - len(s))
            if k < 0:
                continue
            d = s[k]
            if isinstance(d, int) and d == 1:
                continue
            if isinstance(dim, int) and dim == 1:
                dim = d
            elif not dims_equal(dim, d):
                listed = " and ".join(shape_str(s) for s in shapes)
                raise ShapeError(
                    f"cannot broadcast {what} of shapes {listed}: "
                    f"dimension {dim_str(dim)} does not match {dim_str(d)}"
                )
        out.append(dim)
    return tuple(out)


def normalize_axes(axis, rank, where="axis"):
    """An axis argument (None, int, or tuple of ints, negatives allowed) as a sorted tuple."""
    if axis is None:
        return tuple(range(rank))
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        axis = (axis,)
    try:
        axes = tuple(axis)
    except TypeError:
        raise ShapeError(f"{where}: {axis!r} is not an int or a tuple of ints") from None
    out = []
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            raise ShapeError(f"{where}: {a!r} is not an int")
        if not -rank <= a < rank:
            raise ShapeError(f"{where}: axis {a} is out of range for rank {rank}")
        a = int(a) % rank
        if a in out:
            raise ShapeError(f"{where}: axis {a} repeated")
        out.append(a)
    return tuple(sorted(out))


# ---------------------------------------------------------------- nodes

_intern = weakref.WeakValueDictionary()
_intern_lock = threading.RLock()
_serial = itertools.count()


def _attr_key(value):
    """A hashable key for an attribute value that keeps types apart (1, 1.0 and True differ)."""
    if isinstance(value, tuple):
        return ("tuple",) + tuple(_attr_key(v) for v in value)
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if type(value) is DType:
        return ("str", value)  # a dtype attribute keys as its name
    return (type(value).__name__, value)


# How an Expr prints (``repr`` and Jupyter's LaTeX). The printers walk graphs with the functions
# of this module, so they live above it: symgrad.printing installs them here when it is imported
# (symgrad's __init__ imports it); until then an Expr prints as its op and shape.
PRINTERS = {
    "text": lambda e: f"<Expr {e.op} {shape_str(e.shape)} {e.dtype}>",
    "latex": lambda e: None,
}


class Expr:
    """One node of the graph. Build nodes with the ``sg.*`` functions and operators."""

    __slots__ = (
        "op",
        "inputs",
        "attrs",
        "shape",
        "dtype",
        "serial",
        "height",
        "digest",
        "_key",
        "__weakref__",
    )

    op: str
    inputs: tuple[Expr, ...]
    attrs: dict[str, Any]
    shape: Shape
    dtype: DType
    serial: int  # creation order in this process (never part of what a node means)
    height: int  # the longest path down to a leaf: 0 for symbols and constants
    digest: int  # structural fingerprint, the same in every process

    # Python operators on Expr come from symgrad.ops (installed there).
    __array_priority__ = 1000

    def __init__(self, *args, **kwargs):
        raise TypeError("Expr nodes are built with sg.scalar, sg.tensor and the sg.* ops")

    # A node is interned: one object stands for every occurrence of its expression in this
    # process, so nothing may change it after new_node made it (per-compile data such as the
    # rule notes of a gradient lives in side tables, autodiff.RuleNotes).
    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenNodeError(f"Expr nodes are immutable (interned and shared): cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenNodeError(f"Expr nodes are immutable (interned and shared): cannot delete {name!r}")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def name(self) -> str | None:
        """The symbol's name (symbols only)."""
        return self.attrs.get("name")

    @property
    def value(self) -> np.ndarray | None:
        """The constant's value as a read-only numpy array (constants only)."""
        return self.attrs.get("value")

    @property
    def is_symbol(self) -> bool:
        return self.op == "symbol"

    @property
    def is_constant(self) -> bool:
        return self.op == "constant"

    def __hash__(self) -> int:
        return object.__hash__(self)

    def __bool__(self) -> bool:
        raise UnsupportedError(
            "the truth value of a symbolic expression is unknown when the graph is built; "
            "use sg.where(cond, a, b) instead of if/else on symbolic values"
        )

    # int(x), float(x), operator.index(x), complex(x): a symbolic value has no number yet. The
    # error is also a TypeError, which is what SymPy (n * x with n a symbolic size) and numpy
    # expect when they try a conversion and fall back to the operators.
    def __float__(self) -> float:
        raise _conversion_error("float", self)

    def __int__(self) -> int:
        raise _conversion_error("int", self)

    def __index__(self) -> int:
        raise _conversion_error("operator.index (an index or size)", self)

    def __complex__(self) -> complex:
        raise _conversion_error("complex", self)

    # SymPy's operators (``n * x``, n a symbolic size) would sympify x by calling float(x);
    # an operand with ``_op_priority`` is not sympified, so they return NotImplemented and
    # Expr's reflected operator builds the node (SymPy's own matrices have 10.01)
    _op_priority = 20.0

    def __repr__(self) -> str:
        return PRINTERS["text"](self)

    def __str__(self) -> str:
        return self.__repr__()

    def _repr_latex_(self) -> str:
        return PRINTERS["latex"](self)

    def __reduce__(self) -> NoReturn:
        raise UnsupportedError(
            "Expr objects cannot be pickled; rebuild the expression in the other "
            "process (or send a string for sg.parse)"
        )

    def __iter__(self) -> NoReturn:
        raise UnsupportedError(
            f"cannot iterate over an expression of shape {shape_str(self.shape)}; index it instead"
        )

    def __len__(self) -> int:
        if not self.shape:
            raise UnsupportedError("len() of a scalar expression")
        d = self.shape[0]
        if not isinstance(d, int):
            raise UnsupportedError(f"len() of an expression whose first dimension {dim_str(d)} is symbolic")
        return d


class FrozenNodeError(UnsupportedError, AttributeError):
    """Setting or deleting an attribute of an Expr (an AttributeError too, as for a frozen object)."""


class ConversionError(UnsupportedError, TypeError):
    """int()/float()/index of a symbolic value (a TypeError too, for the libraries that try one)."""


def _conversion_error(what, expr):
    return ConversionError(
        f"{what}() of a symbolic value (shape {shape_str(expr.shape)}, dtype {expr.dtype}): it has "
        "no number while the graph is built. Use sg.where(cond, a, b) (np.where) instead of "
        "branching on it or converting it, or pass the number as a static value (a bool, or "
        "a value that does not change between calls)"
    )


@functools.lru_cache(maxsize=4096)
def _digest_head(op, attr_key, dtype, shape):
    # a node without its inputs, as text (reprs of strs, numbers, bytes, tuples and SymPy dims are
    # the same in every process) hashed to 64 bits; the same for most nodes of one op
    # (elementwise ones have no attributes), so remembered
    text = repr((op, str(dtype), shape, attr_key)).encode("utf-8", "backslashreplace")
    return int.from_bytes(_blake2b(text, digest_size=8).digest(), "little")


def _digest(op, inputs, attr_key, dtype, shape):
    """A node's structural fingerprint, an int: its op, dtype, shape and attributes, and its
    inputs' fingerprints, hashed. It depends on the expression alone (not on what the process
    built before, as ``serial`` does), so it orders commutative operands the same way in every
    process: the hash of a tuple of ints is not salted per process, as that of a str is."""
    head = _digest_head(op, attr_key, dtype, shape)
    if not inputs:
        return head
    return hash((head, *[inp.digest for inp in inputs]))


class _NewExpr(Expr):
    """An Expr being filled in by new_node: same slots, ordinary attribute setting. new_node
    fills its slots, then makes it an Expr (one call, where seven object.__setattr__ calls
    would add a third to the cost of a fresh node)."""

    __slots__ = ()
    __setattr__ = object.__setattr__  # type: ignore[assignment]


def new_node(op, inputs, attrs, shape, dtype):
    """Intern a node: the same (op, inputs, attrs, dtype) always returns the same object."""
    attrs = dict(attrs)
    attr_key = _attr_key(tuple(sorted(attrs.items()))) if attrs else ()
    key = (op, tuple(map(id, inputs)), attr_key, dtype, shape)
    with _intern_lock:
        node = _intern.get(key)
        if node is not None:
            return node
        # Expr.__setattr__ refuses every change: the slots are filled here, once
        node = object.__new__(_NewExpr)
        node.op = op
        node.inputs = tuple(inputs)
        node.attrs = attrs
        node.shape = shape
        node.dtype = _DTYPES.get(dtype) or as_dtype(dtype)
        node.serial = next(_serial)
        height = 0  # the longest path down to a leaf
        for inp in inputs:
            if inp.height >= height:
                height = inp.height + 1
        node.height = height
        node.digest = _digest(op, inputs, attr_key, node.dtype, shape)
        node._key = key
        object.__setattr__(node, "__class__", Expr)
        _intern[key] = node
        return node


def topo_order(outputs, operands=None):
    """Nodes reachable from ``outputs``, inputs before users, walked depth-first with an explicit
    stack. ``operands(node, seen)``: the operands to walk, in the order to walk them (default:
    every input not yet ``seen`` (ids), in input order)."""
    order = []
    seen = set()
    for root in outputs:
        if id(root) in seen:
            continue
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            walked = node.inputs if operands is None else operands(node, seen)
            # pushed in reverse: the first is popped, and so walked, first
            stack += [(inp, False) for inp in reversed(walked) if id(inp) not in seen]
    return order


def free_symbols(outputs):
    """The symbols the outputs depend on, sorted by name (``name_order``): the order
    depends on the expression alone. Two symbols of one name are an error."""
    symbols = [n for n in topo_order(outputs) if n.op == "symbol"]
    check_symbol_names(symbols)
    return sorted(symbols, key=name_order)


_DIGITS = re.compile(r"([0-9]+)")


def name_order(symbol):
    """The default positional order of inputs: natural sort by name, digit runs compared
    as numbers (``x2`` before ``x10``), then case-insensitively, then case-sensitively."""
    name = symbol.name
    parts = _DIGITS.split(name.lower())
    # split alternates text and digits, so text parts only ever meet text parts
    natural = tuple(int(p) if i % 2 else p for i, p in enumerate(parts))
    return natural, name.lower(), name


def check_symbol_names(symbols):
    by_name = {}
    for s in symbols:
        other = by_name.setdefault(s.name, s)
        if other is not s:
            raise ShapeError(
                f"two different symbols are both named {s.name!r} in one graph: "
                f"{describe_symbol(other)} and {describe_symbol(s)}"
            )


def describe_symbol(s):
    return f"{s.name}: shape {shape_str(s.shape)} {s.dtype}"
