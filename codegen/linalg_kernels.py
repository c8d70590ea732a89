"""Linear-algebra kernels for the numba backend: the triangular solve and the solve, inverse and
log-determinant through a Cholesky factor.

numba's ``np.linalg`` has solve, inv, det, slogdet, cholesky, eigh, svd and qr (LAPACK through
SciPy), which the ops lower to directly; it has no triangular solve, so
``solve_triangular(a, b, lower, trans, unit)`` is here: scipy.linalg.solve_triangular's meaning
(only the lower or upper triangle of ``a`` is read, without its diagonal when ``unit``;
``trans`` 1 solves with its transpose).
Substitution runs row by row over the right-hand sides (the inner loop is contiguous); with
many right-hand sides it goes by blocks of rows, and the update of a block by the rows already
solved is one matrix product (BLAS), so a solve with n right-hand sides runs at matmul's pace.
"""

import llvmlite.binding as llvm
import numba
import numpy as np
from numba.core import types
from numba.extending import get_cython_function_address

_JIT = dict(cache=True, nogil=True, error_model="numpy")

# rows per block of the blocked substitution (and the fewest right-hand sides that use it)
_BLOCK = 64


@numba.njit(**_JIT)
def _forward_rows(t, x, start, stop, unit):
    """Rows start..stop of x solved in place against lower t (earlier rows' terms already out)."""
    k = x.shape[1]
    for i in range(start, stop):
        for j in range(start, i):
            f = t[i, j]
            for c in range(k):
                x[i, c] -= f * x[j, c]
        if not unit:
            d = t[i, i]
            for c in range(k):
                x[i, c] /= d


@numba.njit(**_JIT)
def _backward_rows(t, x, start, stop, unit):
    """Rows stop-1..start of x solved in place against upper t (later rows' terms already out)."""
    k = x.shape[1]
    for i in range(stop - 1, start - 1, -1):
        for j in range(i + 1, stop):
            f = t[i, j]
            for c in range(k):
                x[i, c] -= f * x[j, c]
        if not unit:
            d = t[i, i]
            for c in range(k):
                x[i, c] /= d


@numba.njit(**_JIT)
def _solve_vector(t, x, lower, unit):
    """x <- T^-1 x in place for one right-hand side: each unknown a dot product with a row of t."""
    n = t.shape[0]
    for step in range(n):
        i = step if lower else n - 1 - step
        s = x[i, 0]
        for j in range(0, i) if lower else range(i + 1, n):
            s -= t[i, j] * x[j, 0]
        x[i, 0] = s if unit else s / t[i, i]


@numba.njit(**_JIT)
def _solve_rows(t, x, lower, unit):
    """x <- T^-1 x in place, T the lower (upper) triangle of C-contiguous t."""
    n = t.shape[0]
    if x.shape[1] == 1:
        _solve_vector(t, x, lower, unit)
        return
    if x.shape[1] < _BLOCK // 4:
        if lower:
            _forward_rows(t, x, 0, n, unit)
        else:
            _backward_rows(t, x, 0, n, unit)
        return
    if lower:
        for start in range(0, n, _BLOCK):
            stop = min(start + _BLOCK, n)
            if start > 0:
                x[start:stop] -= np.ascontiguousarray(t[start:stop, :start]) @ x[:start]
            _forward_rows(t, x, start, stop, unit)
    else:
        top = ((n - 1) // _BLOCK) * _BLOCK if n > 0 else 0
        for start in range(top, -1, -_BLOCK):
            stop = min(start + _BLOCK, n)
            if stop < n:
                x[start:stop] -= np.ascontiguousarray(t[start:stop, stop:]) @ x[stop:]
            _backward_rows(t, x, start, stop, unit)


@numba.njit(**_JIT)
def _solve_transposed_vector(t, x, lower, unit):
    """x <- T^-T x in place for one right-hand side, reading t by rows (no transposed copy)."""
    n = t.shape[0]
    if lower:  # T^T is upper: the last unknown first, then out of the rows above
        for i in range(n - 1, -1, -1):
            if not unit:
                x[i, 0] /= t[i, i]
            v = x[i, 0]
            for j in range(i):
                x[j, 0] -= t[i, j] * v
    else:  # T^T is lower
        for i in range(n):
            if not unit:
                x[i, 0] /= t[i, i]
            v = x[i, 0]
            for j in range(i + 1, n):
                x[j, 0] -= t[i, j] * v


@numba.njit(**_JIT)
def solve_triangular(a, b, lower, trans, unit):
    """x with op(T) x = b, T the lower (upper) triangle of square ``a``, op the transpose when
    ``trans`` is 1, the diagonal taken as ones (not read) when ``unit``; ``b`` a vector or a
    matrix of right-hand sides. A zero on the diagonal gives inf/nan (scipy raises LinAlgError)."""
    n = a.shape[0]
    x = np.ascontiguousarray(b).copy()
    k = x.size // n if n > 0 else 0
    rows = x.reshape((n, k))
    if trans and k == 1:
        _solve_transposed_vector(np.ascontiguousarray(a), rows, lower, unit)
    elif trans:
        _solve_rows(np.ascontiguousarray(a.T), rows, not lower, unit)
    else:
        _solve_rows(np.ascontiguousarray(a), rows, lower, unit)
    return x


# ---------------------------------------------------------------- through a Cholesky factor


def _lapack(name, operands):
    """LAPACK's ``name`` (SciPy's, every operand a pointer) as a function numba calls by symbol:
    the address is bound when this module is imported, so cached machine code stays valid."""
    llvm.add_symbol(f"symgrad_{name}", get_cython_function_address("scipy.linalg.cython_lapack", name))
    return types.ExternalFunction(f"symgrad_{name}", types.void(*([types.voidptr] * operands)))


_dlauum = _lapack("dlauum", 5)


@numba.njit(**_JIT)
def _invert_block(t, x, lo, hi):
    """x[lo:hi, lo:hi] <- the inverse of lower t[lo:hi, lo:hi], row by row (inner loop contiguous)."""
    for i in range(lo, hi):
        d = 1.0 / t[i, i]
        for k in range(lo, i):
            f = t[i, k]
            for j in range(lo, k + 1):
                x[i, j] -= f * x[k, j]
        for j in range(lo, i):
            x[i, j] *= d
        x[i, i] = d


@numba.njit(**_JIT)
def lower_inverse(low):
    """The inverse of lower triangular C-contiguous float64 ``low`` (zeros above the diagonal),
    by blocks of rows: block row I of the inverse is -X_II L_IJ.. X_..J per block column J, two
    matrix products (BLAS) a block; only the diagonal blocks are substituted. n^3 / 3 flops at
    matmul's pace (OpenBLAS's trtri, run for potri, takes several times a Cholesky factorisation
    of the same size)."""
    n = low.shape[0]
    x = np.zeros((n, n), dtype=np.float64)
    for i0 in range(0, n, _BLOCK):
        i1 = min(i0 + _BLOCK, n)
        _invert_block(low, x, i0, i1)
        if i0 == 0:
            continue
        diag = np.ascontiguousarray(x[i0:i1, i0:i1])
        for j0 in range(0, i0, _BLOCK):
            j1 = j0 + _BLOCK
            part = np.ascontiguousarray(low[i0:i1, j0:i0]) @ np.ascontiguousarray(x[j0:i0, j0:j1])
            x[i0:i1, j0:j1] = -(diag @ part)
    return x


@numba.njit(**_JIT)
def cho_solve(a, low, b):
    """x with a x = b from low = cholesky(a) (``a`` itself is not read): two triangular solves."""
    return solve_triangular(low, solve_triangular(low, b, True, 0, False), True, 1, False)


@numba.njit(**_JIT)
def cho_inverse(a, low):
    """a^-1 from low = cholesky(a) (``a`` itself is not read): X = low^-1 (``lower_inverse``),
    then X^T X by LAPACK's lauum (potri's second half: 1/3 n^3 flops each), the other triangle
    mirrored. Row-major X is, to column-major LAPACK, the upper factor U = X^T, and lauum's
    U U^T is X^T X."""
    n = low.shape[0]
    out = lower_inverse(np.ascontiguousarray(low).astype(np.float64))  # (float32 in float64)
    uplo = np.array([85], dtype=np.uint8)  # "U"
    size = np.array([max(n, 1)], dtype=np.int32)
    info = np.zeros(1, dtype=np.int32)
    if n > 0:
        _dlauum(uplo.ctypes, size.ctypes, out.ctypes, size.ctypes, info.ctypes)
    for i in range(n):
        if low[i, i] == 0.0:  # a zero on the factor's diagonal: a singular matrix
            out[:, :] = np.inf
            break
    for i in range(n):
        for j in range(i):
            out[j, i] = out[i, j]
    return out.astype(low.dtype)


@numba.njit(**_JIT)
def cho_logdet(a, low):
    """log det a = 2 sum(log diag low) from low = cholesky(a) (``a`` itself is not read)."""
    s = 0.0
    for i in range(low.shape[0]):
        s += np.log(low[i, i])
    return 2.0 * s
