"""Machine-code helpers the numba backend's generated code calls.

Elementwise composites work on scalars and on arrays of any layout; they are
numba overloads, compiled into the kernel that uses them (and cached with it),
so importing this module compiles nothing. Reductions numba's numpy does not
offer along an axis work on a C-contiguous (rows, reduced) matrix that the
generated code lays out.
"""

import math

import numba
import numpy as np
from numba.core import types
from numba.extending import overload

_JIT = dict(cache=True, nogil=True, error_model="numpy")


def _elementwise(scalar, numpy_impl):
    """A function of one float scalar or float array (computed element by element by ``scalar``,
    the result in the argument's dtype), for numba code; in plain Python, ``numpy_impl``."""
    element = numba.njit(nogil=True, error_model="numpy")(scalar)

    def function(x):
        return numpy_impl(x)

    function.__name__ = function.__qualname__ = scalar.__name__
    function.__doc__ = scalar.__doc__

    @overload(function, jit_options=dict(nogil=True, error_model="numpy"))
    def _typed(x):
        if isinstance(x, types.Float):
            if x == types.float32:
                return lambda x: np.float32(element(x))
            return lambda x: np.float64(element(x))
        if isinstance(x, types.Array) and isinstance(x.dtype, types.Float):
            def on_array(x):
                c = np.ascontiguousarray(x)
                out = np.empty(c.shape, dtype=c.dtype)
                flat_in = c.reshape(c.size)
                flat_out = out.reshape(out.size)
                for k in range(flat_in.size):
                    flat_out[k] = element(flat_in[k])
                return out
            return on_array
        return None

    return function


def _sigmoid(x):
    """1 / (1 + exp(-x)), without overflow for large |x|.

    Spelled with ``exp(-|x|)``, as softplus and logaddexp are, so a kernel that needs
    the value and the derivative of one of them computes the exponential once."""
    e = math.exp(-abs(x))
    if x >= 0:
        return 1 / (1 + e)
    return e / (1 + e)


def _softplus(x):
    """log(1 + exp(x)), without overflow."""
    return max(x, 0) + math.log1p(math.exp(-abs(x)))


def _relu(x):
    """max(x, 0); NaN stays NaN."""
    return x if x > 0 else x * 0


def _erf(x):
    """The error function."""
    return math.erf(x)


def _np(fn):
    return lambda x: np.vectorize(fn, otypes=[np.asarray(x).dtype])(x)


sigmoid = _elementwise(_sigmoid, _np(_sigmoid))
softplus = _elementwise(_softplus, _np(_softplus))
relu = _elementwise(_relu, _np(_relu))
erf = _elementwise(_erf, _np(_erf))


def _logaddexp_scalar(a, b):
    """log(exp(a) + exp(b)) = max(a, b) + log1p(exp(-|b - a|)); a tie is a + log(2).

    The exponential comes first, outside the branches, so that a sigmoid of the same
    gap later in the kernel (the derivative) reuses it."""
    d = b - a
    e = math.exp(-abs(d))
    if a == b:
        return a + _LOG2          # also inf + inf
    if d != d:
        return d                  # nan in, nan out
    return (a if d < 0 else b) + math.log1p(e)


_LOG2 = math.log(2.0)
_logaddexp_element = numba.njit(nogil=True, error_model="numpy")(_logaddexp_scalar)


def logaddexp(a, b):
    """log(exp(a) + exp(b)), elementwise; numpy's in plain Python."""
    return np.logaddexp(a, b)


@overload(logaddexp, jit_options=dict(nogil=True, error_model="numpy"))
def _logaddexp_typed(a, b):
    if isinstance(a, types.Float) and isinstance(b, types.Float):
        if a == types.float32 and b == types.float32:
            return lambda a, b: np.float32(_logaddexp_element(a, b))
        return lambda a, b: np.float64(_logaddexp_element(np.float64(a), np.float64(b)))
    return lambda a, b: np.logaddexp(a, b)


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


# Small products of concrete shape: plain loops, no BLAS call (whose fixed cost, about a
# microsecond, is most of the work when the operands have a few elements).


def small_matmul(a, b):
    """a @ b for 2-D and 1-D operands of one float dtype, as loops; numpy's in plain Python."""
    return a @ b


@numba.njit(**_JIT)
def _matvec_loops(a, v):
    out = np.zeros(a.shape[0], dtype=a.dtype)
    for i in range(a.shape[0]):
        acc = out[i]
        for k in range(a.shape[1]):
            acc += a[i, k] * v[k]
        out[i] = acc
    return out


@overload(small_matmul, jit_options=dict(nogil=True, error_model="numpy"))
def _small_matmul_typed(a, b):
    if a.ndim == 2 and b.ndim == 2:
        def mm(a, b):
            out = np.zeros((a.shape[0], b.shape[1]), dtype=a.dtype)
            for i in range(a.shape[0]):
                for j in range(b.shape[1]):
                    acc = out[i, j]
                    for k in range(a.shape[1]):
                        acc += a[i, k] * b[k, j]
                    out[i, j] = acc
            return out
        return mm
    if a.ndim == 2 and b.ndim == 1:
        return lambda a, b: _matvec_loops(a, b)
    if a.ndim == 1 and b.ndim == 2:
        return lambda a, b: _matvec_loops(b.T, a)      # a @ b = b.T @ a, summed in the same order
    return None


# ---------------------------------------------------------------- gathers and their adjoints
# Index values are data, so they are checked here: numba does not bounds-check.


@numba.njit(**_JIT)
def _checked(i, n):
    """``i`` as an index into a length-``n`` axis (negatives count from the end), or IndexError."""
    if i < 0:
        i += n
    if i < 0 or i >= n:
        raise IndexError("an index is out of bounds")
    return i


@numba.njit(**_JIT)
def take_rows(x, idx):
    n = x.shape[0]
    out = np.empty((idx.shape[0], x.shape[1]), dtype=x.dtype)
    for k in range(idx.shape[0]):
        i = _checked(idx[k], n)
        out[k] = x[i]
    return out


@numba.njit(**_JIT)
def scatter_add_rows(g, idx, n):
    out = np.zeros((n, g.shape[1]), dtype=g.dtype)
    for k in range(idx.shape[0]):
        i = _checked(idx[k], n)
        out[i] += g[k]
    return out


@numba.njit(**_JIT)
def take_last(x, idx):
    n = x.shape[1]
    out = np.empty(idx.shape, dtype=x.dtype)
    for r in range(idx.shape[0]):
        for k in range(idx.shape[1]):
            i = _checked(idx[r, k], n)
            out[r, k] = x[r, i]
    return out


@numba.njit(**_JIT)
def scatter_last(g, idx, n):
    out = np.zeros((g.shape[0], n), dtype=g.dtype)
    for r in range(idx.shape[0]):
        for k in range(idx.shape[1]):
            i = _checked(idx[r, k], n)
            out[r, i] += g[r, k]
    return out
