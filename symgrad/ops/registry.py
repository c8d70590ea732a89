"""The op table: one record per op holding its semantics and derivative rules.

An op is registered once with

- ``infer(inputs, attrs) -> (shape, dtype)``: the shape and dtype rule, raising
  ``ShapeError`` / ``UnsupportedError`` when the graph is built;
- ``impl(*arrays, **attrs)``: what the op computes, in numpy (used for constant
  folding and as the definition the backends must match);
- ``vjp``: one rule per input, ``rule(g, *inputs, out) -> Expr``, written in the
  graph language so that derivatives of derivatives come for free. ``None``
  for an input means the op is not differentiable in it (zero adjoint);
- ``note``: the one-line maths of the rule, shown as a comment in generated code.

Backends keep their own lowering table keyed by the same op names.
"""

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..errors import UnsupportedError
from ..graph import Expr, new_node, as_dtype, is_float, size_of, concrete

OPS = {}

# Largest constant (in elements) that folding will materialise.
FOLD_LIMIT = 4096


@dataclass
class OpDef:
    name: str
    infer: Callable
    impl: Optional[Callable]
    vjp: tuple = ()
    vjp_variadic: Optional[Callable] = None
    note: str = ""
    commutative: bool = False
    doc: str = ""
    extra: dict = field(default_factory=dict)

    def vjp_rule(self, index):
        """The VJP rule for input ``index``: callable(g, *inputs, out) or None."""
        if self.vjp_variadic is not None:
            rule = self.vjp_variadic
            return lambda g, *args: rule(index, g, *args)
        if index < len(self.vjp):
            return self.vjp[index]
        return None


def register(name, infer, impl=None, vjp=(), *, vjp_variadic=None, note="", commutative=False,
             doc="", **extra):
    if name in OPS:
        raise RuntimeError(f"op {name!r} registered twice")
    if callable(vjp):
        vjp = (vjp,)
    op = OpDef(name, infer, impl, tuple(vjp), vjp_variadic, note, commutative, doc, extra)
    OPS[name] = op
    return op


def _canonical_key(node):
    # constants sort last so that maximum(x, 0) and maximum(0, x) are one node
    return (node.op == "constant", node.serial)


def make(op, inputs, **attrs):
    """Build (or find) the node ``op(*inputs)``: infer, canonicalise, simplify, fold, intern."""
    opdef = OPS[op]
    inputs = list(inputs)
    if opdef.commutative:
        inputs.sort(key=_canonical_key)
    shape, dtype = opdef.infer(inputs, attrs)
    from ..passes.simplify import rewrite
    replaced = rewrite(op, inputs, attrs, shape, dtype)
    if replaced is not None:
        return replaced
    if (opdef.impl is not None and inputs and all(i.op == "constant" for i in inputs)
            and concrete(shape) and size_of(shape) <= FOLD_LIMIT):
        with np.errstate(all="ignore"):
            value = opdef.impl(*[i.value for i in inputs], **attrs)
        return constant(np.asarray(value, dtype=dtype))
    return new_node(op, inputs, attrs, shape, dtype)


def constant(value, dtype=None):
    """A constant node holding a numpy array (a 0-d array for a scalar)."""
    if isinstance(value, Expr):
        return value
    arr = np.asarray(value)
    if dtype is not None:
        dtype = as_dtype(dtype)
    elif arr.dtype.kind == "f":
        dtype = arr.dtype.name if arr.dtype.name in ("float32", "float64") else "float64"
    elif arr.dtype.kind in "iu":
        dtype = arr.dtype.name
    elif arr.dtype.kind == "b":
        dtype = "bool"
    else:
        raise UnsupportedError(f"cannot embed a constant of dtype {arr.dtype} ({value!r:.60})")
    arr = np.array(arr, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return new_node("constant", (), {"value": arr}, tuple(int(d) for d in arr.shape), dtype)


def as_expr(value, like=None):
    """An Expr for ``value``. Python numbers are weakly typed: they take ``like``'s float dtype."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, (bool, np.bool_)):
        return constant(bool(value), "bool")
    if isinstance(value, (int, float)) and not isinstance(value, np.generic):
        if like is not None and is_float(like.dtype):
            return constant(value, like.dtype)
        if isinstance(value, int):
            if like is not None and like.dtype != "bool":
                return constant(value, like.dtype)
            return constant(value, "int64")
        return constant(value, "float64")
    if isinstance(value, (np.ndarray, np.generic, list, tuple)):
        return constant(value)
    raise UnsupportedError(f"cannot use a {type(value).__name__} ({value!r:.60}) in an expression")


def zero_like(node):
    """A scalar zero of node's dtype (broadcasts wherever it is used)."""
    return constant(0, node.dtype)


def one_like(node):
    return constant(1, node.dtype)


register("symbol", infer=lambda inputs, attrs: (attrs["shape"], attrs["dtype"]),
         doc="a named input")
register("constant", infer=lambda inputs, attrs: (attrs["value"].shape, attrs["value"].dtype.name),
         doc="a value embedded in the graph")
