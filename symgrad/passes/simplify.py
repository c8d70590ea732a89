"""Rewrites applied as each node is built, so every graph (including gradient graphs) is simplified.

Only identities that are exact in IEEE arithmetic are applied, for every input
including inf, nan and signed zeros:

    x * 1 -> x        x * -1 -> -x       x / 1 -> x       x / -1 -> -x
    x - 0 -> x        x + (-0.0) -> x    -(-x) -> x
    x ** 1 -> x       x ** 2 -> square(x)                  x ** -1 -> reciprocal(x)
    (x * c2) * c1 -> x * (c1 * c2)   scalar float64 constants, c2 = +-2**k (k >= 0) and
                      |c1| >= 1: x * c2 is exact (or overflows exactly when x * (c1 * c2)
                      does), so both round once to the same float (rosen's 100 * (2 * s))
    x ** 0 -> 1       (IEEE pow(x, 0) is 1 even for nan and inf; found by the fuzzer:
                       the rule 0 * x ** -1 gave nan at x = 0)
    op(broadcast_to(s), y) -> op(s, y)   an elementwise op whose other operand y has the
                      result's shape; a constant array of one value (bit for bit) counts as
                      that value broadcast (a sum's gradient seed folded over a concrete shape)
    reshape/transpose/broadcast_to/cast to what x already is -> x
    reshape(reshape(x)) -> reshape(x)    transpose(transpose(x)) -> one transpose
    reduce over no axes -> x (in the reduction's dtype)
    stop_gradient(constant) -> constant
    where(True, a, b) -> a               where(False, a, b) -> b   (when shapes allow)

Stable forms, chosen automatically (equal in exact arithmetic; the rewritten form
neither overflows nor loses the gradient where the literal one does):

    log(1 + exp(x)) -> softplus(x)       log1p(exp(x)) -> softplus(x)
    log(sigmoid(x)) -> -softplus(-x)
    log(sum(exp(s), axis, keepdims)) -> logsumexp(s, axis, keepdims)   (max-shifted:
        -inf and a NaN-free gradient when a whole slice is -inf)

Not applied, because they are wrong for some float: ``0 * x -> 0`` (x may be inf
or nan), ``x + 0 -> x`` (-0.0 + 0 is +0.0), ``x - x -> 0``, ``x / x -> 1``.
Nodes whose inputs are all constants are folded into a constant (registry.make).
Dead code never reaches the generated source: codegen emits only what the
outputs depend on.
"""

import numpy as np

from .. import ops
from ..ops import registry
from ..ops.registry import make


def _scalar_const(node, value):
    if node.op != "constant" or node.value.size != 1:
        return False
    v = node.value.reshape(())[()]
    if value == 0 and isinstance(value, float):
        return v == 0 and np.signbit(v) == np.signbit(value)
    return v == value


def _keeps(x, shape, dtype):
    return x.shape == shape and x.dtype == dtype


# the largest constant array whose elements are compared to find it uniform (a folded gradient seed)
UNIFORM_LIMIT = 4096


def _uniform_value(node):
    """The 0-d constant every element of the constant array ``node`` equals bit for bit (a
    scalar broadcast and folded: the seed ``1.0`` of a sum's gradient over a concrete shape, the
    ``0.5`` of ``0.5 * sum(...)``), else None."""
    if node.op != "constant" or node.ndim == 0 or not 1 < node.value.size <= UNIFORM_LIMIT:
        return None
    flat = np.ascontiguousarray(node.value).reshape(-1)
    raw = flat.view(np.uint8).reshape(flat.size, flat.itemsize)  # bits: -0.0 is not 0.0, nan is nan
    if not (raw[-1] == raw[0]).all() or not (raw == raw[0]).all():
        return None
    return ops.constant(flat[0], node.dtype)


def _scalar_of(node):
    """The scalar ``node`` broadcasts over its shape: s of broadcast_to(s, shape) for a 0-d s,
    the value of a uniform constant array; else None."""
    if node.op == "broadcast_to" and node.inputs[0].ndim == 0:
        return node.inputs[0]
    return _uniform_value(node)


def _unbroadcast_scalars(op, inputs, shape):
    """op(broadcast_to(s, shape), y) -> op(s, y) when y already has the result's shape; a
    constant array of one value counts as its value broadcast (exact: op sees the same operands
    element by element), so a kernel multiplies by a literal, not by a constant read from memory,
    and the scalar rules (x * 1 -> x, the folding of scaled products) apply to it."""
    scalars = [_scalar_of(i) for i in inputs]
    if not any(s is not None for s in scalars):
        return None
    narrowed = [i if s is None else s for i, s in zip(inputs, scalars)]
    if any(i.shape == shape and s is None and i.op != "broadcast_to" for i, s in zip(inputs, scalars)):
        return narrowed
    if all(i.ndim == 0 for i in narrowed):
        # every operand is a broadcast scalar: compute once, broadcast the result
        return "outer", narrowed
    return None


def _float64_scalar(node):
    """The value of a scalar float64 constant node, else None."""
    if node.op != "constant" or node.dtype != "float64" or node.value.size != 1:
        return None
    return float(node.value.reshape(())[()])


def _fold_scaled(x, c, shape, dtype):
    """``(y * c2) * c1 -> y * (c1 * c2)`` when exact (see the module's list), else None."""
    c1 = _float64_scalar(c)
    if c1 is None or not abs(c1) >= 1 or not np.isfinite(c1) or x.op != "mul" or dtype != "float64":
        return None
    for y, k in (x.inputs, reversed(x.inputs)):
        c2 = _float64_scalar(k)
        if c2 is None or y.op == "constant" or not _keeps(y, shape, dtype) or c2 == 0:
            continue
        mantissa, _ = np.frexp(abs(c2))
        if mantissa == 0.5 and abs(c2) >= 1 and np.isfinite(c1 * c2):
            return make("mul", [y, ops.constant(c1 * c2, "float64")])
    return None


def rewrite(op, inputs, attrs, shape, dtype):
    """Return a simpler node equal to op(*inputs), or None."""
    opdef = ops.OPS[op]
    if opdef.elementwise and opdef.arity >= 2:
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
        for x, c in ((a, b), (b, a)):
            folded = _fold_scaled(x, c, shape, dtype)
            if folded is not None:
                return folded
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
    elif op in ("log", "log1p"):
        return _stable_log(op, inputs[0], shape, dtype)
    elif op == "neg":
        (x,) = inputs
        if x.op == "neg":
            return x.inputs[0]
    elif op == "pow":
        a, b = inputs
        if _keeps(a, shape, dtype):
            if _scalar_const(b, 1):
                return a
            if _scalar_const(b, 0):
                return ops.broadcast_to(ops.constant(1, dtype), shape)
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
    elif opdef.reduction:
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


def _stable_log(op, x, shape, dtype):
    """The stable forms of log(1 + exp(x)), log1p(exp(x)), log(sigmoid(x)), log(sum(exp(s)))."""
    if op == "log1p":
        if x.op == "exp" and _keeps(x, shape, dtype):
            return ops.softplus(x.inputs[0])
        return None
    if x.op == "add":
        a, b = x.inputs
        for e, c in ((a, b), (b, a)):
            if e.op == "exp" and _scalar_const(c, 1) and _keeps(e, shape, dtype):
                return ops.softplus(e.inputs[0])
    elif x.op == "sigmoid":
        return ops.neg(ops.softplus(ops.neg(x.inputs[0])))
    elif x.op == "sum" and x.inputs[0].op == "exp" and x.dtype == x.inputs[0].dtype:
        return ops.logsumexp(x.inputs[0].inputs[0], x.attrs["axes"], x.attrs["keepdims"])
    return None


# every node built from here on goes through these rewrites (ops.registry.make calls them)
registry.install_rewrite(rewrite)
