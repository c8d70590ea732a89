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

import builtins
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
from ..ops import arrays, structure
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
    if holds_expr(value):
        return stack_sequence(value)
    return ops.as_expr(value)


def holds_expr(value):
    """Is ``value`` a list or tuple (nested or not) holding a symbolic value?"""
    return isinstance(value, (list, tuple)) and any(isinstance(v, Expr) or holds_expr(v) for v in value)


def stack_sequence(values):
    """A list or tuple holding symbolic values as one array, as ``np.array`` reads it: the
    items (arrays of one shape, or lists of them) stacked along a new first axis; Python
    numbers take the float dtype of the symbolic values."""
    items = [stack_sequence(v) if holds_expr(v) else v for v in values]
    like = next(v for v in items if isinstance(v, Expr))
    return ops.stack([ops.as_expr(operand(v), like=like) for v in items], 0)


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
    }


# scipy.special's functions that are not ufuncs (numpy's protocols never see them): while a
# function is traced, scipy.special.<name> is swapped for scipy_router (frontends/trace.py),
# which sends a call with a symbolic argument here. Each takes scipy's parameters.


def _sp_logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    if return_sign:
        raise UnsupportedError(
            "scipy.special.logsumexp(..., return_sign=True) on a symbolic value is not supported: "
            "the sign is not differentiable; without it a slice whose weighted sum is negative gives nan"
        )
    return ops.logsumexp(_expr(a), axis, keepdims, b=b)


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
    "logsumexp": (_sp_logsumexp, "sg.logsumexp(x, axis, keepdims, b=b)"),
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
    return ops.inner(_expr(a), _expr(b))


def _outer(a, b, out=None):
    _no_out(out, "np.outer")
    return ops.outer(_expr(a), _expr(b))


# contractions and matrix structure (symgrad/ops/contract.py)


def _einsum(*operands, out=None, optimize=False, dtype=None, order="K", casting="safe"):
    # ``optimize`` is accepted and not needed: the contraction order is always chosen
    _no_out(out, "np.einsum")
    if order not in ("K", "C", "A") or casting not in ("safe", "same_kind", "no", "equiv", "unsafe"):
        raise UnsupportedError(f"np.einsum(..., order={order!r}, casting={casting!r}) on a symbolic value")
    if not operands:
        raise UnsupportedError("np.einsum on a symbolic value: no subscripts given")
    first, *rest = operands
    if isinstance(first, str):
        return ops.einsum(first, *[_with_dtype(x, dtype) for x in rest])
    # interleaved: operand, sublist, operand, sublist, ..., and perhaps the output's sublist last
    last = len(operands) - 1 if len(operands) % 2 else None
    return ops.einsum(*[v if i % 2 or i == last else _with_dtype(v, dtype) for i, v in enumerate(operands)])


def _tensordot(a, b, axes=2):
    return ops.tensordot(_expr(a), _expr(b), axes)


def _kron(a, b):
    return ops.kron(_expr(a), _expr(b))


def _cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    return ops.cross(_expr(a), _expr(b), axisa, axisb, axisc, axis)


def _trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    _no_out(out, "np.trace")
    return ops.trace(_with_dtype(a, dtype), offset, axis1, axis2)


def _diagonal(a, offset=0, axis1=0, axis2=1):
    return ops.diagonal(_expr(a), offset, axis1, axis2)


def _diag(v, k=0):
    return ops.diag(_expr(v), k)


def _tril(m, k=0):
    return ops.tril(_expr(m), k)


def _triu(m, k=0):
    return ops.triu(_expr(m), k)


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


def _hstack(tup, dtype=None, casting=None):
    return arrays.hstack(tup if isinstance(tup, Expr) else [_with_dtype(a, dtype) for a in tup])


def _vstack(tup, dtype=None, casting=None):
    return arrays.vstack(tup if isinstance(tup, Expr) else [_with_dtype(a, dtype) for a in tup])


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


def _pinv(a, rcond=None, hermitian=False, *, rtol=None):
    return linalg.pinv(_expr(a), rcond, hermitian, rtol=rtol)


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
    np.einsum: _einsum,
    np.tensordot: _tensordot,
    np.kron: _kron,
    np.cross: _cross,
    np.trace: _trace,
    np.diagonal: _diagonal,
    np.diag: _diag,
    np.tril: _tril,
    np.triu: _triu,
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


# ---------------------------------------------------------------- array functions (ops/arrays.py)
# numpy's signatures over the builders of ops/arrays.py; a parameter they do not take is refused
# by name (issue 20: array functions and Python constructs on traced values).


def _cumsum(a, axis=None, dtype=None, out=None):
    _no_out(out, "np.cumsum")
    return arrays.cumsum(_expr(a), axis, dtype)


def _cumprod(a, axis=None, dtype=None, out=None):
    _no_out(out, "np.cumprod")
    return arrays.cumprod(_expr(a), axis, dtype)


def _sort_options(name, kind, order, stable):
    if order is not None:
        raise UnsupportedError(f"{name}(..., order=...) on a symbolic value: it has no fields")
    if kind not in (None, "stable", "mergesort", "quicksort", "heapsort") or stable is False:
        raise UnsupportedError(f"{name}(..., kind={kind!r}, stable={stable!r}) on a symbolic value")


def _sort(a, axis=-1, kind=None, order=None, *, stable=None):
    _sort_options("np.sort", kind, order, stable)
    return arrays.sort(_expr(a), axis)


def _argsort(a, axis=-1, kind=None, order=None, *, stable=None):
    _sort_options("np.argsort", kind, order, stable)
    return arrays.argsort(_expr(a), axis)


def _pad(array, pad_width, mode="constant", **kwargs):
    extra = set(kwargs) - {"constant_values"}
    if extra or callable(mode):
        what = ", ".join(sorted(extra)) if extra else f"mode={mode!r}"
        raise UnsupportedError(f"np.pad(..., {what}) on a symbolic value is not supported")
    return arrays.pad(_expr(array), pad_width, mode, kwargs.get("constant_values", 0))


def _linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0, *, device=None):
    # num may be a size (x.shape[0]): the count is then known when the compiled function is called
    return arrays.linspace(operand(start), operand(stop), num, endpoint, retstep, dtype, axis)


def _nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    return arrays.nan_to_num(_expr(x), nan, posinf, neginf)


def _append(arr, values, axis=None):
    return arrays.append(_expr(arr), operand(values), axis)


def _select(condlist, choicelist, default=0):
    return arrays.select([_expr(c) for c in condlist], [operand(c) for c in choicelist], operand(default))


def _partition(name, build):
    # a sorted array is one of the partitions numpy may return (its order is unspecified
    # apart from the k-th element and the sides), so the full sort serves
    def partition(a, kth, axis=-1, kind="introselect", order=None):
        if order is not None:
            raise UnsupportedError(f"{name}(..., order=...) on a symbolic value: it has no fields")
        return build(_expr(a), axis)

    return partition


def _take(a, indices, axis=None, out=None, mode="raise"):
    _no_out(out, "np.take")
    if mode != "raise":
        raise UnsupportedError(f"np.take(..., mode={mode!r}) on a symbolic value: only mode='raise'")
    a = _expr(a)
    return ops.take(ops.reshape(a, (-1,)) if axis is None else a, indices, 0 if axis is None else axis)


def _take_along_axis(arr, indices, axis=-1):
    arr = _expr(arr)
    if axis is None:
        return ops.take_along_axis(ops.reshape(arr, (-1,)), ops.reshape(_expr(indices), (-1,)), 0)
    return ops.take_along_axis(arr, indices, axis)


def _stacking(build):
    def stack_them(tup, *args, **kwargs):
        return build(tup if isinstance(tup, Expr) else [_expr(a) for a in tup], *args, **kwargs)

    return stack_them


ARRAY_FUNCTIONS = {
    np.cumsum: _cumsum,
    np.cumprod: _cumprod,
    np.sort: _sort,
    np.argsort: _argsort,
    np.flip: lambda m, axis=None: arrays.flip(_expr(m), axis),
    np.fliplr: lambda m: arrays.fliplr(_expr(m)),
    np.flipud: lambda m: arrays.flipud(_expr(m)),
    np.rot90: lambda m, k=1, axes=(0, 1): arrays.rot90(_expr(m), k, axes),
    np.roll: lambda a, shift, axis=None: arrays.roll(_expr(a), shift, axis),
    np.pad: _pad,
    np.tile: lambda A, reps: arrays.tile(_expr(A), reps),
    np.repeat: lambda a, repeats, axis=None: arrays.repeat(_expr(a), repeats, axis),
    np.split: lambda ary, indices_or_sections, axis=0: arrays.split(_expr(ary), indices_or_sections, axis),
    np.array_split: lambda ary, indices_or_sections, axis=0: arrays.array_split(
        _expr(ary), indices_or_sections, axis
    ),
    np.hsplit: lambda ary, indices_or_sections: arrays.hsplit(_expr(ary), indices_or_sections),
    np.vsplit: lambda ary, indices_or_sections: arrays.vsplit(_expr(ary), indices_or_sections),
    np.dsplit: lambda ary, indices_or_sections: arrays.dsplit(_expr(ary), indices_or_sections),
    np.moveaxis: lambda a, source, destination: arrays.moveaxis(_expr(a), source, destination),
    np.rollaxis: lambda a, axis, start=0: arrays.rollaxis(_expr(a), axis, start),
    np.atleast_1d: lambda *arys: arrays.atleast_1d(*[_expr(a) for a in arys]),
    np.atleast_2d: lambda *arys: arrays.atleast_2d(*[_expr(a) for a in arys]),
    np.atleast_3d: lambda *arys: arrays.atleast_3d(*[_expr(a) for a in arys]),
    np.column_stack: _stacking(arrays.column_stack),
    np.dstack: _stacking(arrays.dstack),
    np.append: _append,
    np.select: _select,
    np.linspace: _linspace,
    np.nan_to_num: _nan_to_num,
    np.real: lambda val: arrays.real(_expr(val)),
    np.imag: lambda val: arrays.imag(_expr(val)),
    np.sinc: lambda x: arrays.sinc(_expr(x)),
    np.partition: _partition("np.partition", arrays.sort),
    np.argpartition: _partition("np.argpartition", arrays.argsort),
    np.take: _take,
    np.take_along_axis: _take_along_axis,
    np.gradient: lambda f, *varargs, axis=None, edge_order=1: arrays.gradient(
        _expr(f), *varargs, axis=axis, edge_order=edge_order
    ),
}
if hasattr(np, "row_stack"):  # deprecated in numpy 2.0
    ARRAY_FUNCTIONS[np.row_stack] = _vstack
FUNCTIONS.update(ARRAY_FUNCTIONS)
UFUNCS.update(
    {
        np.fmax: lambda a, b: arrays.fmax(_expr(a), _expr(b)),
        np.fmin: lambda a, b: arrays.fmin(_expr(a), _expr(b)),
        np.degrees: arrays.degrees,
        np.radians: arrays.radians,
        np.isnan: arrays.isnan,
        np.conjugate: arrays.conjugate,
    }
)


# ---------------------------------------------------------------- Python constructs on traced values
# numpy's dispatch never sees a list of traced values (np.mean([x, y]), np.array([x, y])) nor
# the builtins max/min/sum; while a function is traced, frontends/trace.py swaps these module
# attributes for routers (made here) that build the graph when a traced value is in the call and
# call the original otherwise. Code that bound them before (``from numpy import mean``) is not
# routed.


def _from_library(depth=2):
    """Is the caller (``depth`` frames up) numpy's or scipy's own code? Their conversions of a
    traced value stay refused (with the message of ``Expr.__array__``)."""
    module = sys._getframe(depth).f_globals.get("__name__", "")
    return module.split(".")[0] in ("numpy", "scipy")


def _array_router(name, original):
    def array(obj, *args, **kwargs):
        if (isinstance(obj, Expr) or holds_expr(obj)) and not _from_library():
            dtype = kwargs.pop("dtype", args[0] if args else None)
            ndmin = kwargs.pop("ndmin", 0)
            out = _with_dtype(operand(obj), dtype)
            return ops.reshape(out, (1,) * (ndmin - out.ndim) + out.shape) if ndmin > out.ndim else out
        return original(obj, *args, **kwargs)

    return functools.update_wrapper(array, original)


def _sequence_router(func, original):
    """A numpy function of FUNCTIONS whose first argument is a list holding traced values (or,
    for the joining functions, one traced array standing for the sequence of its rows)."""
    impl = FUNCTIONS[func]
    name = function_name(func)

    def route(*args, **kwargs):
        if args and (holds_expr(args[0]) or (func in _JOINING and isinstance(args[0], Expr))):
            return _call(name, impl, args, kwargs)
        return original(*args, **kwargs)

    return functools.update_wrapper(route, original)


_JOINING = {np.hstack, np.vstack, np.column_stack, np.dstack, np.stack, np.concatenate}


def _builtin_extreme(name, combine, reduce):
    def make(original):
        def extreme(*args, **kwargs):
            items = args[0] if len(args) == 1 else args
            if len(args) == 1 and isinstance(items, Expr):
                if kwargs:
                    raise UnsupportedError(f"{name}(x, {', '.join(kwargs)}=...) of a symbolic value")
                if items.ndim != 1:
                    raise UnsupportedError(
                        f"{name}() of a symbolic value of shape {shape_str(items.shape)}: Python's {name} "
                        f"compares its elements one by one, so it takes a 1-d array (numpy refuses to "
                        f"compare rows too); use np.{name}(x, axis=...)"
                    )
                return reduce(items, 0)
            if len(args) == 1 and not isinstance(items, (list, tuple)):
                items = list(items)  # a generator: read once, then handed on
                args = (items,)
            if any(isinstance(v, Expr) for v in items):
                if kwargs.get("key") is not None:
                    raise UnsupportedError(
                        f"{name}(..., key=...) of symbolic values: the key's result cannot be compared "
                        f"when the graph is built; use np.{name}imum or sg.where"
                    )
                if not items:
                    return original(*args, **kwargs)
                return functools.reduce(combine, items)
            return original(*args, **kwargs)

        return functools.update_wrapper(extreme, original)

    return make


def _builtin_sum(original):
    def total(iterable, /, start=0):
        if isinstance(iterable, Expr):
            if iterable.ndim == 0:
                raise UnsupportedError("sum() of a scalar symbolic value: it is not a sequence")
            out = ops.sum(iterable, 0)
            return out if isinstance(start, (int, float)) and start == 0 else start + out
        return original(iterable, start)

    return functools.update_wrapper(total, original)


class _Concatenator:
    """np.r_ / np.c_ that join traced values (arrays and numbers; no slices or directives)."""

    def __init__(self, original, columns):
        self.__symgrad_original__ = original
        self._columns = columns

    def __getitem__(self, key):
        items = key if isinstance(key, tuple) else (key,)
        if not any(isinstance(v, Expr) or holds_expr(v) for v in items):
            return self.__symgrad_original__[key]
        name = "np.c_" if self._columns else "np.r_"
        for v in items:
            if isinstance(v, (slice, str)):
                raise UnsupportedError(
                    f"{name}[...] with a slice or a string directive next to symbolic values; "
                    "use np.concatenate, np.arange or np.linspace"
                )
        like = next(_expr(v) for v in items if isinstance(v, Expr) or holds_expr(v))
        parts = [ops.as_expr(operand(v), like=like) for v in items]
        if self._columns:
            cols = [ops.reshape(p, (p.shape[0], 1)) if p.ndim == 1 else arrays.atleast_2d(p) for p in parts]
            return ops.concatenate(cols, -1)
        return ops.concatenate([arrays.atleast_1d(p) for p in parts], 0)

    def __len__(self):
        return 0


def trace_patches():
    """(module, name, make_wrapper) for what a trace swaps (see above)."""
    out = [(np, "array", functools.partial(_array_router, "np.array"))]
    out.append((np, "asarray", functools.partial(_array_router, "np.asarray")))
    for func in FUNCTIONS:
        module = np.linalg if getattr(func, "__module__", "") == "numpy.linalg" else np
        name = getattr(func, "__name__", None)
        if name and getattr(module, name, None) is func and not isinstance(func, np.ufunc):
            out.append((module, name, functools.partial(_sequence_router, func)))
    out.append((builtins, "max", _builtin_extreme("max", ops.maximum, ops.max)))
    out.append((builtins, "min", _builtin_extreme("min", ops.minimum, ops.min)))
    out.append((builtins, "sum", _builtin_sum))
    out.append((np, "r_", lambda original: _Concatenator(original, False)))
    out.append((np, "c_", lambda original: _Concatenator(original, True)))
    return out


# ---------------------------------------------------------------- functional updates (x.at[i].set(v))


class IndexUpdates:
    """``x.at[key]``, as in JAX: ``.set(v)``, ``.add(v)``, ``.multiply(v)``, ``.divide(v)``,
    ``.min(v)``, ``.max(v)`` return a new array equal to ``x`` but at ``x[key]``; ``.get()`` is
    ``x[key]``. ``key`` is basic indexing (ints, slices, None, ...), or one integer array along
    one axis (``.add`` accumulates repeated indices; ``.set`` with repeated indices averages)."""

    def __init__(self, x):
        self._x = x

    def __getitem__(self, key):
        return _IndexUpdate(self._x, key)


class _IndexUpdate:
    def __init__(self, x, key):
        self.x, self.key = x, key

    def get(self):
        return self.x[self.key]

    def _value(self, v, region):
        v = ops.as_expr(operand(v), like=self.x)
        v = v if v.dtype == self.x.dtype else ops.cast(v, self.x.dtype)
        return ops.broadcast_to(v, region.shape)

    def _scatter(self, v):
        """(``v`` written into ``x[key]``'s place in zeros of x's shape, the bool mask of that place);
        for an index array, the first is the pair (scatter-added v, how often each place is hit)."""
        x, key = self.x, self.key
        parts = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, (Expr, np.ndarray, list)) for k in parts):
            return self._scatter_indexed(v, parts)
        region = x[key]
        v = self._value(v, region)
        if region is x:
            return v, ops.broadcast_to(ops.constant(True), x.shape)
        where = structure._normalize_key(x, key)
        # the mask is read from the region, so the region's bounds checks stay in the graph
        inside = ops.logical_or(ops.equal(region, region), ops.not_equal(region, region))
        return structure.slice_grad(v, where, x.shape), structure.slice_grad(inside, where, x.shape)

    def _scatter_indexed(self, v, parts):
        x = self.x
        at = [i for i, k in enumerate(parts) if isinstance(k, (Expr, np.ndarray, list))]
        full = slice(None)
        if len(at) != 1 or any(
            not (isinstance(k, slice) and k == full) for i, k in enumerate(parts) if i != at[0]
        ):
            raise UnsupportedError(
                "x.at[...] with this index: only basic indexing (ints, slices) or one integer array "
                "along one axis (x.at[idx], x.at[:, idx]) is supported"
            )
        axis = at[0]
        v = self._value(v, x[parts])
        idx = structure._int_index(parts[axis], "x.at[idx]")
        k = idx.ndim
        # v is shaped like x[idx] (the index dims at ``axis``): index dims first, then the adjoint of
        # the gather (a scatter-add along the first axis), then x's axis back in its place
        order = tuple(range(axis, axis + k)) + tuple(i for i in range(v.ndim) if not axis <= i < axis + k)
        moved = ops.transpose(v, order)
        inverse = tuple(int(i) for i in np.argsort((axis,) + tuple(i for i in range(x.ndim) if i != axis)))
        n = x.shape[axis]
        added = ops.transpose(structure.scatter_add0(moved, idx, n), inverse)
        ones = ops.broadcast_to(ops.constant(1, x.dtype), moved.shape)
        hits = ops.transpose(structure.scatter_add0(ones, idx, n), inverse)
        return (added, hits), ops.greater(hits, 0)

    def set(self, v):
        scattered, mask = self._scatter(v)
        if isinstance(scattered, tuple):  # an index array: repeated indices average
            added, hits = scattered
            return ops.where(mask, added / ops.maximum(hits, 1), self.x)
        return ops.where(mask, scattered, self.x)

    def add(self, v):
        scattered, mask = self._scatter(v)
        return self.x + (scattered[0] if isinstance(scattered, tuple) else scattered)

    def _combine(self, v, combine, outside):
        scattered, mask = self._scatter(v)
        if isinstance(scattered, tuple):
            raise UnsupportedError("x.at[idx] with an index array supports .set, .add and .get only")
        return combine(self.x, ops.where(mask, scattered, outside))

    def multiply(self, v):
        return self._combine(v, ops.mul, 1)

    def divide(self, v):
        return self._combine(v, ops.div, 1)

    def min(self, v):
        return self._combine(v, ops.minimum, np.inf)

    def max(self, v):
        return self._combine(v, ops.maximum, -np.inf)


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
    # real data: its own real part and conjugate, a zero imaginary part
    "real": property(arrays.real),
    "imag": property(arrays.imag),
    "conj": arrays.conjugate,
    "conjugate": arrays.conjugate,
    "cumsum": lambda self, axis=None, dtype=None: arrays.cumsum(self, axis, dtype),
    "cumprod": lambda self, axis=None, dtype=None: arrays.cumprod(self, axis, dtype),
    "argsort": lambda self, axis=-1: arrays.argsort(self, axis),
    "repeat": lambda self, repeats, axis=None: arrays.repeat(self, repeats, axis),
}


def _setitem_refused(self, key, value):
    raise UnsupportedError(
        f"assignment into a symbolic value (x[{key!r:.40}] = ...): expressions cannot change; "
        "write x = x.at[...].set(value) (or .add, .multiply) for a new value with that part replaced"
    )


def _iter(self):
    """``for v in x``: the slices ``x[0], x[1], ...`` when the first axis has a concrete length."""
    refused = _refused_in_library(self, "iterates over its argument")
    if refused is not None:
        raise refused
    if self.ndim == 0:
        raise UnsupportedError("cannot iterate over an expression of shape () (a scalar)")
    n = self.shape[0]
    if not isinstance(n, int):
        raise UnsupportedError(
            f"cannot iterate over an expression of shape {shape_str(self.shape)}: its first dimension "
            f"{n} is symbolic, so the number of steps is unknown when the graph is built; use np.* "
            "functions over the axis, sg.scan for a loop, or a concrete size"
        )
    return (self[i] for i in range(n))


def install():
    Expr.__iter__ = _iter
    Expr.at = property(IndexUpdates)
    Expr.__setitem__ = _setitem_refused
    Expr.__array_ufunc__ = _array_ufunc
    Expr.__array_function__ = _array_function
    Expr.__array__ = _array
    # __float__/__int__/__index__ (graph.Expr) raise an UnsupportedError that is also a
    # TypeError; Expr._op_priority keeps SymPy's operators from calling float() at all.
    for name, value in _METHODS.items():
        if not hasattr(Expr, name):
            setattr(Expr, name, value)


install()
