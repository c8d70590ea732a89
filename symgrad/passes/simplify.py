"""Rewrites applied as each node is built, so every graph (including gradient graphs) is simplified.

Only identities that are exact in IEEE arithmetic are applied, for every input
including inf, nan and signed zeros:

    x * 1 -> x        x * -1 -> -x       x / 1 -> x       x / -1 -> -x
    x - 0 -> x        x + (-0.0) -> x    -(-x) -> x
    x ** 1 -> x       x ** 2 -> square(x)                  x ** -1 -> reciprocal(x)
    reshape/transpose/broadcast_to/cast to what x already is -> x
    reshape(reshape(x)) -> reshape(x)    transpose(transpose(x)) -> one transpose
    reduce over no axes -> x (in the reduction's dtype)
    stop_gradient(constant) -> constant
    where(True, a, b) -> a               where(False, a, b) -> b   (when shapes allow)

Not applied, because they are wrong for some float: ``0 * x -> 0`` (x may be inf
or nan), ``x + 0 -> x`` (-0.0 + 0 is +0.0), ``x - x -> 0``, ``x / x -> 1``.
Nodes whose inputs are all constants are folded into a constant (registry.make).
Dead code never reaches the generated source: codegen emits only what the
outputs depend on.
"""

import numpy as np


def _scalar_const(node, value):
    if node.op != "constant" or node.value.size != 1:
        return False
    v = node.value.reshape(())[()]
    if value == 0 and isinstance(value, float):
        return v == 0 and np.signbit(v) == np.signbit(value)
    return v == value


def _keeps(x, shape, dtype):
    return x.shape == shape and x.dtype == dtype


_ELEMENTWISE_BINARY = {"add", "sub", "mul", "div", "pow", "maximum", "minimum", "arctan2", "less",
                       "less_equal", "greater", "greater_equal", "equal", "not_equal", "where"}


def _unbroadcast_scalars(op, inputs, shape):
    """op(broadcast_to(s, shape), y) -> op(s, y) when y already has the result's shape."""
    if not any(i.op == "broadcast_to" and i.inputs[0].ndim == 0 for i in inputs):
        return None
    narrowed = [i.inputs[0] if (i.op == "broadcast_to" and i.inputs[0].ndim == 0) else i for i in inputs]
    if any(i.shape == shape and i.op != "broadcast_to" for i in inputs):
        return narrowed
    if all(i.ndim == 0 for i in narrowed):
        # every operand is a broadcast scalar: compute once, broadcast the result
        return "outer", narrowed
    return None


def rewrite(op, inputs, attrs, shape, dtype):
    """Return a simpler node equal to op(*inputs), or None."""
    from .. import ops
    from ..ops.registry import make
    if op in _ELEMENTWISE_BINARY:
        narrowed = _unbroadcast_scalars(op, inputs, shape)
        if isinstance(narrowed, tuple):
            return ops.broadcast_to(make(op, narrowed[1], **attrs), shape)
        if narrowed is not None:
            return make(op, narrowed, **attrs)
    if op == "mul":
        a, b = inputs
        for x, c in ((a, b), (b, a)):
            if _keeps(x, shape, dtype) and _scalar_const(c, 1):
                return x
            if _keeps(x, shape, dtype) and _scalar_const(c, -1):
                return ops.neg(x)
    elif op == "div":
        a, b = inputs
        if _keeps(a, shape, dtype) and _scalar_const(b, 1):
            return a
        if _keeps(a, shape, dtype) and _scalar_const(b, -1):
            return ops.neg(a)
    elif op == "sub":
        a, b = inputs
        if _keeps(a, shape, dtype) and _scalar_const(b, 0):
            return a
    elif op == "add":
        a, b = inputs
        for x, c in ((a, b), (b, a)):
            if _keeps(x, shape, dtype) and c.dtype in ("float32", "float64") and _scalar_const(c, -0.0):
                return x
    elif op == "neg":
        (x,) = inputs
        if x.op == "neg":
            return x.inputs[0]
    elif op == "pow":
        a, b = inputs
        if _keeps(a, shape, dtype):
            if _scalar_const(b, 1):
                return a
            if _scalar_const(b, 2):
                return ops.square(a)
            if _scalar_const(b, -1):
                return ops.reciprocal(a)
    elif op == "reshape":
        (x,) = inputs
        if x.shape == shape:
            return x
        if x.op == "reshape":
            return ops.reshape(x.inputs[0], shape)
    elif op == "transpose":
        (x,) = inputs
        axes = attrs["axes"]
        if axes == tuple(range(len(axes))):
            return x
        if x.op == "transpose":
            inner = x.attrs["axes"]
            return ops.transpose(x.inputs[0], tuple(inner[a] for a in axes))
    elif op == "broadcast_to":
        (x,) = inputs
        if x.shape == shape:
            return x
    elif op == "cast":
        (x,) = inputs
        if x.dtype == dtype:
            return x
    elif op in ("sum", "max", "min", "prod"):
        (x,) = inputs
        if not attrs["axes"]:
            return x if x.dtype == dtype else ops.cast(x, dtype)
    elif op == "stop_gradient":
        (x,) = inputs
        if x.op in ("constant", "stop_gradient"):
            return x
    elif op == "where":
        c, a, b = inputs
        if c.op == "constant" and c.value.size == 1:
            pick = a if bool(c.value.reshape(())[()]) else b
            if _keeps(pick, shape, dtype):
                return pick
    return None
