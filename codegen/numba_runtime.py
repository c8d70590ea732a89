"""Machine-code helpers the numba backend's generated code calls.

Elementwise composites are numba ufuncs (they work on scalars and arrays);
reductions numba's numpy does not offer along an axis work on a C-contiguous
(rows, reduced) matrix that the generated code lays out.
"""

import math

import numba
import numpy as np

# a ufunc call takes the first loop its argument casts to safely: list float32 first,
# or float32 arrays would be computed and returned as float64
_SIGS = ["float32(float32)", "float64(float64)"]
_JIT = dict(cache=True, nogil=True, error_model="numpy")


@numba.vectorize(_SIGS, cache=True)
def sigmoid(x):
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    e = math.exp(x)
    return e / (1 + e)


@numba.vectorize(_SIGS, cache=True)
def softplus(x):
    return max(x, 0) + math.log1p(math.exp(-abs(x)))


@numba.vectorize(_SIGS, cache=True)
def relu(x):
    return x if x > 0 else x * 0


@numba.vectorize(_SIGS, cache=True)
def erf(x):
    return math.erf(x)


@numba.njit(**_JIT)
def item(x):
    for v in x.flat:
        return v
    return x.flat[0]


@numba.njit(**_JIT)
def max_rows(a):
    out = np.empty(a.shape[0], dtype=a.dtype)
    for i in range(a.shape[0]):
        if a.shape[1] == 0:
            raise ValueError("max of an empty slice")
        best = a[i, 0]
        for j in range(1, a.shape[1]):
            v = a[i, j]
            if v > best or v != v:
                best = v
                if v != v:
                    break
        out[i] = best
    return out


@numba.njit(**_JIT)
def min_rows(a):
    out = np.empty(a.shape[0], dtype=a.dtype)
    for i in range(a.shape[0]):
        if a.shape[1] == 0:
            raise ValueError("min of an empty slice")
        best = a[i, 0]
        for j in range(1, a.shape[1]):
            v = a[i, j]
            if v < best or v != v:
                best = v
                if v != v:
                    break
        out[i] = best
    return out


@numba.njit(**_JIT)
def prod_rows(a):
    out = np.ones(a.shape[0], dtype=a.dtype)
    for i in range(a.shape[0]):
        p = out[i]
        for j in range(a.shape[1]):
            p *= a[i, j]
        out[i] = p
    return out


@numba.njit(**_JIT)
def first_max_rows(a):
    out = np.zeros(a.shape, dtype=a.dtype)
    for i in range(a.shape[0]):
        if a.shape[1]:
            out[i, np.argmax(a[i])] = 1
    return out


@numba.njit(**_JIT)
def first_min_rows(a):
    out = np.zeros(a.shape, dtype=a.dtype)
    for i in range(a.shape[0]):
        if a.shape[1]:
            out[i, np.argmin(a[i])] = 1
    return out


@numba.njit(**_JIT)
def prod_others_rows(a):
    out = np.empty(a.shape, dtype=a.dtype)
    for i in range(a.shape[0]):
        p = 1.0
        for j in range(a.shape[1]):
            out[i, j] = p
            p *= a[i, j]
        p = 1.0
        for j in range(a.shape[1] - 1, -1, -1):
            out[i, j] *= p
            p *= a[i, j]
    return out


@numba.njit(**_JIT)
def bmm(a, b):
    """Batched matmul of 3-D operands (the batch of one broadcasts)."""
    batch = max(a.shape[0], b.shape[0])
    out = np.empty((batch, a.shape[1], b.shape[2]), dtype=a.dtype)
    for k in range(batch):
        out[k] = np.ascontiguousarray(a[k if a.shape[0] > 1 else 0]) @ np.ascontiguousarray(b[k if b.shape[0] > 1 else 0])
    return out
