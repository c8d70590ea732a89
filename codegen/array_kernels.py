"""numba kernels of the array ops numba's numpy lacks along an axis: running sums and products
and a stable argsort, each along the last axis of an array of any rank (the op builders move
the axis there). numpy's own functions, axis=-1, compute the same in the numpy backend."""

import numba
import numpy as np

_JIT = dict(cache=True, nogil=True, error_model="numpy")


@numba.njit(**_JIT)
def _rows(x):
    """x as a C-contiguous (rows, last axis) matrix."""
    a = np.ascontiguousarray(x)
    n = a.shape[-1]
    return a.reshape((a.size // n if n else 0, n))


@numba.njit(**_JIT)
def cumsum_last(x):
    rows = _rows(x)
    out = np.empty_like(rows)
    for i in range(rows.shape[0]):
        acc = rows[i, 0]
        out[i, 0] = acc
        for j in range(1, rows.shape[1]):
            acc += rows[i, j]
            out[i, j] = acc
    return out.reshape(x.shape)


@numba.njit(**_JIT)
def cumprod_last(x):
    rows = _rows(x)
    out = np.empty_like(rows)
    for i in range(rows.shape[0]):
        acc = rows[i, 0]
        out[i, 0] = acc
        for j in range(1, rows.shape[1]):
            acc *= rows[i, j]
            out[i, j] = acc
    return out.reshape(x.shape)


@numba.njit(**_JIT)
def argsort_last(x):
    """np.argsort(x, axis=-1, kind="stable"): equal values keep their order, NaN sorts last."""
    rows = _rows(x)
    out = np.empty(rows.shape, dtype=np.int64)
    for i in range(rows.shape[0]):
        out[i] = np.argsort(rows[i], kind="mergesort")
    return out.reshape(x.shape)
