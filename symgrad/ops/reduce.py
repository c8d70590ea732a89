"""Reductions with ``axis`` and ``keepdims``, and the stable composites built on them.

- ``sum``: its VJP repeats the adjoint over the reduced axes (the seeds' Sum/Repeat duality).
- ``max``/``min``: the gradient goes to one element per reduced slice, the first
  maximum (minimum) in C order, as ``argmax`` picks it; forward mode carries the
  tangent of that same element, so at a tie both modes make the same choice.
- ``prod``: the gradient of each element is the product of all the others, so
  zeros are handled exactly; so is the second derivative, a product over an
  (m, m) table per slice of m elements (m must be a concrete size).
- ``mean = sum / count``; ``logsumexp``, ``softmax`` and ``log_softmax`` shift by
  the (gradient-stopped) max so they never overflow; a slice that is all
  ``-inf`` gives ``logsumexp = -inf`` rather than NaN, and a zero (not NaN) gradient.
"""

import numpy as np

from ..errors import ShapeError, UnsupportedError
from ..graph import broadcast_shapes, dim_product, normalize_axes
from . import registry
from .registry import register, make, as_expr, constant, count  # noqa: F401  (count, re-exported)
from . import elementwise as ew
from .structure import broadcast_to, expand_dims, reshape, transpose


def _reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _reduce_infer(inputs, attrs):
    (x,) = inputs
    return _reduced_shape(x.shape, attrs["axes"], attrs["keepdims"]), x.dtype


# numpy sums and multiplies narrow ints in the 64-bit int of their sign, so they do not overflow
_ACCUMULATOR = {
    "int8": "int64",
    "int16": "int64",
    "int32": "int64",
    "uint8": "uint64",
    "uint16": "uint64",
    "uint32": "uint64",
}


def _extreme_infer(inputs, attrs):
    """max and min: an axis of length 0 has no extreme (a named dim is checked at the call, see
    ``codegen.emit.requirements``)."""
    (x,) = inputs
    for axis in attrs["axes"]:
        if isinstance(x.shape[axis], int) and x.shape[axis] == 0:
            raise ShapeError(
                f"max/min over axis {axis} of a value of shape {tuple(x.shape)}: "
                "an axis of length 0 has no maximum or minimum"
            )
    return _reduce_infer(inputs, attrs)


def _accumulate_infer(inputs, attrs):
    shape, dtype = _reduce_infer(inputs, attrs)
    return shape, _ACCUMULATOR.get(dtype, dtype)


def _same_infer(inputs, attrs):
    return inputs[0].shape, inputs[0].dtype


def _keep(g, x, out):
    """The adjoint g reshaped with the reduced axes kept as size 1, so it broadcasts against x."""
    if out.attrs["keepdims"]:
        return g
    return reshape(g, _reduced_shape(x.shape, out.attrs["axes"], True))


def _repeat(g, x, out):
    if g.ndim == 0:
        return broadcast_to(g, x.shape)
    return broadcast_to(_keep(g, x, out), x.shape)


def _reduce_tangent(t, out):
    """The tangent of a reduction: ``t`` (masked or weighted, shaped like x) summed as ``out`` was."""
    return sum(t, out.attrs["axes"], out.attrs["keepdims"])


def _np_axes(axes):
    return tuple(axes)


register(
    "sum",
    _accumulate_infer,
    lambda x, axes, keepdims: np.sum(x, axis=_np_axes(axes), keepdims=keepdims),
    (lambda g, x, out: _repeat(g, x, out),),
    jvp=(lambda t, x, out: _reduce_tangent(t, out),),
    note="d sum(x) = repeat(g) over the summed axes",
    reduction=True,
    along_axes=True,
    linear=True,
    moves_adjoint=(0,),
    keeps_rows=True,
)
register(
    "max",
    _extreme_infer,
    lambda x, axes, keepdims: np.max(x, axis=_np_axes(axes), keepdims=keepdims),
    (lambda g, x, out: argmax_mask(x, out.attrs["axes"]) * _keep(g, x, out),),
    jvp=(lambda t, x, out: _reduce_tangent(argmax_mask(x, out.attrs["axes"]) * t, out),),
    note="d max(x): to the first maximal element",
    reduction=True,
    along_axes=True,
    keeps_rows=True,
    needs_nonempty=True,
)
register(
    "min",
    _extreme_infer,
    lambda x, axes, keepdims: np.min(x, axis=_np_axes(axes), keepdims=keepdims),
    (lambda g, x, out: argmin_mask(x, out.attrs["axes"]) * _keep(g, x, out),),
    jvp=(lambda t, x, out: _reduce_tangent(argmin_mask(x, out.attrs["axes"]) * t, out),),
    note="d min(x): to the first minimal element",
    reduction=True,
    along_axes=True,
    keeps_rows=True,
    needs_nonempty=True,
)
register(
    "prod",
    _accumulate_infer,
    lambda x, axes, keepdims: np.prod(x, axis=_np_axes(axes), keepdims=keepdims),
    (lambda g, x, out: prod_others(x, out.attrs["axes"]) * _keep(g, x, out),),
    jvp=(lambda t, x, out: _reduce_tangent(prod_others(x, out.attrs["axes"]) * t, out),),
    note="d prod(x)/dx_i = product of the other elements",
    reduction=True,
    along_axes=True,
    keeps_rows=True,
)


def _as_rows(moved, n_kept):
    """``moved`` (kept axes first) as a (kept, reduced) matrix; both counts spelled out, since
    ``-1`` is ambiguous when an axis has length 0."""
    shape = moved.shape
    return moved.reshape((int(np.prod(shape[:n_kept])), int(np.prod(shape[n_kept:]))))


def _np_first_extreme_mask(x, axes, pick):
    x = np.asarray(x)
    keep = [i for i in range(x.ndim) if i not in axes]
    perm = keep + list(axes)
    moved = np.transpose(x, perm)
    rows = _as_rows(moved, len(keep))
    mask = np.zeros_like(rows)
    if rows.shape[1]:
        mask[np.arange(rows.shape[0]), pick(rows, axis=1)] = 1
    return np.transpose(mask.reshape(moved.shape), np.argsort(perm))


def _np_prod_others(x, axes):
    x = np.asarray(x)
    keep = [i for i in range(x.ndim) if i not in axes]
    perm = keep + list(axes)
    moved = np.transpose(x, perm)
    rows = _as_rows(moved, len(keep))
    if rows.shape[1] == 0:
        return np.ones_like(x)  # no other elements (and no element at all)
    ones = np.ones((rows.shape[0], 1), dtype=rows.dtype)
    before = np.cumprod(np.concatenate([ones, rows[:, :-1]], axis=1), axis=1)
    after = np.cumprod(np.concatenate([ones, rows[:, :0:-1]], axis=1), axis=1)[:, ::-1]
    return np.transpose((before * after).reshape(moved.shape), np.argsort(perm))


def _prod_others_vjp(g, x, out):
    # d/dx_l prod_{j != i} x_j = prod_{j not in {i, l}} x_j for l != i: the product of the
    # others of an (m, m) table per slice whose row i has x_i replaced by 1 (exact at zeros)
    axes = out.attrs["axes"]
    keep = [i for i in range(x.ndim) if i not in axes]
    m = dim_product([x.shape[a] for a in axes])
    if not isinstance(m, int):
        raise UnsupportedError(
            f"second derivatives of prod over a symbolic size ({m}) are not "
            "supported; give the reduced dimensions concrete sizes"
        )
    perm = tuple(keep + list(axes))
    lead = tuple(x.shape[i] for i in keep)
    rows = reshape(transpose(x, perm), lead + (m,))
    g_rows = reshape(transpose(g, perm), lead + (m,))
    if m * m > registry.MAX_CONSTANT_ELEMENTS:
        raise UnsupportedError(
            f"second derivatives of prod over {m} elements need a {m}x{m} mask, more than "
            f"{registry.MAX_CONSTANT_ELEMENTS} elements (SYMGRAD_MAX_CONSTANT_ELEMENTS); "
            "take the product of fewer elements, or write it as exp(sum(log(x))) for positive x"
        )
    eye = constant(np.eye(m, dtype=bool))
    table = ew.where(eye, 1, expand_dims(rows, -2))  # [..., i, j]
    pairs = prod_others(table, (len(lead) + 1,))  # [..., i, l]
    adjoint = sum(ew.where(eye, 0, expand_dims(g_rows, -1) * pairs), len(lead))  # sum over i != l
    moved = reshape(adjoint, tuple(x.shape[i] for i in perm))
    return transpose(moved, tuple(int(a) for a in np.argsort(perm)))


register(
    "argmax_mask",
    _same_infer,
    lambda x, axes: _np_first_extreme_mask(x, axes, np.argmax).astype(x.dtype),
    note="one-hot of the first maximum along axes (zero derivative)",
    along_axes=True,
    keeps_rows=True,
)
register(
    "argmin_mask",
    _same_infer,
    lambda x, axes: _np_first_extreme_mask(x, axes, np.argmin).astype(x.dtype),
    note="one-hot of the first minimum along axes (zero derivative)",
    along_axes=True,
    keeps_rows=True,
)
# its Jacobian is symmetric (it is the Hessian of prod), so the VJP rule is also the JVP rule
register(
    "prod_others",
    _same_infer,
    _np_prod_others,
    (_prod_others_vjp,),
    jvp=(_prod_others_vjp,),
    note="product of the other elements along axes",
    along_axes=True,
    keeps_rows=True,
)
register(
    "dimsize",
    lambda inputs, attrs: ((), attrs["dtype"]),
    None,
    note="the number of elements in the given dims, known when called",
    batch="it has no operands, so it never reads a batched value",
)


# ---------------------------------------------------------------- builders


def _reduce(op, x, axis, keepdims):
    x = as_expr(x)
    axes = normalize_axes(axis, x.ndim, where=f"{op}(axis={axis!r})")
    return make(op, [x], axes=axes, keepdims=bool(keepdims))


def sum(x, axis=None, keepdims=False):
    """Sum over ``axis`` (all axes by default)."""
    x = as_expr(x)
    if x.dtype == "bool":
        x = ew.cast(x, "int64")
    return _reduce("sum", x, axis, keepdims)


def max(x, axis=None, keepdims=False):
    return _reduce("max", x, axis, keepdims)


def min(x, axis=None, keepdims=False):
    return _reduce("min", x, axis, keepdims)


def prod(x, axis=None, keepdims=False):
    return _reduce("prod", x, axis, keepdims)


def argmax_mask(x, axes):
    return make("argmax_mask", [as_expr(x)], axes=tuple(axes))


def argmin_mask(x, axes):
    return make("argmin_mask", [as_expr(x)], axes=tuple(axes))


def prod_others(x, axes):
    return make("prod_others", [as_expr(x)], axes=tuple(axes))


def mean(x, axis=None, keepdims=False):
    """Mean over ``axis`` (all axes by default)."""
    x = ew._float(as_expr(x))
    axes = normalize_axes(axis, x.ndim, where=f"mean(axis={axis!r})")
    n = count([x.shape[a] for a in axes], x.dtype)
    return sum(x, axes, keepdims) / n


def _positive_scale(x):
    """(y, c) when ``x`` is y * c for a positive finite scalar float constant c, else None."""
    if x.op != "mul":
        return None
    for y, c in (x.inputs, x.inputs[::-1]):
        if c.op == "constant" and c.value.size == 1 and y.shape == x.shape and y.dtype == x.dtype:
            value = float(c.value.reshape(())[()])
            if 0 < value < np.inf:
                return y, c
    return None


def _shift(x, axes):
    scaled = _positive_scale(x)
    if scaled is not None:
        # max(y c) = max(y) c for c > 0 (rounding keeps the order; a zero's sign aside, which
        # the shifted x - m does not see): x = y c need not be an array of its own, only the
        # loop of exp(x - m) scales y (attention's scores times 1/sqrt(d))
        y, c = scaled
        m = ew.stop_gradient(max(y, axes, keepdims=True) * c)
    else:
        m = ew.stop_gradient(max(x, axes, keepdims=True))
    # an all -inf (or +inf) slice must not turn into inf - inf = nan
    return ew.where(ew.isfinite(m), m, 0)


def logsumexp(x, axis=None, keepdims=False, b=None):
    """log(sum(exp(x))) over ``axis``, shifted by the max so it never overflows.

    ``b``: weights, log(sum(b exp(x))) as SciPy's ``logsumexp(x, axis, b=b)``: ``b`` broadcasts
    with ``x`` (a scalar, an array or an expression), entries with ``b == 0`` are left out (also of
    the shift, as SciPy and JAX do), and a slice whose weighted sum is negative gives nan (SciPy's
    value without ``return_sign``; its gradient is nan there too)."""
    x = ew._float(as_expr(x))
    if b is not None:
        b = as_expr(b)
        broadcast_shapes(x.shape, b.shape, what="logsumexp(a, b=...): a and b")
        x = ew.where(ew.not_equal(b, 0), x, -np.inf)  # shaped as a and b broadcast
    axes = normalize_axes(axis, x.ndim, where=f"logsumexp(axis={axis!r})")
    m = _shift(x, axes)
    terms = ew.exp(x - m)
    total = sum(terms if b is None else b * terms, axes, keepdims=True)
    # an all -inf slice sums to 0: log(0) = -inf is the right value, but the derivative
    # of log, 1/0, would meet exp(-inf) = 0 as inf * 0 = nan; such slices get no gradient
    positive = total > 0
    empty = -np.inf if b is None else ew.where(ew.equal(total, 0), -np.inf, np.nan)
    out = ew.where(positive, ew.log(ew.where(positive, total, 1)), empty) + m
    if keepdims:
        return out
    return reshape(out, _reduced_shape(x.shape, axes, False))


def log_softmax(x, axis=-1):
    """x - logsumexp(x) along ``axis``."""
    x = ew._float(as_expr(x))
    return x - logsumexp(x, axis, keepdims=True)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along ``axis``, computed from the max-shifted exponentials."""
    x = ew._float(as_expr(x))
    axes = normalize_axes(axis, x.ndim, where=f"softmax(axis={axis!r})")
    e = ew.exp(x - _shift(x, axes))
    return e / sum(e, axes, keepdims=True)
