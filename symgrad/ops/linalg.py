"""Linear algebra: matmul (``@``, vector-matrix and batched), dot, outer.

The matmul backward rule is the seeds' ``dx = dy @ W.T``, ``dW = x.T @ dy``;
the 1-D cases are the same rule with the vector as a row or a column, and a
batch dimension that was broadcast is summed away.
"""

import numpy as np

from ..errors import ShapeError, UnsupportedError
from ..graph import broadcast_shapes, dim_str, dims_equal, float_of, promote, shape_str
from .registry import register, make, as_expr
from . import elementwise as ew
from .structure import expand_dims, reshape, sum_to, transpose


def _swap_last(x):
    axes = list(range(x.ndim))
    axes[-1], axes[-2] = axes[-2], axes[-1]
    return transpose(x, tuple(axes))


def _matmul_infer(inputs, attrs):
    a, b = inputs
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(
            f"matmul of shapes {shape_str(a.shape)} and {shape_str(b.shape)}: "
            "operands must have at least one dimension (use * for scalars)"
        )
    inner_a = a.shape[-1]
    inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if not dims_equal(inner_a, inner_b):
        raise ShapeError(
            f"matmul of shapes {shape_str(a.shape)} and {shape_str(b.shape)}: "
            f"inner dimensions {dim_str(inner_a)} and {dim_str(inner_b)} differ"
        )
    if a.ndim > 3 or b.ndim > 3:
        raise UnsupportedError(
            f"matmul of shapes {shape_str(a.shape)} and {shape_str(b.shape)}: "
            "at most one batch dimension is supported"
        )
    if a.ndim == 1 and b.ndim == 1:
        shape = ()
    elif a.ndim == 1:
        shape = b.shape[:-2] + b.shape[-1:]
    elif b.ndim == 1:
        shape = a.shape[:-1]
    else:
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2], what="matmul batch dimensions")
        shape = batch + (a.shape[-2], b.shape[-1])
    return shape, promote(a.dtype, b.dtype)


def _matmul_vjp_a(g, a, b, out):
    if a.ndim == 1 and b.ndim == 1:
        return g * b
    if b.ndim == 1:
        return outer(g, b)  # (m,) x (n,) -> (m, n)
    if a.ndim == 1:
        return matmul(b, g)  # (n, k) @ (k,) -> (n,)
    return sum_to(matmul(g, _swap_last(b)), a.shape)  # dx = dy @ W.T


def _matmul_vjp_b(g, a, b, out):
    if a.ndim == 1 and b.ndim == 1:
        return g * a
    if b.ndim == 1:
        return matmul(_swap_last(a), g)  # (n, m) @ (m,) -> (n,)
    if a.ndim == 1:
        return outer(a, g)  # (n,) x (k,) -> (n, k)
    return sum_to(matmul(_swap_last(a), g), b.shape)  # dW = x.T @ dy


register(
    "matmul",
    _matmul_infer,
    np.matmul,
    (_matmul_vjp_a, _matmul_vjp_b),
    jvp=(lambda t, a, b, out: matmul(t, b), lambda t, a, b, out: matmul(a, t)),
    note="d(a @ b) = g @ b.T, a.T @ g",
    arity=2,
    lower="{0} @ {1}",
    bilinear=True,
    keeps_rows=True,
    infix="@",
    precedence=2,
)


def matmul(a, b):
    """Matrix product with numpy's ``@`` semantics (1-D operands are vectors)."""
    a, b = as_expr(a), as_expr(b)
    dtype = float_of(promote(a.dtype, b.dtype))
    if a.dtype != dtype:
        a = ew.cast(a, dtype)
    if b.dtype != dtype:
        b = ew.cast(b, dtype)
    if a.ndim == 1 and b.ndim >= 3:
        return reshape(matmul(expand_dims(a, 0), b), b.shape[:-2] + b.shape[-1:])
    if b.ndim == 1 and a.ndim >= 3:
        return reshape(matmul(a, expand_dims(b, 1)), a.shape[:-1])
    return make("matmul", [a, b])


def dot(a, b):
    """numpy's ``dot`` for scalars, vectors and matrices."""
    a, b = as_expr(a), as_expr(b)
    if a.ndim == 0 or b.ndim == 0:
        return ew.mul(a, b)
    if a.ndim <= 2 and b.ndim <= 2:
        return matmul(a, b)
    raise UnsupportedError(
        f"dot of shapes {shape_str(a.shape)} and {shape_str(b.shape)}: use matmul for batches"
    )


def outer(a, b):
    """Outer product of two vectors (flattened first, as numpy does)."""
    a, b = as_expr(a), as_expr(b)
    if a.ndim != 1:
        a = reshape(a, (-1,))
    if b.ndim != 1:
        b = reshape(b, (-1,))
    return ew.mul(expand_dims(a, 1), expand_dims(b, 0))
