"""NumPy's dispatch protocols on ``Expr``, so plain numpy code runs on symbolic values.

``np.exp(x)``, ``np.sum(x, axis=1)``, ``A @ x`` with ``A`` an ndarray and ``x`` an
``Expr``: numpy hands the call to ``Expr.__array_ufunc__`` (ufuncs, including
the ones behind ndarray operators) or ``Expr.__array_function__`` (everything
else), and both look the numpy callable up in one table mapping it to the
builder that computes the same thing. A numpy callable that is not in the
tables raises ``UnsupportedError`` naming it; it never falls back to numpy,
which would try to turn the symbolic value into numbers.

The ops' own ufuncs come from the op table (``OpDef.numpy``). Composites with no op of
their own are written once, exactly: ``arcsinh``, ``arccosh``, ``arctanh``, ``hypot``,
``cbrt`` and ``heaviside`` in ``ops/elementwise.py``; ``log2``, ``log10``, ``exp2``,
``logaddexp2``, ``var``, ``std``, ``norm`` here.

Importing this module installs the protocol methods on ``Expr``.
"""

import functools
import inspect
import math
import sys

import numpy as np
import sympy

from .. import ops
from ..errors import UnsupportedError
from ..graph import Expr, dim_product, normalize_axes, shape_str
from ..ops.elementwise import arccosh, arcsinh, arctanh, cbrt, heaviside, hypot
from ..ops import linalg
from ..ops.reduce import count


# ---------------------------------------------------------------- operands


def operand(value):
    """An ufunc/function operand as builders take it: Exprs and Python numbers stay as they are
    (Python numbers are weakly typed), symbolic sizes such as ``x.shape[0]`` become the size
    as a number, and arrays become constants."""
    if isinstance(value, (Expr, bool, int, float)):
        return value
    if isinstance(value, sympy.Expr):
        return size_value(value)
    return ops.as_expr(value)


# A compound size (``n - 1``, ``n*d``) is a SymPy expression, converted by the SymPy bridge; the
# bridge is built on this module (it spells arcsinh, hypot, ... through it), so it installs its
# converter here when it is imported (symgrad's __init__ imports it).
_compound_size = None


def install_compound_size(convert):
    """Let ``convert(dim, dtype)`` build the node of a compound symbolic size."""
    global _compound_size
    _compound_size = convert


def size_value(dim, dtype="float64"):
    """A size expression over symbolic dims (``n``, ``n - 1``, ``n*d``) as a scalar node."""
    if isinstance(dim, (int, np.integer)) or dim.is_Integer:
        return ops.constant(int(dim), dtype)
    if dim.is_Symbol:
        return count([dim], dtype)
    return _compound_size(dim, dtype)


def _expr(value):
    value = operand(value)
    return value if isinstance(value, Expr) else ops.as_expr(value)


# ---------------------------------------------------------------- composites


def log2(x):
    return ops.log(x) / math.log(2)


def log10(x):
    return ops.log(x) / math.log(10)


def exp2(x):
    return ops.pow(2.0, x)


def logaddexp2(a, b):
    ln2 = math.log(2)
    return ops.logaddexp(ops.mul(a, ln2), ops.mul(b, ln2)) / ln2


def rint(x):
    # np.rint of an integer array is float64 (np.round keeps the integer)
    x = _expr(x)
    return ops.round(x if x.dtype in ("float32", "float64") else ops.cast(x, "float64"))


# ---------------------------------------------------------------- ufuncs

UFUNCS = {
    # the ops: every numpy ufunc the op table gives (OpDef.numpy)
    **{
        u: op.builder for op in ops.OPS.values() if op.elementwise for u in op.numpy if not isinstance(u, str)
    },
    # composites
    np.float_power: lambda a, b: ops.pow(ops.cast(_expr(a), "float64"), b),
    np.positive: lambda x: x,
    np.exp2: exp2,
    np.log2: log2,
    np.log10: log10,
    np.cbrt: cbrt,
    np.hypot: hypot,
    np.arcsinh: arcsinh,
    np.arccosh: arccosh,
    np.arctanh: arctanh,
    np.deg2rad: lambda x: ops.mul(x, math.pi / 180),
    np.rad2deg: lambda x: ops.mul(x, 180 / math.pi),
    np.logaddexp2: logaddexp2,
    np.heaviside: heaviside,
    np.rint: rint,
    np.matmul: ops.matmul,
}

# ufunc.reduce(x, axis=0, keepdims=False)
UFUNC_REDUCTIONS = {np.add: ops.sum, np.multiply: ops.prod, np.maximum: ops.max, np.minimum: ops.min}


def _not_nan(y):
    return ops.less_equal(ops.abs(y), np.inf)  # False only for nan


def xlog1py(x, y):
    """x * log1p(y), 0 where x == 0 (unless y is nan), as scipy.special.xlog1py."""
    x, y = _expr(x), _expr(y)
    zero = ops.logical_and(ops.equal(x, 0), _not_nan(y))
    return ops.where(zero, 0.0, x * ops.log1p(ops.where(zero, 0.0, y)))


def _scipy_ufuncs():
    """scipy.special's ufuncs that are ops, when scipy.special is loaded (it is, if one is used)."""
    special = sys.modules.get("scipy.special")
    if special is None:
        return {}
    return {
        # the ops: every "scipy.special.<name>" ufunc the op table gives (OpDef.numpy)
        **{
            getattr(special, u.rpartition(".")[2]): op.builder
            for op in ops.OPS.values()
            if op.elementwise
            for u in op.numpy
            if isinstance(u, str) and u.startswith("scipy.special.")
        },
        # composites
        special.erfc: lambda x: 1.0 - ops.erf(x),
        special.log_expit: lambda x: -ops.softplus(-_expr(x)),
        special.logit: lambda x: ops.log(x) - ops.log1p(-_expr(x)),
        special.xlog1py: xlog1py,
    }


# scipy.special's functions that are not ufuncs (numpy's protocols never see them): while a
# function is traced, scipy.special.<name> is swapped for scipy_router (frontends/trace.py),
# which sends a call with a symbolic argument here. Each takes scipy's parameters.


def _sp_logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    if b is not None:
        raise UnsupportedError(
            "scipy.special.logsumexp(..., b=...) on a symbolic value is not supported; "
            "for b > 0 write sg.logsumexp(a + np.log(b), axis)"
        )
    if return_sign:
        raise UnsupportedError("scipy.special.logsumexp(..., return_sign=True) on a symbolic value")
    return ops.logsumexp(_expr(a), axis, keepdims)


def _sp_softmax(x, axis=None):
    return ops.softmax(_expr(x), axis)


def _sp_log_softmax(x, axis=None):
    return ops.log_softmax(_expr(x), axis)


def _sp_softplus(x, **kwargs):
    if kwargs:
        raise UnsupportedError(f"scipy.special.softplus: {', '.join(kwargs)} on a symbolic value")
    return ops.softplus(_expr(x))


def _sp_polygamma(n, x):
    if isinstance(n, Expr):
        raise UnsupportedError(
            "scipy.special.polygamma(n, x): the order n must be a Python int (it is an attribute of "
            "the op), not a symbolic value"
        )
    return ops.polygamma(n, _expr(x))


SCIPY_FUNCTIONS = {
    "polygamma": (_sp_polygamma, "sg.polygamma(n, x)"),
    "logsumexp": (_sp_logsumexp, "sg.logsumexp(x, axis, keepdims)"),
    "softmax": (_sp_softmax, "sg.softmax(x, axis)"),
    "log_softmax": (_sp_log_softmax, "sg.log_softmax(x, axis)"),
    "softplus": (_sp_softplus, "sg.softplus(x)"),
}


def scipy_router(name, original):
    """scipy.special.<name> that builds the op when an argument is symbolic, else calls scipy."""
    impl = SCIPY_FUNCTIONS[name][0]

    def route(*args, **kwargs):
        if any(isinstance(v, Expr) for v in args) or any(isinstance(v, Expr) for v in kwargs.values()):
            return _call(f"scipy.special.{name}", impl, args, kwargs)
        return original(*args, **kwargs)

    return functools.update_wrapper(route, original)


def library_caller():
    """The scipy.special function (``scipy.special.logsumexp``) whose code is turning a symbolic
    value into numbers, found on the call stack, with how to write it instead; or None."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("scipy.special"):
            name = frame.f_code.co_name
            special = sys.modules.get("scipy.special")
            if special is not None and hasattr(special, name):
                hint = SCIPY_FUNCTIONS.get(name, (None, None))[1]
                return f"scipy.special.{name}", hint
        if module.startswith("scipy.linalg"):
            name = frame.f_code.co_name
            if name in SCIPY_LINALG_FUNCTIONS:
                return f"scipy.linalg.{name}", SCIPY_LINALG_FUNCTIONS[name][1]
        frame = frame.f_back
    return None


def _refused_in_library(expr, what):
    """The UnsupportedError for ``what`` (iterating, np.asarray) done by a scipy.special
    function on a symbolic value, naming it, or None if no such function is on the stack."""
    found = library_caller()
    if found is None:
        return None
    name, hint = found
    message = (
        f"{name} on a symbolic value (shape {shape_str(expr.shape)}): it {what}, so it cannot run on one"
    )
    if hint:
        message += (
            f"; use {hint} (in a function traced by sg.value_and_grad, calling it through the "
            f"module, as {name}(...), also works)"
        )
    return UnsupportedError(message)


def ufunc_name(ufunc):
    special = sys.modules.get("scipy.special")
    if special is not None and getattr(special, ufunc.__name__, None) is ufunc:
        return f"scipy.special.{ufunc.__name__}"
    return f"np.{ufunc.__name__}"


def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    name = ufunc_name(ufunc)
    if kwargs.get("out") is not None:
        raise UnsupportedError(
            f"{name}(..., out=...) on a symbolic value: results cannot be written "
            "into an array; use the returned expression"
        )
    kwargs.pop("out", None)
    if method == "__call__":
        build = UFUNCS.get(ufunc) or _scipy_ufuncs().get(ufunc)
        if build is None:
            raise UnsupportedError(f"{name} is not supported on symbolic values")
        if kwargs:
            raise UnsupportedError(
                f"{name}: the argument{'s' if len(kwargs) > 1 else ''} "
                f"{', '.join(kwargs)} {'are' if len(kwargs) > 1 else 'is'} "
                "not supported on symbolic values"
            )
        return build(*[operand(v) for v in inputs])
    if method == "reduce" and ufunc in UFUNC_REDUCTIONS:
        return _call(f"{name}.reduce", _reduce_signature(UFUNC_REDUCTIONS[ufunc]), inputs, kwargs)
    raise UnsupportedError(f"{name}.{method} is not supported on symbolic values")


def _reduce_signature(reduction):
    def reduce(array, axis=0, dtype=None, keepdims=False):
        return reduction(_with_dtype(array, dtype), axis, keepdims)

    return reduce


# ---------------------------------------------------------------- other numpy functions
# Each implementation takes numpy's parameters (the subset that makes sense here);
# a parameter it does not take is reported as unsupported, by name.


def _with_dtype(a, dtype):
    a = _expr(a)
    return a if dtype is None else ops.cast(a, dtype)


def _no_out(out, name):
    if out is not None:
        raise UnsupportedError(f"{name}(..., out=...) on a symbolic value is not supported")


def _sum(a, axis=None, dtype=None, out=None, keepdims=False):
    _no_out(out, "np.sum")
    return ops.sum(_with_dtype(a, dtype), axis, keepdims)


def _mean(a, axis=None, dtype=None, out=None, keepdims=False):
    _no_out(out, "np.mean")
    return ops.mean(_with_dtype(a, dtype), axis, keepdims)


def _max(a, axis=None, out=None, keepdims=False):
    _no_out(out, "np.max")
    return ops.max(_expr(a), axis, keepdims)


def _min(a, axis=None, out=None, keepdims=False):
    _no_out(out, "np.min")
    return ops.min(_expr(a), axis, keepdims)


def _prod(a, axis=None, dtype=None, out=None, keepdims=False):
    _no_out(out, "np.prod")
    return ops.prod(_with_dtype(a, dtype), axis, keepdims)


def _var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    _no_out(out, "np.var")
    a = _with_dtype(a, dtype)
    mu = ops.mean(a, axis, keepdims=True)
    var = ops.mean(ops.square(a - mu), axis, keepdims)
    if ddof:
        axes = normalize_axes(axis, a.ndim)
        n = count([a.shape[i] for i in axes], var.dtype)
        var = var * (n / (n - ddof))
    return var


def _std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    return ops.sqrt(_var(a, axis, dtype, out, ddof, keepdims))


def _average(a, axis=None, weights=None, returned=False, keepdims=False):
    if returned:
        raise UnsupportedError("np.average(..., returned=True) on a symbolic value")
    if weights is None:
        return ops.mean(_expr(a), axis, keepdims)
    a, w = _expr(a), _expr(weights)
    if w.shape != a.shape:
        raise UnsupportedError(
            f"np.average: weights of shape {shape_str(w.shape)} for values of "
            f"shape {shape_str(a.shape)}; give weights of the values' shape"
        )
    return ops.sum(a * w, axis, keepdims) / ops.sum(w, axis, keepdims)


def _dot(a, b, out=None):
    _no_out(out, "np.dot")
    return ops.dot(_expr(a), _expr(b))


def _inner(a, b):
    a, b = _expr(a), _expr(b)
    if a.ndim > 1 or b.ndim > 1:
        raise UnsupportedError("np.inner of arrays with more than one dimension")
    return ops.dot(a, b)


def _outer(a, b, out=None):
    _no_out(out, "np.outer")
    return ops.outer(_expr(a), _expr(b))


def _transpose(a, axes=None):
    return ops.transpose(_expr(a), axes)


def _swapaxes(a, axis1, axis2):
    a = _expr(a)
    axes = list(range(a.ndim))
    i, j = axes[axis1], axes[axis2]
    axes[i], axes[j] = j, i
    return ops.transpose(a, tuple(axes))


def _reshape(a, shape=None, order="C", *, newshape=None, copy=None):
    if order != "C":
        raise UnsupportedError(f"np.reshape(..., order={order!r}): only C order is supported")
    return ops.reshape(_expr(a), shape if shape is not None else newshape)


def _ravel(a, order="C"):
    return _reshape(a, (-1,), order)


def _concatenate(arrays, axis=0, out=None, dtype=None, casting=None):
    _no_out(out, "np.concatenate")
    arrays = [_with_dtype(a, dtype) for a in arrays]
    if axis is None:
        return ops.concatenate([ops.reshape(a, (-1,)) for a in arrays], 0)
    return ops.concatenate(arrays, axis)


def _stack(arrays, axis=0, out=None, dtype=None, casting=None):
    _no_out(out, "np.stack")
    return ops.stack([_with_dtype(a, dtype) for a in arrays], axis)


def _at_least(a, rank):
    a = _expr(a)
    if a.ndim >= rank:
        return a
    return ops.reshape(a, (1,) * (rank - a.ndim) if a.ndim == 0 or rank == 1 else (1,) + a.shape)


def _hstack(tup, dtype=None, casting=None):
    arrays = [_at_least(_with_dtype(a, dtype), 1) for a in tup]
    return ops.concatenate(arrays, 0 if arrays[0].ndim == 1 else 1)


def _vstack(tup, dtype=None, casting=None):
    return ops.concatenate([_at_least(_with_dtype(a, dtype), 2) for a in tup], 0)


def _where(condition, x=None, y=None):
    if x is None or y is None:
        raise UnsupportedError(
            "np.where(condition) with one argument (the indices where it holds) "
            "on a symbolic value; use np.where(condition, x, y)"
        )
    return ops.where(_expr(condition), operand(x), operand(y))


def _round(a, decimals=0, out=None):
    # numpy's own steps: scale by 10**decimals, round half to even, scale back
    _no_out(out, "np.round")
    a = _expr(a)
    if not isinstance(decimals, (int, np.integer)) or isinstance(decimals, bool):
        raise UnsupportedError(f"np.round(x, decimals={decimals!r}): decimals must be an int")
    decimals = int(decimals)
    if a.dtype not in ("float32", "float64"):
        if decimals >= 0:
            return a
        raise UnsupportedError(f"np.round of an {a.dtype} value with decimals={decimals} is not supported")
    if decimals == 0:
        return ops.round(a)
    if decimals > 0:
        scale = 10.0**decimals
        return ops.round(a * scale) / scale
    scale = 10.0**-decimals
    return ops.round(a / scale) * scale


def _clip(a, a_min=np._NoValue, a_max=np._NoValue, out=None, *, min=np._NoValue, max=np._NoValue):
    _no_out(out, "np.clip")
    lo = a_min if a_min is not np._NoValue else min
    hi = a_max if a_max is not np._NoValue else max
    a = _expr(a)
    if lo is not np._NoValue and lo is not None:
        a = ops.maximum(a, operand(lo))
    if hi is not np._NoValue and hi is not None:
        a = ops.minimum(a, operand(hi))
    return a


def _diff(a, n=1, axis=-1):
    a = _expr(a)
    (axis,) = normalize_axes(axis, a.ndim, where="np.diff")
    for _ in range(n):
        head = tuple(slice(None) if i != axis else slice(1, None) for i in range(a.ndim))
        tail = tuple(slice(None) if i != axis else slice(None, -1) for i in range(a.ndim))
        a = a[head] - a[tail]
    return a


def _norm(x, ord=None, axis=None, keepdims=False):
    return linalg.norm(_expr(x), ord, axis, keepdims)


# np.linalg's and scipy.linalg's decompositions and solves (symgrad/ops/linalg.py), with their
# parameters


def _linalg_cholesky(a, /, *, upper=False):
    return linalg.cholesky(_expr(a), lower=not upper)


def _pinv(a, *args, **kwargs):
    raise UnsupportedError(
        "np.linalg.pinv on a symbolic value is not supported (its rank cut-off has no derivative); "
        "for a matrix of full column rank write np.linalg.solve(A.T @ A, A.T)"
    )


def _sp_solve_triangular(
    a, b, trans=0, lower=False, unit_diagonal=False, overwrite_b=False, check_finite=True
):
    return linalg.solve_triangular(_expr(a), _expr(b), trans, lower, unit_diagonal)


def _sp_cho_factor(a, lower=False, overwrite_a=False, check_finite=True):
    return linalg.cho_factor(_expr(a), lower)


def _sp_cho_solve(c_and_lower, b, overwrite_b=False, check_finite=True):
    c, lower = c_and_lower
    return linalg.cho_solve((_expr(c), lower), _expr(b))


def _sp_cholesky(a, lower=False, overwrite_a=False, check_finite=True):
    return linalg.cholesky(_expr(a), lower=lower)


def _sp_solve(
    a,
    b,
    lower=False,
    overwrite_a=False,
    overwrite_b=False,
    check_finite=True,
    assume_a=None,
    transposed=False,
):
    # every assume_a ('gen', 'sym', 'pos', ...) has one solution; the general solve computes it
    a = _expr(a)
    return linalg.solve(ops.transpose(a) if transposed else a, _expr(b))


def _sp_inv(a, overwrite_a=False, check_finite=True):
    return linalg.inv(_expr(a))


def _sp_det(a, overwrite_a=False, check_finite=True):
    return linalg.det(_expr(a))


def _sp_eigh(
    a,
    b=None,
    *,
    lower=True,
    eigvals_only=False,
    overwrite_a=False,
    overwrite_b=False,
    type=1,
    check_finite=True,
    subset_by_index=None,
    subset_by_value=None,
    driver=None,
):
    if b is not None or subset_by_index is not None or subset_by_value is not None:
        raise UnsupportedError(
            "scipy.linalg.eigh(a, b) (the generalized problem) or a subset of eigenvalues on a symbolic "
            "value is not supported"
        )
    if not lower:
        raise UnsupportedError(
            "scipy.linalg.eigh(..., lower=False) on a symbolic value: only the lower triangle"
        )
    w, v = linalg.eigh(_expr(a))
    return w if eigvals_only else (w, v)


def _sp_svd(
    a, full_matrices=True, compute_uv=True, overwrite_a=False, check_finite=True, lapack_driver="gesdd"
):
    return linalg.svd(_expr(a), full_matrices, compute_uv)


def _sp_qr(a, overwrite_a=False, lwork=None, mode="full", pivoting=False, check_finite=True):
    if pivoting:
        raise UnsupportedError("scipy.linalg.qr(..., pivoting=True) on a symbolic value is not supported")
    a = _expr(a)
    square = a.ndim == 2 and a.shape[0] == a.shape[1]
    if mode == "economic" or (mode in ("full", "r") and square):
        return linalg.qr(a, "r" if mode == "r" else "reduced")
    raise UnsupportedError(
        f"scipy.linalg.qr(..., mode={mode!r}) of shape {shape_str(a.shape)} on a symbolic value: "
        "only mode='economic' (or a square matrix) is supported"
    )


def _sp_norm(a, ord=None, axis=None, keepdims=False, check_finite=True):
    return linalg.norm(_expr(a), ord, axis, keepdims)


# scipy.linalg's functions that build ops (while a function is traced, scipy.linalg.<name> routes
# a symbolic argument here: scipy_linalg_router), each with how to write it outside a trace
SCIPY_LINALG_FUNCTIONS = {
    "solve_triangular": (_sp_solve_triangular, "sg.linalg.solve_triangular(a, b, trans, lower)"),
    "cho_factor": (_sp_cho_factor, "sg.linalg.cho_factor(a, lower)"),
    "cho_solve": (_sp_cho_solve, "sg.linalg.cho_solve((c, lower), b)"),
    "cholesky": (_sp_cholesky, "sg.linalg.cholesky(a, lower)"),
    "solve": (_sp_solve, "sg.linalg.solve(a, b)"),
    "inv": (_sp_inv, "sg.linalg.inv(a)"),
    "det": (_sp_det, "sg.linalg.det(a)"),
    "eigh": (_sp_eigh, "sg.linalg.eigh(a)"),
    "svd": (_sp_svd, "sg.linalg.svd(a, full_matrices=False)"),
    "qr": (_sp_qr, "sg.linalg.qr(a)"),
    "norm": (_sp_norm, "sg.linalg.norm(a, ord, axis)"),
}


def scipy_linalg_router(name, original):
    """scipy.linalg.<name> that builds the ops when an argument is symbolic, else calls scipy."""
    impl = SCIPY_LINALG_FUNCTIONS[name][0]

    def symbolic(value):
        return isinstance(value, Expr) or (
            isinstance(value, tuple) and any(isinstance(v, Expr) for v in value)  # cho_solve's (c, lower)
        )

    def route(*args, **kwargs):
        if any(symbolic(v) for v in args) or any(symbolic(v) for v in kwargs.values()):
            return _call(f"scipy.linalg.{name}", impl, args, kwargs)
        return original(*args, **kwargs)

    return functools.update_wrapper(route, original)


def _full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None, *, device=None):
    a = _expr(a)
    target = a.shape if shape is None else shape
    value = ops.as_expr(operand(fill_value), like=a)
    return ops.broadcast_to(ops.cast(value, dtype or a.dtype), target)


def _zeros_like(a, dtype=None, order="K", subok=True, shape=None, *, device=None):
    return _full_like(a, 0, dtype, shape=shape)


def _ones_like(a, dtype=None, order="K", subok=True, shape=None, *, device=None):
    return _full_like(a, 1, dtype, shape=shape)


def _squeeze(a, axis=None):
    return ops.squeeze(_expr(a), axis)


def _expand_dims(a, axis):
    return ops.expand_dims(_expr(a), axis)


def _broadcast_to(array, shape, subok=False):
    return ops.broadcast_to(_expr(array), shape)


def _copy(a, order="K", subok=False):
    return _expr(a)


def _size(a, axis=None):
    a = _expr(a)
    return dim_product(a.shape) if axis is None else a.shape[axis]


FUNCTIONS = {
    np.sum: _sum,
    np.mean: _mean,
    np.max: _max,
    np.amax: _max,
    np.min: _min,
    np.amin: _min,
    np.prod: _prod,
    np.var: _var,
    np.std: _std,
    np.average: _average,
    np.dot: _dot,
    np.inner: _inner,
    np.outer: _outer,
    np.transpose: _transpose,
    np.swapaxes: _swapaxes,
    np.reshape: _reshape,
    np.ravel: _ravel,
    np.concatenate: _concatenate,
    np.stack: _stack,
    np.hstack: _hstack,
    np.vstack: _vstack,
    np.where: _where,
    np.clip: _clip,
    np.round: _round,
    np.around: _round,
    np.diff: _diff,
    np.linalg.norm: _norm,
    np.linalg.solve: lambda a, b: linalg.solve(_expr(a), _expr(b)),
    np.linalg.inv: lambda a: linalg.inv(_expr(a)),
    np.linalg.det: lambda a: linalg.det(_expr(a)),
    np.linalg.slogdet: lambda a: linalg.slogdet(_expr(a)),
    np.linalg.cholesky: _linalg_cholesky,
    np.linalg.eigh: lambda a, UPLO="L": linalg.eigh(_expr(a), UPLO),
    np.linalg.eigvalsh: lambda a, UPLO="L": linalg.eigvalsh(_expr(a), UPLO),
    np.linalg.svd: lambda a, full_matrices=True, compute_uv=True, hermitian=False: linalg.svd(
        _expr(a), full_matrices, compute_uv, hermitian
    ),
    np.linalg.qr: lambda a, mode="reduced": linalg.qr(_expr(a), mode),
    np.linalg.pinv: _pinv,
    np.expand_dims: _expand_dims,
    np.squeeze: _squeeze,
    np.broadcast_to: _broadcast_to,
    np.copy: _copy,
    np.zeros_like: _zeros_like,
    np.ones_like: _ones_like,
    np.full_like: _full_like,
    np.empty_like: _zeros_like,
    np.shape: lambda a: _expr(a).shape,
    np.ndim: lambda a: _expr(a).ndim,
    np.size: _size,
}


def function_name(func):
    module = getattr(func, "__module__", None) or "numpy"
    if module == "numpy" or module.startswith("numpy."):
        module = "np" + module[len("numpy") :]
    return f"{module}.{getattr(func, '__name__', func)}"


def _call(name, impl, args, kwargs):
    try:
        inspect.signature(impl).bind(*args, **kwargs)
    except TypeError as exc:
        raise UnsupportedError(f"{name} on a symbolic value: {exc}") from None
    return impl(*args, **kwargs)


def _array_function(self, func, types, args, kwargs):
    if not all(issubclass(t, (Expr, np.ndarray)) for t in types):
        return NotImplemented
    impl = FUNCTIONS.get(func)
    name = function_name(func)
    if impl is None:
        raise UnsupportedError(f"{name} is not supported on symbolic values")
    return _call(name, impl, args, kwargs)


def _array(self, dtype=None, copy=None):
    refused = _refused_in_library(self, "converts its argument to a numpy array")
    if refused is not None:
        raise refused
    raise UnsupportedError(
        f"a symbolic value (shape {shape_str(self.shape)}) was turned into a numpy array "
        "(np.asarray, np.array, or numpy reading it element by element); symbolic values have no "
        "numbers yet. Use np.* functions on them directly, np.stack to build an array from "
        "several, and sg.where/np.where instead of branching on them"
    )


# ndarray-like conveniences, added only where symgrad.ops has not defined them
_METHODS = {
    "size": property(lambda self: dim_product(self.shape)),
    "ravel": lambda self: ops.reshape(self, (-1,)),
    "flatten": lambda self: ops.reshape(self, (-1,)),
    "squeeze": lambda self, axis=None: ops.squeeze(self, axis),
    "clip": lambda self, min=None, max=None: _clip(self, min, max),
    "var": lambda self, axis=None, ddof=0, keepdims=False: _var(self, axis, ddof=ddof, keepdims=keepdims),
    "std": lambda self, axis=None, ddof=0, keepdims=False: _std(self, axis, ddof=ddof, keepdims=keepdims),
    "copy": lambda self: self,
    "swapaxes": _swapaxes,
}


def _iter_refused(self):
    refused = _refused_in_library(self, "iterates over its argument")
    if refused is not None:
        raise refused
    return _graph_iter(self)


_graph_iter = Expr.__iter__


def install():
    Expr.__iter__ = _iter_refused
    Expr.__array_ufunc__ = _array_ufunc
    Expr.__array_function__ = _array_function
    Expr.__array__ = _array
    # __float__/__int__/__index__ (graph.Expr) raise an UnsupportedError that is also a
    # TypeError; Expr._op_priority keeps SymPy's operators from calling float() at all.
    for name, value in _METHODS.items():
        if not hasattr(Expr, name):
            setattr(Expr, name, value)


install()
