"""Implicit differentiation: the solution of an equation as a differentiable value, as jaxopt's
``custom_root`` / ``implicit_diff`` give it in JAX.

::

    def F(x, k):                                  # the residual: x*(k) solves F(x*, k) = 0
        return x**3 + k[0] * x - k[1]

    x = sg.root(F, np.zeros(3), k)                # on numbers: solved now (SciPy), an array
    loss = lambda k: np.sum((sg.root(F, x0, k) - data) ** 2)
    value, dk = sg.value_and_grad(loss)(k0)       # on traced values: solved when the compiled
                                                  # function runs; dk from the implicit function theorem

- ``sg.root(F, x0, *params)``: x* with ``F(x*, *params) = 0`` (F's output shaped like x);
- ``sg.fixed_point(T, x0, *params)``: x* with ``x* = T(x*, *params)`` (F = T(x) - x);
- ``sg.argmin(f, x0, *params)``: a minimiser of the scalar ``f(x, *params)`` over x, the root of
  its stationarity condition F = ∇_x f (bilevel optimisation).

``params`` are any number of arrays or pytrees of them: the derivative flows to them only (F
must read every traced value it depends on through them, else an ``UnsupportedError``); ``x0``
is the initial guess and gets no derivative.

**What runs where.** F is traced once into a graph (with x and the parameters as symbols). The
solve itself runs in Python, numerically: the residual and its Jacobian ∂F/∂x are compiled from
that graph (numpy backend) and handed to the solver, ``method``: a ``scipy.optimize.root``
method name (root and fixed_point; default ``"hybr"``), a ``scipy.optimize.minimize`` method name
(argmin; default ``"BFGS"``, the gradient given), ``"newton"`` (Newton's iteration on F with the
exact Jacobian, step halving while the residual grows), ``"iterate"`` (fixed_point's default:
x <- T(x)), or a function ``method(fun, x0, jac) -> x`` (or a result with ``.x``) of flat
vectors (for argmin, ``fun`` is the objective and ``jac`` its gradient). ``sg.custom_root(F)``
decorates a solver of your own (jaxopt's spelling).

Called on numbers, ``sg.root`` solves at once and returns an array. Called on symgrad values
(inside ``sg.grad`` / ``sg.value_and_grad`` / ``sg.hessian`` / ``sg.compile`` of a Python
function, or with symbols), it returns an expression whose value the compiled function computes
by calling the solver back from its kernel at every call (op ``host_call``; the numba backend
leaves machine code for the call under ``numba.objmode``). When the solves dominate a call, as
they usually do, ``backend="numpy"`` builds in a fraction of a second and runs as fast.

No derivative ever goes through the solver's iterations: it is the implicit function
theorem's, ``dx*/dθ = -(∂F/∂x)^-1 ∂F/∂θ``, built in the graph language (op ``custom``):
reverse mode solves once with (∂F/∂x)^T per cotangent, forward mode once with ∂F/∂x per
tangent, in the compiled function. Both are ordinary graphs of x*, so second derivatives
(Hessians, gradients of gradients) come from the same rule. ∂F/∂x is formed as a dense
matrix (n forward passes), so the unknown needs a concrete size (at most 2 axes). F is traced
once per function object and argument shapes: define it once, not as a new lambda per call.

**Errors.** After the solve, ``max |F(x*)|`` must be at most ``tol`` (default 1e-8) and
∂F/∂x at x* invertible (condition number below 1e12); else a ``SolverError`` naming the
residual (or the condition number), raised by the call (the kernel's call, for a compiled
function). A compiled function that solves cannot be ``save()``d standalone.
"""

from __future__ import annotations

import functools
import itertools
import re
import threading
import weakref
from typing import Any

import numpy as np

from . import autodiff, pytree
from .api import compile as compile_graph_of
from .errors import ShapeError, SolverError, UnsupportedError
from .graph import Expr, concrete, is_float, shape_str, size_of, topo_order
from .ops import as_expr, custom_call, host_call, reshape, transpose
from .ops.linalg import solve
from .symbol_constructors import tensor
from .transforms import substitute

_count = itertools.count()
_lock = threading.Lock()
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # fn -> {signature: _Implicit}

MAX_CONDITION = 1e12
_SCIPY_USES_JAC = {"hybr", "lm"}
_MINIMIZE_USES_HESS = {"newton-cg", "dogleg", "trust-ncg", "trust-krylov", "trust-exact", "trust-constr"}
_DEFAULT_METHOD = {"root": "hybr", "fixed_point": "iterate", "argmin": "BFGS"}
_DEFAULT_MAXITER = {"newton": 50, "iterate": 1000}


def _fn_name(fn):
    return getattr(fn, "__qualname__", None) or type(fn).__name__


class _Implicit:
    """One implicit function: the residual's graph over placeholder symbols, the solver that
    computes x* from numbers (the ``host_call`` callable, ``key``), and the implicit function
    theorem's derivative rules (the ``custom`` rule: ``vjp_input``, ``jvp_input``)."""

    def __init__(self, kind, fn, x_like, theta_like, tree, method, tol, maxiter, options):
        k = next(_count)
        # fn is not kept: the cache holds this object weakly keyed by fn, so a function that
        # goes away takes its entry with it
        self.kind, self.name = kind, _fn_name(fn)
        self.key = f"{kind}_{k}_{re.sub(r'[^0-9A-Za-z_]', '_', self.name)}"
        self.method, self.tol, self.options = method, float(tol), dict(options or {})
        self.maxiter = maxiter
        self.where = f"sg.{kind}({self.name})"
        shape, dtype = x_like
        if not concrete(shape):
            raise UnsupportedError(
                f"{self.where}: the unknown x0 has shape {shape_str(shape)}, with a symbolic size; the "
                "implicit derivative solves with the matrix ∂F/∂x, which needs a concrete size"
            )
        self.shape, self.dtype, self.n = tuple(shape), dtype, size_of(shape)
        self.x = tensor(f"_{kind}{k}_x", shape, dtype)
        self.theta = [tensor(f"_{kind}{k}_p{i}", s, d) for i, (s, d) in enumerate(theta_like)]
        self.tree = tree
        params = pytree.unflatten(tree, list(self.theta))
        out = fn(self.x, *params)
        self.objective = None
        if kind == "argmin":
            loss = as_expr(out)
            if loss.shape != () or not is_float(loss.dtype):
                raise ShapeError(
                    f"{self.where}: the inner objective must return a float scalar, got shape "
                    f"{shape_str(loss.shape)} and dtype {loss.dtype}"
                )
            self.objective = loss
            residual = autodiff.grad(loss, self.x)
        else:
            residual = as_expr(out, like=self.x)
            if residual.shape != self.x.shape:
                what = "T(x, ...)" if kind == "fixed_point" else "F(x, ...)"
                raise ShapeError(
                    f"{self.where}: {what} has shape {shape_str(residual.shape)}, but x0 has shape "
                    f"{shape_str(self.x.shape)}; the equation needs one residual per unknown"
                )
            if kind == "fixed_point":
                residual = residual - self.x
        own = {id(self.x), *(id(t) for t in self.theta)}
        outside = [n.name for n in topo_order([residual]) if n.op == "symbol" and id(n) not in own]
        if outside:
            raise UnsupportedError(
                f"{self.where}: the function reads the symgrad value(s) {sorted(set(outside))} that are "
                "not among its params; pass them as params (after x0), so the derivative reaches them"
            )
        self.flat = reshape(residual, (self.n,))
        self.jac = reshape(autodiff.jacobian(self.flat, [self.x])[0], (self.n, self.n))
        self.cotangent = tensor(f"_{kind}{k}_w", (self.n,), self.flat.dtype)
        self._pullbacks = {}
        self._numeric = {}

    def __repr__(self):
        # part of the custom node's structural fingerprint: the same text in every process
        return f"<{self.where} {self.key}>"

    # ------------------------------------------------------------ the derivative (custom rule)

    def call_text(self, static, args):
        return f"{self.kind}({self.name}, {', '.join(args)})"

    def _at(self, node):
        """The placeholders' values at ``node`` (the custom node: x* and the parameters)."""
        mapping = {id(self.x): node}
        mapping.update((id(t), a) for t, a in zip(self.theta, node.inputs[: node.attrs["n"]]))
        return mapping

    def vjp_input(self, node, index, g):
        if not is_float(node.inputs[index].dtype):
            return None
        pullback = self._pullbacks.get(index)
        if pullback is None:
            # (∂F/∂θ_index)^T w, w the residual's cotangent placeholder
            pullback = autodiff.vjp(self.flat, [self.theta[index]], self.cotangent)[0]
            self._pullbacks[index] = pullback
        mapping = self._at(node)
        jac = substitute([self.jac], mapping)[0]
        u = solve(transpose(jac), reshape(g, (self.n,)))  # (∂F/∂x)^-T g
        mapping[id(self.cotangent)] = u
        return -substitute([pullback], mapping)[0]

    def jvp_input(self, node, index, t):
        if not is_float(node.inputs[index].dtype):
            return None
        mapping = self._at(node)
        d_residual = autodiff.jvp([self.flat], [self.theta[index]], [t])[0]
        d_residual, jac = substitute([d_residual, self.jac], mapping)
        return reshape(-solve(jac, d_residual), self.shape)  # -(∂F/∂x)^-1 ∂F/∂θ t

    # ------------------------------------------------------------ the solve (host_call callable)

    def _compiled(self, what):
        f = self._numeric.get(what)
        if f is None:
            graph = {"residual": self.flat, "jacobian": self.jac, "objective": self.objective}[what]
            # the plain kernel (numpy backend: a Python function of numpy values): the solver's
            # loop calls it directly, on arguments __call__ has converted once
            kernel = compile_graph_of(graph, inputs=[self.x, *self.theta], backend="numpy").kernel
            f = self._numeric[what] = lambda *args: kernel(*args)[0]
        return f

    def __call__(self, x0, *theta):
        """x* from numbers (what the compiled function calls back)."""
        shape, n = self.shape, self.n
        dtype = np.dtype(self.dtype)
        F, J = self._compiled("residual"), self._compiled("jacobian")
        theta = [_numeric(value, t.dtype) for value, t in zip(theta, self.theta)]

        def residual(v):
            return np.asarray(F(np.asarray(v, dtype=dtype).reshape(shape), *theta), dtype=np.float64)

        def jacobian(v):
            return np.asarray(J(np.asarray(v, dtype=dtype).reshape(shape), *theta), dtype=np.float64)

        start = np.asarray(x0, dtype=np.float64).reshape(n)
        method = self.method
        detail = ""
        with np.errstate(all="ignore"):
            if isinstance(method, _UserSolver):
                found = method.solver(start.reshape(shape), *pytree.unflatten(self.tree, list(theta)))
                x = np.asarray(found, dtype=np.float64).reshape(n)
            elif callable(method):
                if self.kind == "argmin":
                    obj = self._compiled("objective")
                    found = method(
                        lambda v: float(obj(np.asarray(v, dtype=dtype).reshape(shape), *theta)),
                        start,
                        residual,
                    )
                else:
                    found = method(residual, start, jacobian)
                x = np.asarray(getattr(found, "x", found), dtype=np.float64).reshape(n)
            elif method == "newton":
                x, detail = self._newton(residual, jacobian, start)
            elif method == "iterate":
                x, detail = self._iterate(residual, start)
            elif self.kind == "argmin":
                x, detail = self._minimize(residual, jacobian, start, theta)
            else:
                x, detail = self._scipy_root(residual, jacobian, start)
            r = residual(x)
        size = float(np.max(np.abs(r))) if r.size else 0.0
        if not np.isfinite(size) or size > self.tol:
            what = "|∇f(x)|" if self.kind == "argmin" else "|F(x, θ)|"
            raise SolverError(
                f"{self.where}: the solver {_method_name(method)} did not converge: max {what} = "
                f"{size:.3g} at its last iterate, above tol={self.tol:g}" + (f" ({detail})" if detail else "")
            )
        with np.errstate(all="ignore"):
            cond = np.linalg.cond(jacobian(x)) if n else 1.0
        if not np.isfinite(cond) or cond > MAX_CONDITION:
            what = "the Hessian ∇²f" if self.kind == "argmin" else "∂F/∂x"
            raise SolverError(
                f"{self.where}: {what} is singular at the solution (condition number {cond:.3g}): the "
                "solution is not isolated, so the implicit function theorem gives no derivative"
            )
        return x.reshape(shape).astype(dtype)

    def _maxiter(self):
        return self.maxiter if self.maxiter is not None else _DEFAULT_MAXITER[self.method]

    def _newton(self, residual, jacobian, x):
        r = residual(x)
        for it in range(self._maxiter()):
            norm = np.max(np.abs(r)) if r.size else 0.0
            if norm <= self.tol:
                return x, ""
            try:
                step = np.linalg.solve(jacobian(x), r)
            except np.linalg.LinAlgError:
                raise SolverError(
                    f"{self.where}: Newton's iteration met a singular ∂F/∂x at iteration {it} "
                    f"(max |F| = {norm:.3g} there)"
                ) from None
            scale = 1.0
            for _ in range(30):  # halve the step while the residual grows
                trial = x - scale * step
                r_trial = residual(trial)
                if np.all(np.isfinite(r_trial)) and np.max(np.abs(r_trial)) < norm:
                    break
                scale *= 0.5
            x, r = trial, r_trial
        return x, f"{self._maxiter()} Newton iterations"

    def _iterate(self, residual, x):
        for _ in range(self._maxiter()):
            r = residual(x)  # T(x) - x
            if not np.all(np.isfinite(r)) or np.max(np.abs(r), initial=0.0) <= self.tol:
                return x + r if np.all(np.isfinite(r)) else x, ""
            x = x + r
        return x, f"{self._maxiter()} iterations of x <- T(x)"

    def _scipy_root(self, residual, jacobian, x):
        import scipy.optimize

        method = self.method
        jac = jacobian if str(method).lower() in _SCIPY_USES_JAC else None
        options = dict(self.options)
        if self.maxiter is not None:
            options.setdefault("maxfev" if method in ("hybr", "lm") else "maxiter", self.maxiter)
        result = scipy.optimize.root(residual, x, jac=jac, method=method, options=options)
        return np.asarray(result.x, dtype=np.float64).reshape(x.shape), str(result.message)

    def _minimize(self, gradient, hessian, x, theta):
        import scipy.optimize

        obj = self._compiled("objective")
        shape, dtype = self.shape, np.dtype(self.dtype)
        options = dict(self.options)
        if self.maxiter is not None:
            options.setdefault("maxiter", self.maxiter)
        result = scipy.optimize.minimize(
            lambda v: float(obj(np.asarray(v, dtype=dtype).reshape(shape), *theta)),
            x,
            jac=gradient,
            hess=hessian if str(self.method).lower() in _MINIMIZE_USES_HESS else None,
            method=self.method,
            tol=self.tol * 1e-2,
            options=options,
        )
        return np.asarray(result.x, dtype=np.float64).reshape(x.shape), str(result.message)


def _numeric(value, dtype):
    """An argument as the numpy backend's kernel takes it (its entry's conversion): an array of
    the built dtype, a numpy scalar for a scalar (IEEE arithmetic, never a ZeroDivisionError)."""
    value = np.asarray(value, dtype=dtype)
    return np.ascontiguousarray(value) if value.ndim else value[()]


class _UserSolver:
    """The solver a ``custom_root`` decorates: ``solver(x0, *params) -> x`` on numbers."""

    def __init__(self, solver):
        self.solver = solver
        self.__qualname__ = _fn_name(solver)


def _method_name(method):
    return repr(method) if isinstance(method, str) else getattr(method, "__qualname__", None) or repr(method)


def _like(value):
    """(shape, dtype) of a value as the graph holds it (a number or array as its constant)."""
    if isinstance(value, Expr):
        return value.shape, value.dtype
    arr = np.asarray(value)
    if arr.dtype.name in ("float32", "float64", "bool") or arr.dtype.kind in "iu":
        return arr.shape, arr.dtype.name
    constant = as_expr(arr)  # the constant's own rule (float16 -> float64, errors for the rest)
    return constant.shape, constant.dtype


def _signature(kind, x_like, theta_like, tree, method, tol, maxiter, options):
    try:
        key = (kind, x_like, tuple(theta_like), tree, method, float(tol), maxiter)
        key += (tuple(sorted((options or {}).items())),)
        hash(key)
    except TypeError:
        return None
    return key


def _implicit(kind, fn, x0, params, method, tol, maxiter, options):
    where = f"sg.{kind}({_fn_name(fn)})"
    if not callable(fn):
        raise UnsupportedError(f"sg.{kind}: the first argument must be a function, got {type(fn).__name__}")
    method = _DEFAULT_METHOD[kind] if method is None else method
    if not callable(method) and not isinstance(method, (str, _UserSolver)):
        raise UnsupportedError(f"{where}: method must be a name or a function, got {type(method).__name__}")
    if method == "iterate" and kind != "fixed_point":
        raise UnsupportedError(f"{where}: method 'iterate' is fixed_point's; use 'newton' or a SciPy method")
    leaves, tree = pytree.flatten(tuple(params))
    symbolic = isinstance(x0, Expr) or any(isinstance(leaf, Expr) for leaf in leaves)
    x_shape, x_dtype = _like(x0)
    x_dtype = x_dtype if is_float(x_dtype) else "float64"
    if len(x_shape) > 2:
        raise UnsupportedError(f"{where}: x0 has {len(x_shape)} axes; the unknown must have at most 2")
    x_like = (x_shape, x_dtype)
    theta_like = [_like(leaf) for leaf in leaves]
    signature = _signature(kind, x_like, theta_like, tree, method, tol, maxiter, options)
    implicit = None
    with _lock:
        try:
            per_fn = _CACHE.setdefault(fn, {})
        except TypeError:
            per_fn = None
        if per_fn is not None and signature is not None:
            implicit = per_fn.get(signature)
    if implicit is None:
        implicit = _Implicit(kind, fn, x_like, theta_like, tree, method, tol, maxiter, options)
        if per_fn is not None and signature is not None:
            with _lock:
                per_fn[signature] = implicit
    if not symbolic:
        return implicit(x0, *leaves)
    x_expr = as_expr(x0) if isinstance(x0, Expr) else as_expr(np.asarray(x0, dtype=x_dtype))
    x_expr = x_expr if x_expr.dtype == x_dtype else x_expr.astype(x_dtype)
    thetas = [as_expr(leaf) for leaf in leaves]
    out = host_call(implicit, [x_expr, *thetas], x_shape, x_dtype)
    if not any(is_float(t.dtype) for t in thetas):
        return out
    return custom_call(implicit, thetas, out)


def root(F, x0, *params, method=None, tol=1e-8, maxiter=None, options=None) -> Any:
    """x* with ``F(x*, *params) = 0``, differentiable in ``params`` by the implicit function
    theorem (see the module docstring: what runs where, ``method``, errors)."""
    return _implicit("root", F, x0, params, method, tol, maxiter, options)


def fixed_point(T, x0, *params, method=None, tol=1e-8, maxiter=None, options=None) -> Any:
    """x* with ``x* = T(x*, *params)`` (by default found by iterating x <- T(x)), differentiable
    in ``params`` by the implicit function theorem on ``F = T(x) - x``."""
    return _implicit("fixed_point", T, x0, params, method, tol, maxiter, options)


def argmin(f, x0, *params, method=None, tol=1e-8, maxiter=None, options=None) -> Any:
    """A minimiser x* of the scalar ``f(x, *params)`` (by default ``scipy.optimize.minimize``'s
    BFGS with the exact gradient), differentiable in ``params`` through its stationarity
    condition ``∇_x f(x*, params) = 0`` (``tol`` bounds max |∇_x f| at x*)."""
    return _implicit("argmin", f, x0, params, method, tol, maxiter, options)


def custom_root(F, *, tol=1e-8):
    """jaxopt's ``custom_root``: make a solver of your own differentiable by the implicit
    function theorem on its optimality condition ``F(x, *params) = 0``::

        @sg.custom_root(F)
        def solve(x0, *params):          # numbers in, numbers out: any numeric code
            ...
            return x

        x = solve(x0, theta)             # in a traced function: dx/dθ = -(∂F/∂x)^-1 ∂F/∂θ

    The decorated function takes the same arguments; it is ``sg.root(F, x0, *params)`` with
    your solver as the method (called with x0 and the parameters, in their pytree structure,
    as numpy values), its result checked against ``tol`` (max |F|) like SciPy's."""
    if not callable(F):
        raise UnsupportedError(f"sg.custom_root: F must be a function, got {type(F).__name__}")

    def decorate(solver):
        method = _UserSolver(solver)

        @functools.wraps(solver)
        def solved(x0, *params):
            return _implicit("root", F, x0, params, method, tol, None, None)

        return solved

    return decorate


__all__ = ["root", "fixed_point", "argmin", "custom_root"]
