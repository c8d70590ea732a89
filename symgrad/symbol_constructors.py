"""The symbol constructors: named inputs of an expression (``sg.tensor``, ``sg.scalar``, ...).

They need only the graph, so the frontends (the parser, the SymPy bridge, the tracer) build
their symbols here without importing the public API above them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import ShapeError, UnsupportedError
from .graph import Expr, ShapeLike, as_dtype, as_shape, new_node, user_name


def tensor(name: str, shape: ShapeLike = (), dtype: Any = "float64") -> Expr:
    """A named input of ``shape`` (ints and dim names such as ``("n", "d")``) and ``dtype``.

    The same name, shape and dtype always give the same symbol."""
    name = user_name(name, "a symbol name", "tensor", error=UnsupportedError)
    shape = as_shape(shape, where=f"tensor {name!r}")
    for d in shape:
        if not isinstance(d, int) and not d.is_Symbol:
            raise ShapeError(f"tensor {name!r}: input dimensions must be ints or names, got {d}")
    dtype = as_dtype(dtype, where=f"tensor {name!r}")
    return new_node("symbol", (), {"name": name}, shape, dtype)


def scalar(name: str, dtype: Any = "float64") -> Expr:
    """A named scalar input (float64 unless ``dtype`` says otherwise)."""
    return tensor(name, (), dtype)


def scalars(names: str | Iterable[str], dtype: Any = "float64") -> tuple[Expr, ...]:
    """Several scalars from a space- or comma-separated string: ``x, y = sg.scalars("x y")``."""
    if isinstance(names, str):
        names = names.replace(",", " ").split()
    return tuple(scalar(n, dtype) for n in names)


def symbols(names: str | Iterable[str], dtype: Any = "float64") -> Expr | tuple[Expr, ...]:
    """Scalars as SymPy's ``symbols`` gives them: one name gives one symbol (``r = sg.symbols("r")``),
    several names (separated by spaces or commas), a trailing comma or a list give a tuple."""
    if isinstance(names, str):
        text = names.strip()
        if text and "," not in text and not any(c.isspace() for c in text):
            return scalar(text, dtype)
    return scalars(names, dtype)
