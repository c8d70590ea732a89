"""Linear algebra: matmul (``@``, vector-matrix and batched), dot, outer; the decompositions and
solves (solve, inv, det, slogdet, cholesky, solve_triangular, cho_factor/cho_solve, eigh, svd, qr,
pinv) and norm.

The matmul backward rule is the seeds' ``dx = dy @ W.T``, ``dW = x.T @ dy``;
the 1-D cases are the same rule with the vector as a row or a column, and a
batch dimension that was broadcast is summed away.
"""

import importlib

import numpy as np

from ..errors import ShapeError, UnsupportedError
from ..graph import (
    broadcast_shapes,
    dim_product,
    dim_str,
    dims_equal,
    float_of,
    normalize_axes,
    promote,
    shape_str,
    topo_order,
)
from .registry import OPS, register, make, as_expr, constant
from . import elementwise as ew
from .reduce import max as max_, min as min_, sum as sum_
from .structure import arange, broadcast_to, expand_dims, reshape, stack, sum_to, transpose


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


def _batch_matmul(node, args, batched):
    """vmap of ``a @ b``: one product when one side is a plain matrix or vector (the batch joins
    the other side's rows), else a stacked (batched) product over batch x per-example stacks."""
    (a, b), (ba, bb) = args, batched
    ra, rb = a.ndim - ba, b.ndim - bb  # one example's ranks
    if ba and not bb and rb <= 2:  # every example's rows against one matrix or vector
        rows = matmul(reshape(a, (dim_product(a.shape[:-1]), a.shape[-1])), b)
        return reshape(rows, a.shape[:-1] + b.shape[1:])
    if bb and not ba and rb == 1 and ra <= 2:  # one matrix times each example's vector
        return matmul(b, _swap_last(a) if ra == 2 else a)
    if bb and not ba and ra <= 2 and b.ndim <= 3:  # a broadcasts over the batch of b
        return matmul(a, b)
    size = (a if ba else b).shape[0]
    if ra == 1:
        a = expand_dims(a, a.ndim - 1)  # (1, n)
    if rb == 1:
        b = expand_dims(b, b.ndim)  # (n, 1)
    stack = broadcast_shapes(a.shape[ba:-2], b.shape[bb:-2], what="matmul batch dimensions")
    full = (size,) + stack
    flat = dim_product(full)
    operands = []
    for x, is_batched in ((a, ba), (b, bb)):
        if is_batched:  # its stack dims line up after the batch axis
            x = reshape(x, x.shape[:1] + (1,) * (len(full) + 2 - x.ndim) + x.shape[1:])
        if x.shape[:-2] != full:
            x = broadcast_to(x, full + x.shape[-2:])
        operands.append(reshape(x, (flat,) + x.shape[-2:]))
    out = matmul(*operands)
    out = reshape(out, full + out.shape[-2:])
    if ra == 1:
        out = reshape(out, out.shape[:-2] + out.shape[-1:])
    if rb == 1:
        out = reshape(out, out.shape[:-1])
    return out


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
    batch=_batch_matmul,
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


# ================================================================ decompositions and solves
# np.linalg's solve, inv, det, slogdet, cholesky, eigh, svd, qr and scipy.linalg's
# solve_triangular, each an op of one 2-D operand (batches over leading dimensions are refused);
# cho_factor, cho_solve and norm are composites. Every rule is written with the ops, so
# derivatives of derivatives work, and the rules solve against the matrix or its factor
# instead of forming an inverse wherever the result is not itself an inverse.
#
# Conventions (as JAX's): cholesky and eigh read one triangle of their operand (numpy's
# lower), so their derivatives are those of the function of the symmetric part (A + A.T)/2:
# the gradient is symmetric and the directional derivative uses the tangent's symmetric part.
# eigh's and svd's vector derivatives hold 1/(w_j - w_i) (1/(s_j^2 - s_i^2)) factors: at
# repeated eigen/singular values they are inf/nan, as JAX's are; functions of the values alone
# (sum(w), logdet, nuclear norm) have finite derivatives there.


def _float(a):
    a = as_expr(a)
    dtype = float_of(a.dtype)
    return a if a.dtype == dtype else ew.cast(a, dtype)


def _per_matrix(fn, what, operands, cores):
    """``fn`` applied to each matrix of a stack, as numpy's linalg functions take ``(..., m, n)``:
    the operands with dimensions before their last ``cores[i]`` (all the same, and of concrete
    size) are taken apart along them, the others are shared, and the results (each part of a
    tuple result) are stacked back in front of their own shapes. Each matrix is then an op of
    its own, with its own derivative rules."""
    leads = [tuple(x.shape[: x.ndim - c]) if x.ndim > c else () for x, c in zip(operands, cores)]
    lead = next(lead for lead in leads if lead)
    shapes = ", ".join(shape_str(x.shape) for x in operands)
    for other in leads:
        if other and (len(other) != len(lead) or not all(dims_equal(p, q) for p, q in zip(other, lead))):
            raise ShapeError(f"{what} of shapes {shapes}: the stacks' leading dimensions differ")
    if not all(isinstance(d, int) for d in lead):
        raise UnsupportedError(
            f"{what} of shape{'s' if len(operands) > 1 else ''} {shapes}: a stack of matrices needs "
            f"leading dimensions of concrete size, not {shape_str(lead)}; apply it to each 2-D matrix"
        )
    if 0 in lead:
        raise UnsupportedError(f"{what} of shape{'s' if len(operands) > 1 else ''} {shapes}: an empty stack")
    results = [
        fn(*[x[index] if leads[k] else x for k, x in enumerate(operands)]) for index in np.ndindex(*lead)
    ]

    def restack(items):
        return reshape(stack(items, axis=0), lead + tuple(items[0].shape))

    if isinstance(results[0], tuple):
        return tuple(restack([r[k] for r in results]) for k in range(len(results[0])))
    return restack(results)


def _stacked(a, *more):
    """Whether the matrix ``a`` (or a right-hand side in ``more``: (operand, core rank)) holds a
    stack of matrices."""
    return as_expr(a).ndim > 2 or any(as_expr(b).ndim > core for b, core in more)


def _matrix(a, what, square=True):
    """Check that ``a`` is one (square) matrix; the error names ``what`` and the shape."""
    if a.ndim < 2:
        raise ShapeError(f"{what} of shape {shape_str(a.shape)}: the operand must be a 2-D matrix")
    if a.ndim > 2:
        raise UnsupportedError(
            f"{what} of shape {shape_str(a.shape)}: batches over leading dimensions are not "
            "supported; apply it to each 2-D matrix"
        )
    if square and not dims_equal(a.shape[0], a.shape[1]):
        raise ShapeError(
            f"{what} of shape {shape_str(a.shape)}: the matrix must be square "
            f"({dim_str(a.shape[0])} != {dim_str(a.shape[1])})"
        )


def _square_infer(what, out):
    """The infer rule of an op of one square matrix; ``out(a)`` is the result's shape."""

    def infer(inputs, attrs):
        (a,) = inputs
        _matrix(a, what)
        return out(a), a.dtype

    return infer


def _solve_infer(what):
    def infer(inputs, attrs):
        a, b = inputs
        _matrix(a, what)
        if b.ndim not in (1, 2):
            raise (ShapeError if b.ndim == 0 else UnsupportedError)(
                f"{what} of shapes {shape_str(a.shape)} and {shape_str(b.shape)}: the right-hand side "
                "must be a vector or a matrix (batches are not supported)"
            )
        if not dims_equal(a.shape[0], b.shape[0]):
            raise ShapeError(
                f"{what} of shapes {shape_str(a.shape)} and {shape_str(b.shape)}: the right-hand "
                f"side has {dim_str(b.shape[0])} rows, the matrix {dim_str(a.shape[0])}"
            )
        return b.shape, promote(a.dtype, b.dtype)

    return infer


def _t(x):
    return x if x.ndim < 2 else _swap_last(x)


def _index_grid(n):
    i = arange(n)
    return expand_dims(i, 1), expand_dims(i, 0)


def eye(n, dtype="float64"):
    """The identity matrix of size ``n`` (an int or a symbolic dimension)."""
    i, j = _index_grid(n)
    return ew.cast(ew.equal(i, j), dtype)


def _tri(x, lower, strict=False):
    """The lower (upper) triangle of square ``x``, zeros elsewhere (the diagonal unless strict)."""
    i, j = _index_grid(x.shape[-1])
    if lower:
        keep = ew.greater(i, j) if strict else ew.greater_equal(i, j)
    else:
        keep = ew.less(i, j) if strict else ew.less_equal(i, j)
    return ew.where(keep, x, 0.0)


def _diagonal(x):
    return sum_(x * eye(x.shape[-1], x.dtype), axis=-1)


def _trace(x):
    return sum_(x * eye(x.shape[-1], x.dtype))


def _sym(x):
    return (x + _t(x)) * 0.5


def _outer_or_matmul(a, b):
    """a b^T for vectors (their outer product) or matrices."""
    return outer(a, b) if a.ndim == 1 else matmul(a, _t(b))


def _inv_t(a):
    """inv(A).T, the derivative of log|det A|. It is the gradient itself, so it is formed: by
    LAPACK's inverse from the LU factors (getri: 4/3 n^3 flops), cheaper than solving against
    the n columns of the identity (getrs: 2 n^3)."""
    return _t(inv(a))


# ---------------------------------------------------------------- solve, inv, det, slogdet


def _solve_vjp_a(g, a, b, out):
    return -_outer_or_matmul(solve(_t(a), g), out)  # -A^-T g x^T


# vmap refuses the factorisations and solves: their kernels take one 2-D matrix (no stacks yet)
_ONE_MATRIX = "its kernel takes one 2-D matrix; a stack of matrices (one per example) is not supported yet"

register(
    "solve",
    _solve_infer("np.linalg.solve"),
    np.linalg.solve,
    (_solve_vjp_a, lambda g, a, b, out: solve(_t(a), g)),
    jvp=(lambda t, a, b, out: -solve(a, matmul(t, out)), lambda t, a, b, out: solve(a, t)),
    note="x = A^-1 b: db = A^-T g, dA = -db x^T",
    arity=2,
    lower="np.linalg.solve({0}, {1})",
    batch=_ONE_MATRIX,
)


def solve(a, b):
    """``np.linalg.solve``: x with ``a @ x = b`` (b a vector or a matrix of right-hand sides; a
    stack (..., n, n) of matrices with a vector, or a stack (..., n, k) of right-hand sides)."""
    a, b = _float(a), _float(b)
    if _stacked(a, (b, 2)):
        return _per_matrix(solve, "np.linalg.solve", [a, b], [2, 1 if b.ndim == 1 else 2])
    dtype = promote(a.dtype, b.dtype)
    return make("solve", [ew.cast(a, dtype), ew.cast(b, dtype)])


register(
    "inv",
    _square_infer("np.linalg.inv", lambda a: a.shape),
    np.linalg.inv,
    lambda g, a, out: -matmul(_t(out), matmul(g, _t(out))),
    jvp=lambda t, a, out: -matmul(out, matmul(t, out)),
    note="d inv(A) = -inv(A) dA inv(A): dA = -inv(A)^T g inv(A)^T",
    arity=1,
    lower="np.linalg.inv({0})",
    batch=_ONE_MATRIX,
)


def inv(a):
    """``np.linalg.inv``. To apply an inverse to a vector or matrix, ``solve`` is cheaper and
    more accurate."""
    if _stacked(a):
        return _per_matrix(inv, "np.linalg.inv", [_float(a)], [2])
    return make("inv", [_float(a)])


register(
    "det",
    _square_infer("np.linalg.det", lambda a: ()),
    np.linalg.det,
    lambda g, a, out: (g * out) * _inv_t(a),
    jvp=lambda t, a, out: out * _trace(solve(a, t)),
    note="d det(A) = det(A) tr(A^-1 dA): dA = g det(A) A^-T",
    arity=1,
    lower="np.linalg.det({0})",
    batch=_ONE_MATRIX,
)


def det(a):
    """``np.linalg.det``. Its gradient det(A) A^-T is not defined where A is singular."""
    if _stacked(a):
        return _per_matrix(det, "np.linalg.det", [_float(a)], [2])
    return make("det", [_float(a)])


def _np_logabsdet(a):
    return np.linalg.slogdet(a)[1]


def _np_detsign(a):
    return np.linalg.slogdet(a)[0]


register(
    "logabsdet",
    _square_infer("np.linalg.slogdet", lambda a: ()),
    _np_logabsdet,
    lambda g, a, out: g * _inv_t(a),
    jvp=lambda t, a, out: _trace(solve(a, t)),
    note="d log|det A| = tr(A^-1 dA): dA = g A^-T",
    arity=1,
    lower="np.linalg.slogdet({0})[1]",
    batch=_ONE_MATRIX,
)
register(
    "detsign",
    _square_infer("np.linalg.slogdet", lambda a: ()),
    _np_detsign,
    note="the sign of det(A): piecewise constant, no derivative",
    arity=1,
    lower="np.linalg.slogdet({0})[0]",
    batch=_ONE_MATRIX,
)


def slogdet(a):
    """``np.linalg.slogdet``: (sign, log|det a|); only the second has a derivative, A^-T."""
    a = _float(a)
    if _stacked(a):
        return _per_matrix(slogdet, "np.linalg.slogdet", [a], [2])
    return make("detsign", [a]), make("logabsdet", [a])


# ---------------------------------------------------------------- triangular solves, cholesky


def _np_solve_triangular(a, b, lower, trans, unit):
    linalg = importlib.import_module("scipy.linalg")
    return linalg.solve_triangular(a, b, trans=trans, lower=lower, unit_diagonal=unit, check_finite=False)


def _tri_solve_vjp_a(g, a, b, out):
    lower, trans, unit = out.attrs["lower"], out.attrs["trans"], out.attrs["unit"]
    gb = solve_triangular(a, g, 1 - trans, lower, unit)
    grad = -(_outer_or_matmul(out, gb) if trans else _outer_or_matmul(gb, out))
    return _tri(grad, lower, strict=unit)  # the other triangle (and a unit diagonal) is not read


def _tri_solve_jvp_a(t, a, b, out):
    lower, trans, unit = out.attrs["lower"], out.attrs["trans"], out.attrs["unit"]
    t = _tri(t, lower, strict=unit)
    return -solve_triangular(a, matmul(_t(t) if trans else t, out), trans, lower, unit)


register(
    "solve_triangular",
    _solve_infer("scipy.linalg.solve_triangular"),
    _np_solve_triangular,
    (
        _tri_solve_vjp_a,
        lambda g, a, b, out: solve_triangular(
            a, g, 1 - out.attrs["trans"], out.attrs["lower"], out.attrs["unit"]
        ),
    ),
    jvp=(
        _tri_solve_jvp_a,
        lambda t, a, b, out: solve_triangular(
            a, t, out.attrs["trans"], out.attrs["lower"], out.attrs["unit"]
        ),
    ),
    note="x = op(T)^-1 b, T a triangle of A: db = op(T)^-T g, dT = -db x^T (transposed if op is)",
    arity=2,
    lower="_rt.solve_triangular({0}, {1}, {lower}, {trans}, {unit})",
    batch=_ONE_MATRIX,
)


def solve_triangular(a, b, trans=0, lower=False, unit_diagonal=False):
    """``scipy.linalg.solve_triangular``: x with ``op(T) @ x = b``, T the lower (``lower=True``)
    or upper triangle of ``a`` (the other is not read; nor the diagonal, taken as ones, with
    ``unit_diagonal``), op the transpose for ``trans`` 1 or "T" (scipy's default ``lower=False``)."""
    a, b = _float(a), _float(b)
    codes = {0: 0, 1: 1, 2: 1, "N": 0, "T": 1, "C": 1}  # (2, "C": the conjugate transpose)
    if isinstance(trans, bool) or trans not in codes:
        raise UnsupportedError(
            f"scipy.linalg.solve_triangular(..., trans={trans!r}): trans must be 0, 1, 2, 'N', 'T' or 'C'"
        )
    dtype = promote(a.dtype, b.dtype)
    if b.op == "solve_triangular" and b.inputs[0] is a and not unit_diagonal and not b.attrs["unit"]:
        # scipy's cho_solve spelled out, L^-T (L^-1 b) or U^-1 (U^-T b), for the factor of a matrix
        pair = (bool(lower), codes[trans], b.attrs["lower"], b.attrs["trans"])
        factored = _factor_of(a, bool(lower)) if pair in ((True, 1, True, 0), (False, 0, False, 1)) else None
        if factored is not None:
            return cho_solve_factor(factored, a if lower else a.inputs[0], b.inputs[1])
    return make(
        "solve_triangular",
        [ew.cast(a, dtype), ew.cast(b, dtype)],
        lower=bool(lower),
        trans=codes[trans],
        unit=bool(unit_diagonal),
    )


_PHI_NOTE = "Phi(X): the lower triangle of X with its diagonal halved"


def _phi(x):
    i, j = _index_grid(x.shape[-1])
    return ew.where(ew.greater(i, j), x, ew.where(ew.equal(i, j), x * 0.5, 0.0))


def _cholesky_vjp(g, a, out):
    # Murray (2016): dA = sym(L^-T Phi(L^T G) L^-1), with triangular solves
    low = out
    m = _phi(matmul(_t(low), g))
    left = solve_triangular(low, m, lower=True, trans=1)  # L^-T M
    return _sym(_t(solve_triangular(low, _t(left), lower=True, trans=1)))  # (L^-T M) L^-1


def _cholesky_jvp(t, a, out):
    # dL = L Phi(L^-1 sym(dA) L^-T)
    low = out
    y = solve_triangular(low, _sym(t), lower=True)  # L^-1 dA
    return matmul(low, _phi(_t(solve_triangular(low, _t(y), lower=True))))


register(
    "cholesky",
    _square_infer("np.linalg.cholesky", lambda a: a.shape),
    np.linalg.cholesky,
    _cholesky_vjp,
    jvp=_cholesky_jvp,
    note="A = L L^T: dA = sym(L^-T Phi(L^T g) L^-1), " + _PHI_NOTE,
    arity=1,
    lower="np.linalg.cholesky({0})",
    batch=_ONE_MATRIX,
)


def cholesky(a, lower=True):
    """The Cholesky factor of a symmetric positive definite ``a``: lower L with a = L L^T
    (numpy's; ``lower=False``: the upper U = L^T with a = U^T U, scipy.linalg's default)."""
    if _stacked(a):
        return _per_matrix(lambda m: cholesky(m, lower), "np.linalg.cholesky", [_float(a)], [2])
    low = make("cholesky", [_float(a)])
    return low if lower else _t(low)


def cho_factor(a, lower=False):
    """``scipy.linalg.cho_factor``: (c, lower). The triangle scipy leaves unspecified is zero here."""
    return cholesky(a, lower=lower), bool(lower)


def cho_solve(c_and_lower, b):
    """``scipy.linalg.cho_solve((c, lower), b)``: x with ``a @ x = b`` from a's Cholesky factor."""
    c, lower = c_and_lower
    c = as_expr(c)
    a = _factor_of(c, lower)
    if a is not None:  # the factor of a: the derivative for a, none through the factor
        return cho_solve_factor(a, c if lower else c.inputs[0], b)
    if lower:
        return solve_triangular(c, solve_triangular(c, b, lower=True), lower=True, trans=1)
    return solve_triangular(c, solve_triangular(c, b, lower=False, trans=1), lower=False)


# ---------------------------------------------------------------- eigh


def _np_eigh_w(a):
    return np.linalg.eigvalsh(a)


def _np_eigh_v(a):
    return np.linalg.eigh(a)[1]


def _eigh_parts(a):
    return make("eigh_w", [a]), make("eigh_v", [a])


def _eigh_f(w):
    """F_ij = 1 / (w_j - w_i) off the diagonal, 0 on it (JAX's; inf at repeated eigenvalues)."""
    one = eye(w.shape[0], w.dtype)
    return 1.0 / (one + expand_dims(w, 0) - expand_dims(w, 1)) - one


def _eigh_w_vjp(g, a, out):
    _, v = _eigh_parts(a)
    return matmul(v * expand_dims(g, 0), _t(v))  # V diag(g) V^T


def _eigh_v_vjp(g, a, out):
    w, v = _eigh_parts(a)
    return _sym(matmul(v, matmul(_eigh_f(w) * matmul(_t(v), g), _t(v))))  # V (F o V^T G) V^T


def _eigh_w_jvp(t, a, out):
    _, v = _eigh_parts(a)
    return sum_(v * matmul(_sym(t), v), axis=0)  # diag(V^T dA V)


def _eigh_v_jvp(t, a, out):
    w, v = _eigh_parts(a)
    return matmul(v, _eigh_f(w) * matmul(_t(v), matmul(_sym(t), v)))


_EIGH = _square_infer("np.linalg.eigh", lambda a: a.shape)
register(
    "eigh_w",
    _square_infer("np.linalg.eigh", lambda a: a.shape[:1]),
    _np_eigh_w,
    _eigh_w_vjp,
    jvp=_eigh_w_jvp,
    note="dw = diag(V^T dA V): dA = V diag(g) V^T",
    arity=1,
    lower="np.linalg.eigvalsh({0})",  # no vectors: cheaper when only the values are needed
    batch=_ONE_MATRIX,
)
register(
    "eigh_v",
    _EIGH,
    _np_eigh_v,
    _eigh_v_vjp,
    jvp=_eigh_v_jvp,
    note="dV = V (F o V^T dA V), F_ij = 1/(w_j - w_i): dA = sym(V (F o V^T G) V^T)",
    arity=1,
    lower="np.linalg.eigh({0})[1]",
    batch=_ONE_MATRIX,
)


def eigh(a, UPLO="L"):
    """``np.linalg.eigh`` of a symmetric ``a``: (w, V), eigenvalues ascending and orthonormal
    eigenvectors (columns). Derivatives as JAX's: of the symmetric part; the vectors' are
    inf/nan at repeated eigenvalues."""
    if UPLO != "L":
        raise UnsupportedError(f"np.linalg.eigh(..., UPLO={UPLO!r}) on a symbolic value: only 'L'")
    if _stacked(a):
        return _per_matrix(eigh, "np.linalg.eigh", [_float(a)], [2])
    return _eigh_parts(_float(a))


def eigvalsh(a, UPLO="L"):
    """``np.linalg.eigvalsh``: the eigenvalues of a symmetric ``a``, ascending."""
    return eigh(a, UPLO)[0]


# ---------------------------------------------------------------- svd


def _svd_k(a, what):
    _matrix(a, what, square=False)
    m, n = a.shape
    if dims_equal(m, n):
        return m
    if isinstance(m, int) and isinstance(n, int):
        return min(m, n)
    raise UnsupportedError(
        f"{what} of shape {shape_str(a.shape)}: the number of singular values min({dim_str(m)}, "
        f"{dim_str(n)}) must be known when the graph is built; give the matrix concrete sizes "
        "(or a square one)"
    )


def _svd_infer(part):
    def infer(inputs, attrs):
        (a,) = inputs
        k = _svd_k(a, "np.linalg.svd")
        m, n = a.shape
        return {"u": (m, k), "s": (k,), "vt": (k, n)}[part], a.dtype

    return infer


def _np_svd(part):
    def impl(a):
        u, s, vt = np.linalg.svd(a, full_matrices=False)
        return {"u": u, "s": s, "vt": vt}[part]

    impl.__name__ = f"svd_{part}"
    return impl


def _svd_parts(a):
    return make("svd_u", [a]), make("svd_s", [a]), make("svd_vt", [a])


def _svd_f(s):
    """F_ij = 1 / (s_j^2 - s_i^2) off the diagonal, 0 on it (JAX's)."""
    one = eye(s.shape[0], s.dtype)
    sj, si = expand_dims(s, 0), expand_dims(s, 1)
    return 1.0 / (one + (sj + si) * (sj - si)) - one


def _svd_s_vjp(g, a, out):
    u, _, vt = _svd_parts(a)
    return matmul(u * expand_dims(g, 0), vt)  # U diag(g) V^T


def _svd_u_vjp(g, a, out):
    u, s, vt = _svd_parts(a)
    j = _svd_f(s) * matmul(_t(u), g)
    inner = matmul((j + _t(j)) * expand_dims(s, 0), vt)  # U (J + J^T) S V^T
    rest = (g - matmul(u, matmul(_t(u), g))) / expand_dims(s, 0)  # (I - U U^T) G S^-1 (m > k)
    return matmul(u, inner) + matmul(rest, vt)


def _svd_vt_vjp(g, a, out):
    u, s, vt = _svd_parts(a)
    k = _svd_f(s) * matmul(vt, _t(g))  # F o (V^T G_V), G_V = g^T
    inner = expand_dims(s, 1) * (k + _t(k))  # S (K + K^T)
    rest = (g - matmul(matmul(g, _t(vt)), vt)) / expand_dims(s, 1)  # S^-1 G_V^T (I - V V^T) (n > k)
    return matmul(u, matmul(inner, vt) + rest)


def _svd_tangents(t, a):
    u, s, vt = _svd_parts(a)
    ds = matmul(_t(u), matmul(t, _t(vt)))  # U^T dA V
    return u, s, vt, ds


def _svd_s_jvp(t, a, out):
    _, _, _, ds = _svd_tangents(t, a)
    return _diagonal(ds)


def _svd_u_jvp(t, a, out):
    u, s, vt, ds = _svd_tangents(t, a)
    dss = ds * expand_dims(s, 0)
    dav = matmul(t, _t(vt))
    return matmul(u, _svd_f(s) * (dss + _t(dss))) + (dav - matmul(u, matmul(_t(u), dav))) / expand_dims(s, 0)


def _svd_vt_jvp(t, a, out):
    u, s, vt, ds = _svd_tangents(t, a)
    sds = expand_dims(s, 1) * ds
    v = _t(vt)
    dahu = matmul(_t(t), u)
    dv = matmul(v, _svd_f(s) * (sds + _t(sds))) + (dahu - matmul(v, matmul(vt, dahu))) / expand_dims(s, 0)
    return _t(dv)


for _part, _vjp, _jvp, _note in (
    ("u", _svd_u_vjp, _svd_u_jvp, "dU = U (F o (dS S + S dS^T)) + (I - U U^T) dA V S^-1, dS = U^T dA V"),
    ("s", _svd_s_vjp, _svd_s_jvp, "ds = diag(U^T dA V): dA = U diag(g) V^T"),
    ("vt", _svd_vt_vjp, _svd_vt_jvp, "dV = V (F o (S dS + dS^T S)) + (I - V V^T) dA^T U S^-1"),
):
    register(
        f"svd_{_part}",
        _svd_infer(_part),
        _np_svd(_part),
        _vjp,
        jvp=_jvp,
        note=_note,
        arity=1,
        lower=f"np.linalg.svd({{0}}, full_matrices=False)[{'u s vt'.split().index(_part)}]",
        batch=_ONE_MATRIX,
    )


def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    """``np.linalg.svd``: (U, s, Vt), the reduced factors (numpy's ``full_matrices=False``; a full
    U or Vt of a non-square matrix is refused). Derivatives as JAX's: U's and Vt's are inf/nan at
    repeated singular values, and at a zero one."""
    a = _float(a)
    if _stacked(a):
        return _per_matrix(lambda m: svd(m, full_matrices, compute_uv, hermitian), "np.linalg.svd", [a], [2])
    k = _svd_k(a, "np.linalg.svd")
    if hermitian:
        raise UnsupportedError("np.linalg.svd(..., hermitian=True) on a symbolic value is not supported")
    if not compute_uv:
        return make("svd_s", [a])
    if full_matrices and not (dims_equal(k, a.shape[0]) and dims_equal(k, a.shape[1])):
        raise UnsupportedError(
            f"np.linalg.svd of shape {shape_str(a.shape)} with full_matrices=True on a symbolic value: "
            "only the reduced factors are supported; pass full_matrices=False"
        )
    return _svd_parts(a)


# ---------------------------------------------------------------- qr


def _qr_infer(part):
    def infer(inputs, attrs):
        (a,) = inputs
        _matrix(a, "np.linalg.qr", square=False)
        m, n = a.shape
        if not dims_equal(m, n) and not (isinstance(m, int) and isinstance(n, int) and m >= n):
            raise UnsupportedError(
                f"np.linalg.qr of shape {shape_str(a.shape)}: only a matrix with at least as many rows "
                "as columns, known when the graph is built, is supported (its R is square)"
            )
        return ((m, n) if part == "q" else (n, n)), a.dtype

    return infer


def _np_qr_q(a):
    return np.linalg.qr(a)[0]


def _np_qr_r(a):
    return np.linalg.qr(a)[1]


def _copyltu(m):
    """The symmetric matrix with m's lower triangle."""
    return _tri(m, True) + _t(_tri(m, True, strict=True))


def _qr_grad(q, r, gq, gr):
    # Walter & Lehmann / Townsend: dA = (gQ + Q copyltu(M)) R^-T, M = R gR^T - gQ^T Q
    m = 0.0
    if gr is not None:
        m = matmul(r, _t(gr))
    if gq is not None:
        m = m - matmul(_t(gq), q)
    b = matmul(q, _copyltu(m))
    if gq is not None:
        b = b + gq
    return _t(solve_triangular(r, _t(b), lower=False))  # B R^-T


def _qr_jvp(t, a, part):
    # JAX's: dQ = Q (dO - Q^T dA R^-1) + dA R^-1, dR = (Q^T dA R^-1 - dO) R, dO skew
    q, r = make("qr_q", [a]), make("qr_r", [a])
    dar = _t(solve_triangular(r, _t(t), lower=False, trans=1))  # dA R^-1
    qdar = matmul(_t(q), dar)
    low = _tri(qdar, True, strict=True)
    do = low - _t(low)
    if part == "q":
        return matmul(q, do - qdar) + dar
    return matmul(qdar - do, r)


register(
    "qr_q",
    _qr_infer("q"),
    _np_qr_q,
    lambda g, a, out: _qr_grad(out, make("qr_r", [a]), g, None),
    jvp=lambda t, a, out: _qr_jvp(t, a, "q"),
    note="A = Q R: dA = (gQ + Q copyltu(-gQ^T Q)) R^-T",
    arity=1,
    lower="np.linalg.qr({0})[0]",
    batch=_ONE_MATRIX,
)
register(
    "qr_r",
    _qr_infer("r"),
    _np_qr_r,
    lambda g, a, out: _qr_grad(make("qr_q", [a]), out, None, g),
    jvp=lambda t, a, out: _qr_jvp(t, a, "r"),
    note="A = Q R: dA = Q copyltu(R gR^T) R^-T",
    arity=1,
    lower="np.linalg.qr({0})[1]",
    batch=_ONE_MATRIX,
)


def qr(a, mode="reduced"):
    """``np.linalg.qr`` (mode 'reduced' or 'r') of an m x n matrix with m >= n: (Q, R)."""
    a = _float(a)
    if _stacked(a):
        return _per_matrix(lambda m: qr(m, mode), "np.linalg.qr", [a], [2])
    if mode not in ("reduced", "r"):
        raise UnsupportedError(
            f"np.linalg.qr(..., mode={mode!r}) on a symbolic value: only 'reduced' and 'r'"
        )
    q, r = make("qr_q", [a]), make("qr_r", [a])
    return r if mode == "r" else (q, r)


# ---------------------------------------------------------------- pinv


def _pinv_infer(inputs, attrs):
    (a,) = inputs
    _matrix(a, "np.linalg.pinv", square=False)
    return (a.shape[1], a.shape[0]), a.dtype


def _np_pinv(a, rcond):
    return np.linalg.pinv(a, rcond=rcond)


def _pinv_vjp(g, a, out):
    # Golub & Pereyra's derivative (JAX's), transposed: with P = A+, Q = I - A P, R = I - P A,
    # dA = -P^T g P^T + Q g^T P P^T + P^T P g^T R
    p, pt, gt = out, _t(out), _t(g)
    q = eye(a.shape[0], a.dtype) - matmul(a, p)
    r = eye(a.shape[1], a.dtype) - matmul(p, a)
    return (
        -matmul(pt, matmul(g, pt))
        + matmul(matmul(q, gt), matmul(p, pt))
        + matmul(matmul(pt, p), matmul(gt, r))
    )


def _pinv_jvp(t, a, out):
    # dP = -P dA P + P P^T dA^T (I - A P) + (I - P A) dA^T P^T P
    p, pt, tt = out, _t(out), _t(t)
    q = eye(a.shape[0], a.dtype) - matmul(a, p)
    r = eye(a.shape[1], a.dtype) - matmul(p, a)
    return (
        -matmul(p, matmul(t, p)) + matmul(matmul(p, pt), matmul(tt, q)) + matmul(r, matmul(tt, matmul(pt, p)))
    )


register(
    "pinv",
    _pinv_infer,
    _np_pinv,
    _pinv_vjp,
    jvp=_pinv_jvp,
    note="P = A+: dP = -P dA P + P P^T dA^T (I - A P) + (I - P A) dA^T P^T P (where the rank is constant)",
    arity=1,
    lower="np.linalg.pinv({0}, {rcond!r})",
    batch=_ONE_MATRIX,
)


def pinv(a, rcond=None, hermitian=False, *, rtol=None):
    """``np.linalg.pinv``: the Moore-Penrose pseudo-inverse (singular values below ``rcond``
    times the largest are taken as zero; numpy's default 1e-15). Its derivative is the one of a
    matrix of constant rank (Golub & Pereyra, as JAX's); where a singular value crosses the
    cut-off the pseudo-inverse jumps and has none."""
    a = _float(a)
    if _stacked(a):
        return _per_matrix(lambda m: pinv(m, rcond, hermitian, rtol=rtol), "np.linalg.pinv", [a], [2])
    if hermitian:
        raise UnsupportedError("np.linalg.pinv(..., hermitian=True) on a symbolic value is not supported")
    if rcond is not None and rtol is not None:
        raise UnsupportedError("np.linalg.pinv: give rcond or rtol, not both")
    cut = rcond if rcond is not None else rtol
    if cut is None:
        cut = 1e-15
    if (
        isinstance(cut, (np.ndarray, list, tuple))
        and np.ndim(cut) > 0
        or not isinstance(cut, (int, float, np.floating, np.integer))
    ):
        raise UnsupportedError(
            f"np.linalg.pinv(..., rcond={cut!r}) on a symbolic value: rcond must be one number"
        )
    return make("pinv", [a], rcond=float(cut))


# ---------------------------------------------------------------- norm


def _vector_norm(x, ord, axis, keepdims):
    if ord is None or ord == 2:
        return ew.sqrt(sum_(ew.square(x), axis, keepdims))
    if isinstance(ord, str):
        raise UnsupportedError(
            f"np.linalg.norm(..., ord={ord!r}) of a vector: invalid norm order for vectors"
        )
    if ord == np.inf:
        return max_(ew.abs(x), axis, keepdims)
    if ord == -np.inf:
        return min_(ew.abs(x), axis, keepdims)
    if ord == 0:
        return sum_(ew.cast(ew.not_equal(x, 0.0), x.dtype), axis, keepdims)  # no derivative
    if ord == 1:
        return sum_(ew.abs(x), axis, keepdims)
    return ew.pow(sum_(ew.pow(ew.abs(x), float(ord)), axis, keepdims), 1.0 / float(ord))


def _matrix_norm(x, ord, axes, keepdims):
    row, col = axes
    if ord in (None, "fro"):
        out = ew.sqrt(sum_(ew.square(x), axes))
    elif ord in ("nuc", 2, -2):
        if x.ndim != 2:
            raise UnsupportedError(
                f"np.linalg.norm(..., ord={ord!r}) of shape {shape_str(x.shape)}: batches are not supported"
            )
        s = svd(x if (row, col) == (0, 1) else _t(x), compute_uv=False)
        out = sum_(s) if ord == "nuc" else (max_(s) if ord == 2 else min_(s))
    elif ord in (1, -1, np.inf, -np.inf):
        summed, over = (row, col) if ord in (1, -1) else (col, row)
        sums = sum_(ew.abs(x), summed, keepdims=True)
        out = (max_ if ord > 0 else min_)(sums, (summed, over))
    else:
        raise UnsupportedError(
            f"np.linalg.norm(..., ord={ord!r}) of a matrix: invalid norm order for matrices"
        )
    if keepdims:
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        out = reshape(out, shape)
    return out


def norm(x, ord=None, axis=None, keepdims=False):
    """``np.linalg.norm``: vector norms (ord None, 2, 1, inf, -inf, 0 (a count: no derivative), or
    any p: sum(|x|^p)^(1/p)) and matrix norms (None/'fro', 'nuc', 2, -2 (by the singular
    values), 1, -1, inf, -inf). |x|' at 0 is 0, as abs's."""
    x = _float(x)
    if axis is None:
        if ord is None:
            return (
                _vector_norm(reshape(x, (-1,)), None, 0, False)
                if not keepdims
                else _vector_norm(x, None, None, True)
            )
        if x.ndim == 1:
            return _vector_norm(x, ord, 0, keepdims)
        if x.ndim == 2:
            return _matrix_norm(x, ord, (0, 1), keepdims)
        raise ShapeError(
            f"np.linalg.norm(..., ord={ord!r}) of shape {shape_str(x.shape)}: give axis for an array "
            "of more than two dimensions"
        )
    axes = normalize_axes(axis, x.ndim, where="np.linalg.norm")
    if isinstance(axis, (tuple, list)) and len(axes) == 2:
        return _matrix_norm(x, ord, tuple(int(a) % x.ndim for a in axis), keepdims)
    if len(axes) != 1:
        raise ShapeError(f"np.linalg.norm(..., axis={axis!r}): give one axis or two")
    return _vector_norm(x, ord, axes[0], keepdims)


# ================================================================ through a Cholesky factor
# (the factor operand has no rule: None)
# cho_solve, cho_inverse and cho_logdet take the matrix A and its factor L = cholesky(A) and
# compute A^-1 b, A^-1 and log det A from L. Their derivatives are written for A (as functions of
# its symmetric part, cholesky's convention) and none goes through L, which is a function of A:
# the gradient of b^T A^-1 b or of log det A is an outer product and A^-1, without cholesky's
# own backward pass (a product and two triangular solves of n x n matrices). They are built when
# the factor is given (scipy's cho_solve of a cholesky, the pair of triangular solves it is
# spelled with) and by ``share_factor`` below, for every solve, inverse and determinant of a
# symmetric matrix whose factor the same function computes.


def _np_cho_solve(a, low, b):
    linalg = importlib.import_module("scipy.linalg")
    return linalg.cho_solve((low, True), b, check_finite=False)


def _np_cho_inverse(a, low):
    lapack = importlib.import_module("scipy.linalg.lapack")
    out, info = lapack.dpotri(np.asarray(low, dtype=np.float64), lower=1)
    out = np.tril(out) + np.tril(out, -1).T
    return out.astype(low.dtype, copy=False)


def _np_cho_logdet(a, low):
    return 2.0 * np.sum(np.log(np.diagonal(low)))


def _factor_infer(what, out):
    def infer(inputs, attrs):
        a, low = inputs[:2]
        _matrix(a, what)
        if len(inputs) == 3:
            return _solve_infer(what)([a, inputs[2]], attrs)
        return out(a), a.dtype

    return infer


def _scalar_factor(x):
    """(s, v) when ``x`` is v * s for a 0-d s (v of x's shape and dtype), else (None, x)."""
    if x.op == "mul" and len(x.inputs) == 2:
        for s, v in (x.inputs[::-1], x.inputs):
            if (
                s.ndim == 0
                and v.dtype == x.dtype
                and v.ndim == x.ndim
                and all(map(dims_equal, v.shape, x.shape))
            ):
                return s, v
    return None, x


def _sym_outer(u, v):
    """sym(u v^T) for vectors: u v^T itself when u is a scalar times v (it is symmetric), else
    the two outer products' mean, each a product of broadcast vectors (no matrix transposed)."""
    s, w = _scalar_factor(u)
    if w is v:
        return outer(v, v) if s is None else outer(v, v) * s
    return (outer(u, v) + outer(v, u)) * 0.5


def _cho_solve_vjp_a(g, a, low, b, out):
    db = cho_solve_factor(a, low, g)  # -sym(A^-1 g x^T)
    return -_sym_outer(db, out) if out.ndim == 1 else -_sym(matmul(db, _t(out)))


register(
    "cho_solve",
    _factor_infer("scipy.linalg.cho_solve", None),
    _np_cho_solve,
    (_cho_solve_vjp_a, None, lambda g, a, low, b, out: cho_solve_factor(a, low, g)),
    jvp=(
        lambda t, a, low, b, out: -cho_solve_factor(a, low, matmul(_sym(t), out)),
        None,
        lambda t, a, low, b, out: cho_solve_factor(a, low, t),
    ),
    note="x = A^-1 b from L = cholesky(A): db = A^-1 g, dA = -sym(db x^T) (none through L)",
    arity=3,
    lower="_rt.cho_solve({0}, {1}, {2})",
    batch=_ONE_MATRIX,
)
register(
    "cho_inverse",
    _factor_infer("np.linalg.inv", lambda a: a.shape),
    _np_cho_inverse,
    (lambda g, a, low, out: -_sym(matmul(out, matmul(g, out))), None),
    jvp=(lambda t, a, low, out: -matmul(out, matmul(_sym(t), out)), None),
    note="A^-1 from L = cholesky(A) (symmetric): dA = -sym(A^-1 g A^-1) (none through L)",
    arity=2,
    lower="_rt.cho_inverse({0}, {1})",
    batch=_ONE_MATRIX,
)
register(
    "cho_logdet",
    _factor_infer("np.linalg.slogdet", lambda a: ()),
    _np_cho_logdet,
    (lambda g, a, low, out: g * make("cho_inverse", [a, low]), None),
    jvp=(lambda t, a, low, out: sum_(make("cho_inverse", [a, low]) * t), None),
    note="log det A = 2 sum log diag L, L = cholesky(A): dA = g A^-1 (none through L)",
    arity=2,
    lower="_rt.cho_logdet({0}, {1})",
    batch=_ONE_MATRIX,
)


def cho_solve_factor(a, low, b):
    """A^-1 b for symmetric positive definite ``a`` given ``low = cholesky(a)``. A scalar factor
    of ``b`` comes out (A^-1 (s v) = s A^-1 v): the solve of a reverse pass whose cotangent is
    the forward's right-hand side scaled (the 0.5 of 0.5 y^T A^-1 y) is the forward's own."""
    s, v = _scalar_factor(as_expr(b))
    if s is not None:
        return cho_solve_factor(a, low, v) * s
    b = _float(b)
    if b.dtype != low.dtype:
        b = ew.cast(b, promote(b.dtype, low.dtype))
    return make("cho_solve", [a, low, b])


def _factor_of(c, lower):
    """A when ``c`` is the factor cholesky(A) (``lower``) or its transpose (upper), else None."""
    if not lower and c.op == "transpose" and c.inputs[0].op == "cholesky":
        c = c.inputs[0]
    elif not lower or c.op != "cholesky":
        return None
    return c.inputs[0]


# ---------------------------------------------------------------- symmetric structure

_SYM, _ANTI = "sym", "anti"
_EVEN = frozenset({"square", "abs", "cos", "cosh"})  # f(-x) = f(x): f of an antisymmetric matrix


def _vector_axis(node):
    """(v, axis) when ``node`` is vector v as a column (axis 1: v[:, None]) or a row (axis 0)."""
    if node.ndim != 2:
        return None
    if node.op == "reshape" and node.inputs[0].ndim == 1:
        ones = [isinstance(d, int) and d == 1 for d in node.shape]
        if ones[1] and not ones[0]:
            return node.inputs[0], 1
        if ones[0] and not ones[1]:
            return node.inputs[0], 0
    if node.op == "getitem" and node.inputs[0].ndim == 1:
        key = node.attrs["key"]
        full = ("s", None, None, None)
        if key == (full, ("n",)):
            return node.inputs[0], 1
        if key == (("n",), full):
            return node.inputs[0], 0
    return None


def _classify(node, kinds):
    """_SYM, _ANTI or None for a square matrix ``node``, its inputs' kinds in ``kinds``."""
    op, ins = node.op, node.inputs
    if op == "cho_inverse":
        return _SYM
    if op == "constant":  # (an identity of concrete size is folded to one)
        value = np.asarray(node.attrs["value"])
        return _SYM if np.array_equal(value, value.T) else None
    if op == "transpose" and node.ndim == 2:
        return kinds.get(id(ins[0]))
    if op == "inv":
        return _SYM if kinds.get(id(ins[0])) == _SYM else None
    if op == "matmul" and len(ins) == 2:
        x, y = ins
        if (y.op == "transpose" and y.inputs[0] is x) or (x.op == "transpose" and x.inputs[0] is y):
            return _SYM  # X X^T, X^T X
        return None
    if op == "cast":
        return kinds.get(id(ins[0]))
    if not OPS[op].elementwise:
        return None
    if len(ins) == 2:
        x, y = ins
        if (y.op == "transpose" and y.inputs[0] is x) or (x.op == "transpose" and x.inputs[0] is y):
            if OPS[op].commutative:
                return _SYM  # X + X^T, X * X^T
        vx, vy = _vector_axis(x), _vector_axis(y)
        if vx and vy and vx[0] is vy[0] and vx[1] != vy[1]:  # f(v_i, v_j)
            if OPS[op].commutative:
                return _SYM
            return _ANTI if op == "sub" else None
    flat = [all(isinstance(d, int) and d == 1 for d in i.shape) for i in ins]
    seen = [kinds.get(id(i)) if not f else "flat" for i, f in zip(ins, flat)]
    if any(k is None for k in seen):
        return None
    if all(k in (_SYM, "flat") for k in seen):
        return _SYM
    anti = sum(k == _ANTI for k in seen)
    if len(ins) == 1:
        return _SYM if op in _EVEN else (_ANTI if op == "neg" else None)
    if op == "pow" and seen[1] == "flat" and ins[1].op == "constant":
        power = float(np.asarray(ins[1].attrs["value"]))
        return _SYM if power.is_integer() and power % 2 == 0 else None
    if op in ("mul", "div") and anti == 2:
        return _SYM
    if op in ("mul", "div") and anti == 1 and _SYM not in seen:
        return _ANTI
    if op in ("add", "sub") and anti == 2:
        return _ANTI
    return None


def is_symmetric(x):
    """Whether the square matrix ``x`` is symmetric by construction (A^T = A for every value of
    its inputs): built from symmetric pieces (the identity, f(v_i, v_j) for a commutative f,
    even functions of v_i - v_j, X X^T, X + X^T, an inverse of one) by elementwise ops."""
    if x.ndim != 2 or not dims_equal(x.shape[0], x.shape[1]):
        return False
    kinds = {}
    for node in topo_order([x]):
        if node.ndim == 2 and dims_equal(node.shape[0], node.shape[1]):
            kind = _classify(node, kinds)
            if kind is not None:
                kinds[id(node)] = kind
    return kinds.get(id(x)) == _SYM


def share_factor(outputs):
    """``outputs`` with each solve, inverse, log-determinant, determinant sign and determinant of a
    symmetric matrix (``is_symmetric``) whose Cholesky factor they also compute taken from that
    factor (one factorisation instead of an LU besides it; an inverse from the factor is half
    the work of LU's). The values are the same: a matrix whose Cholesky factor exists is positive
    definite, or the function fails at the factorisation either way."""
    order = topo_order(list(outputs))
    factors = {id(n.inputs[0]): n for n in order if n.op == "cholesky"}
    if not factors:
        return list(outputs)
    new = {}
    for node in order:
        inputs = [new.get(id(i), i) for i in node.inputs]
        matrix = node.inputs[0] if node.inputs else None
        if matrix is not None and matrix.op == "transpose" and matrix.ndim == 2:
            matrix = matrix.inputs[0]  # (A^T = A for a symmetric A)
        low = factors.get(id(matrix)) if matrix is not None else None
        rebuilt = None
        if low is not None and node.op in ("logabsdet", "detsign", "det", "inv", "solve"):
            a, low = new.get(id(matrix), matrix), new.get(id(low), low)
            if is_symmetric(matrix):
                if node.op == "logabsdet":
                    rebuilt = make("cho_logdet", [a, low])
                elif node.op == "detsign":
                    rebuilt = constant(1.0, node.dtype)
                elif node.op == "det":
                    rebuilt = ew.exp(make("cho_logdet", [a, low]))
                elif node.op == "inv":
                    rebuilt = make("cho_inverse", [a, low])
                else:
                    rebuilt = make("cho_solve", [a, low, inputs[1]])
        elif node.op == "transpose" and node.ndim == 2 and inputs[0].op == "cho_inverse":
            rebuilt = inputs[0]
        if rebuilt is None and any(x is not y for x, y in zip(inputs, node.inputs)):
            rebuilt = make(node.op, inputs, **node.attrs)
        if rebuilt is not None:
            new[id(node)] = rebuilt
    return [new.get(id(o), o) for o in outputs]
