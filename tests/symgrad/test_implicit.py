"""Implicit differentiation (sg.root, sg.fixed_point, sg.argmin; symgrad/implicit.py) and linear
systems through sg.linalg.solve: every derivative against central differences of the whole
solve-then-evaluate pipeline, solved independently with SciPy at θ ± h (or a closed form)."""

import numpy as np
import pytest
import scipy.optimize

import symgrad as sg
from symgrad.ops.callback import run

H = 1e-5


def central(fn, theta, h=H):
    """Central differences of the scalar ``fn`` at ``theta``, one per element."""
    theta = np.asarray(theta, dtype=np.float64)
    out = np.zeros(theta.shape)
    for i in np.ndindex(theta.shape):
        e = np.zeros(theta.shape)
        e[i] = h
        out[i] = (fn(theta + e) - fn(theta - e)) / (2 * h)
    return out


# ---------------------------------------------------------------- sg.root: a cubic per element

X0 = np.zeros(3)
DATA = np.array([0.5, 0.7, 0.9])
WEIGHTS = np.array([1.0, 2.0, 3.0])
K0 = np.array([1.0, 2.0, 0.5])


def cubic(x, k):
    # x_i^3 + k_0 x_i - k_1 - k_2 * i: one real root per element for k_0 > 0, coupled through k
    return x**3 + k[0] * x - k[1] - k[2] * np.arange(3.0)


def cubic_loss(k):
    return np.sum(WEIGHTS * (sg.root(cubic, X0, k) - DATA) ** 2)


def scipy_cubic_loss(k):
    """The pipeline without symgrad: SciPy solves, numpy evaluates."""
    x = scipy.optimize.root(lambda x: x**3 + k[0] * x - k[1] - k[2] * np.arange(3.0), X0, tol=1e-14).x
    return np.sum(WEIGHTS * (x - DATA) ** 2)


@pytest.mark.parametrize("method", ["hybr", "lm", "newton"])
def test_root_gradient_matches_central_differences_of_the_scipy_solve(method):
    vg = sg.value_and_grad(
        lambda k: np.sum(WEIGHTS * (sg.root(cubic, X0, k, method=method) - DATA) ** 2), backend="numpy"
    )
    value, grad = vg(K0)
    np.testing.assert_allclose(value, scipy_cubic_loss(K0), rtol=1e-10)
    np.testing.assert_allclose(grad, central(scipy_cubic_loss, K0), rtol=1e-6, atol=1e-9)
    # the same compiled function at other parameters: the solve runs at every call
    k1 = np.array([2.0, -1.0, 1.5])
    np.testing.assert_allclose(vg(k1)[1], central(scipy_cubic_loss, k1), rtol=1e-6, atol=1e-9)


def test_root_on_numbers_solves_at_once():
    x = sg.root(cubic, X0, K0)
    assert isinstance(x, np.ndarray) and x.shape == (3,)
    np.testing.assert_allclose(x**3 + K0[0] * x - K0[1] - K0[2] * np.arange(3.0), 0, atol=1e-9)


def test_root_forward_mode_matches_central_differences():
    direction = np.array([0.3, -1.0, 0.7])
    _, tangent = sg.jvp(lambda k: sg.root(cubic, X0, k), (K0,), (direction,), backend="numpy")

    def solution(t):
        k = K0 + t * direction
        return scipy.optimize.root(lambda x: x**3 + k[0] * x - k[1] - k[2] * np.arange(3.0), X0, tol=1e-14).x

    np.testing.assert_allclose(tangent, (solution(H) - solution(-H)) / (2 * H), rtol=1e-6)


def test_root_hessian_matches_second_differences_of_the_scipy_solve():
    hessian = sg.hessian(cubic_loss, backend="numpy")(K0)
    h = 1e-3
    expected = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            ei, ej = np.eye(3)[i] * h, np.eye(3)[j] * h
            expected[i, j] = (
                scipy_cubic_loss(K0 + ei + ej)
                - scipy_cubic_loss(K0 + ei - ej)
                - scipy_cubic_loss(K0 - ei + ej)
                + scipy_cubic_loss(K0 - ei - ej)
            ) / (4 * h * h)
    np.testing.assert_allclose(hessian, expected, rtol=1e-5, atol=1e-6)


def test_root_with_pytree_params_and_a_user_solver():
    def F(x, p):
        return np.tanh(p["a"] * x) + x - p["b"]

    def my_solver(fun, x0, jac):
        return scipy.optimize.fsolve(fun, x0, fprime=jac, xtol=1e-13)

    def loss(p):
        return np.sum(sg.root(F, np.zeros(2), p, method=my_solver) ** 2)

    p0 = {"a": np.array([0.5, 2.0]), "b": 1.3}
    grads = sg.grad(loss, backend="numpy")(p0)

    def scipy_loss(a, b):
        x = scipy.optimize.root(lambda x: np.tanh(a * x) + x - b, np.zeros(2), tol=1e-14).x
        return np.sum(x**2)

    np.testing.assert_allclose(grads["a"], central(lambda a: scipy_loss(a, 1.3), p0["a"]), rtol=1e-6)
    np.testing.assert_allclose(grads["b"], central(lambda b: scipy_loss(p0["a"], b), 1.3), rtol=1e-6)


def test_root_whose_guess_comes_from_an_argument_of_symbolic_size():
    # zeros_like(k) has k's symbolic size while tracing: the trace is retried on concrete sizes
    def loss(k):
        return np.sum(sg.root(cubic, np.zeros_like(k), k) ** 2)

    g = sg.grad(loss, backend="numpy")(K0)

    def scipy_loss(k):
        x = scipy.optimize.root(lambda x: x**3 + k[0] * x - k[1] - k[2] * np.arange(3.0), X0, tol=1e-14).x
        return np.sum(x**2)

    np.testing.assert_allclose(g, central(scipy_loss, K0), rtol=1e-6, atol=1e-9)


def test_root_of_a_symbolic_size_unknown_is_refused():
    x0, k = sg.tensor("x0", ("n",)), sg.tensor("k", (3,))
    with pytest.raises(sg.UnsupportedError, match=r"x0 has shape \(n,\), with a symbolic size.*∂F/∂x"):
        sg.root(cubic, x0, k)


def test_numba_backend_runs_the_solver_from_the_kernel_and_refuses_save(tmp_path):
    def F(x, k):
        return x**3 + k * x - 1.0

    vg = sg.value_and_grad(lambda k: sg.root(F, 0.0, k) ** 2)
    value, grad = vg(2.0)

    def scipy_loss(k):
        return scipy.optimize.brentq(lambda x: x**3 + k * x - 1.0, -5, 5, xtol=1e-15) ** 2

    np.testing.assert_allclose(value, scipy_loss(2.0), rtol=1e-10)
    np.testing.assert_allclose(grad, central(scipy_loss, 2.0), rtol=1e-6)
    assert "_rt.host_call_float64_0(" in vg.source
    with pytest.raises(sg.SolverError, match=r"did not converge: max \|F\(x, θ\)\| = nan"):
        vg(np.nan)  # raised in the solver, through the kernel's object-mode call
    with pytest.raises(sg.UnsupportedError, match="cannot save: its kernel calls back into Python"):
        vg.save(tmp_path / "root.py")


# ---------------------------------------------------------------- fixed points and argmin


def test_fixed_point_gradient_matches_central_differences():
    def T(x, a):
        return np.cos(a * x)

    def solution(a):
        return np.array([scipy.optimize.brentq(lambda x: x - np.cos(ai * x), -2, 2, xtol=1e-15) for ai in a])

    a0 = np.array([0.5, 0.9])
    for method in ("iterate", "hybr"):
        g = sg.grad(lambda a: np.sum(sg.fixed_point(T, np.zeros(2), a, method=method) ** 2), backend="numpy")
        np.testing.assert_allclose(g(a0), central(lambda a: np.sum(solution(a) ** 2), a0), rtol=1e-6)


def test_argmin_gradient_matches_the_closed_form_of_ridge_regression():
    rng = np.random.default_rng(0)
    A, b = rng.normal(size=(6, 3)), rng.normal(size=6)

    def inner(x, lam):
        return np.sum((A @ x - b) ** 2) + lam * np.sum(x**2)

    def ridge(lam):
        return np.linalg.solve(A.T @ A + lam * np.eye(3), A.T @ b)

    target = np.array([0.1, -0.2, 0.3])
    for method in ("BFGS", "newton", "trust-exact"):
        vg = sg.value_and_grad(
            lambda lam: np.sum((sg.argmin(inner, np.zeros(3), lam, method=method) - target) ** 2),
            backend="numpy",
        )
        value, grad = vg(0.7)
        np.testing.assert_allclose(value, np.sum((ridge(0.7) - target) ** 2), rtol=1e-8)
        np.testing.assert_allclose(
            grad, central(lambda lam: np.sum((ridge(lam) - target) ** 2), 0.7), rtol=1e-6
        )


def test_argmin_of_a_non_scalar_objective_is_refused():
    with pytest.raises(sg.ShapeError, match=r"inner objective must return a float scalar, got shape \(2,\)"):
        sg.argmin(lambda x, p: x * p, np.zeros(2), sg.tensor("p", (2,)))


# ---------------------------------------------------------------- linear systems A(θ) x = b(θ)


def test_linear_system_gradient_matches_central_differences():
    rng = np.random.default_rng(1)
    A0, A1, b0 = rng.normal(size=(4, 4)) + 4 * np.eye(4), rng.normal(size=(4, 4)), rng.normal(size=4)

    def loss(theta):
        A = A0 + theta[0] * A1 + np.diag(np.exp(theta[1:]))
        x = sg.linalg.solve(A, b0 * theta[0] + np.sin(theta[1:]))
        return np.sum(x**2) + x[0]

    def numpy_loss(theta):
        A = A0 + theta[0] * A1 + np.diag(np.exp(theta[1:]))
        x = np.linalg.solve(A, b0 * theta[0] + np.sin(theta[1:]))
        return np.sum(x**2) + x[0]

    theta0 = np.array([0.8, 0.1, -0.3, 0.5, 0.2])
    value, grad = sg.value_and_grad(loss, backend="numpy")(theta0)
    np.testing.assert_allclose(value, numpy_loss(theta0), rtol=1e-12)
    np.testing.assert_allclose(grad, central(numpy_loss, theta0), rtol=1e-7, atol=1e-10)
    hessian = sg.hessian(loss, backend="numpy")(theta0)
    grad_fn = sg.grad(loss, backend="numpy")
    np.testing.assert_allclose(hessian, central_jacobian(grad_fn, theta0), rtol=1e-6, atol=1e-8)


def central_jacobian(fn, theta, h=H):
    return np.stack([(fn(theta + e) - fn(theta - e)) / (2 * h) for e in np.eye(theta.size) * h], axis=-1)


# ---------------------------------------------------------------- errors


def test_a_solve_that_does_not_converge_names_the_residual():
    def F(x, c):
        return x**2 + c  # no real root for c > 0

    with pytest.raises(
        sg.SolverError, match=r"sg.root\(.*F\): the solver 'hybr' did not converge: max \|F\(x, θ\)\| = "
    ):
        sg.root(F, np.ones(2), np.array([1.0, 2.0]))
    start = np.array([0.7, 1.3])
    f = sg.value_and_grad(lambda c: np.sum(sg.root(F, start, c, method="newton")), backend="numpy")
    np.testing.assert_allclose(f(np.array([-1.0, -4.0]))[0], 3.0)  # the roots 1 and 2
    with pytest.raises(
        sg.SolverError,
        match=r"'newton' did not converge: max \|F\(x, θ\)\| = [0-9.e+-]+ .*above tol=1e-08 \(50 Newton iterations\)",
    ):
        f(np.array([1.0, 2.0]))  # raised by the compiled function's call, where the solve runs


def test_a_fixed_point_iteration_that_diverges_and_an_argmin_that_stops_early():
    with pytest.raises(sg.SolverError, match=r"sg.fixed_point\(.*\): the solver 'iterate' did not converge"):
        sg.fixed_point(lambda x, a: 2 * x + a, np.zeros(2), np.ones(2))
    with pytest.raises(sg.SolverError, match=r"sg.argmin\(.*\): .* did not converge: max \|∇f\(x\)\| = "):
        sg.argmin(lambda x, a: np.sum((x - a) ** 4), np.zeros(2), np.ones(2), maxiter=2)


def test_a_singular_jacobian_at_the_solution_is_an_error():
    def F(x, t):  # rank 1: every x with x_0 + x_1 = t is a root
        return np.stack([x[0] + x[1] - t, 2 * x[0] + 2 * x[1] - 2 * t])

    with pytest.raises(
        sg.SolverError, match=r"∂F/∂x is singular at the solution \(condition number .*not isolated"
    ):
        sg.root(F, np.zeros(2), 1.0, method="lm")
    with pytest.raises(sg.SolverError, match=r"Newton's iteration met a singular ∂F/∂x at iteration 0"):
        sg.root(F, np.zeros(2), 1.0, method="newton")


def test_a_residual_of_the_wrong_shape_and_a_closure_over_a_traced_value_are_refused():
    k = sg.tensor("k", (3,))
    with pytest.raises(sg.ShapeError, match=r"F\(x, \.\.\.\) has shape \(2,\), but x0 has shape \(3,\)"):
        sg.root(lambda x, k: x[:2] - k[:2], np.zeros(3), k)
    c = sg.tensor("c", (3,))
    with pytest.raises(
        sg.UnsupportedError, match=r"reads the symgrad value\(s\) \['c'\] that are not among its params"
    ):
        sg.root(lambda x, k: x - k * c, np.zeros(3), k)
    with pytest.raises(sg.UnsupportedError, match="method 'iterate' is fixed_point's"):
        sg.root(cubic, X0, K0, method="iterate")


def test_a_callback_missing_from_the_process_is_a_clear_error():
    with pytest.raises(sg.UnsupportedError, match=r"calls back into the Python function 'root_x_nowhere'"):
        run("root_x_nowhere", ())


def test_a_root_inside_the_residual_of_another_root():
    # y*(x, a): y^3 + y = x a per element; x*(a, b): x + y*(x, a) = b
    def inner(y, x, a):
        return y**3 + y - x * a

    def outer(x, a, b):
        return x + sg.root(inner, np.zeros(2), x, a) - b

    def loss(p):
        return np.sum(sg.root(outer, np.zeros(2), p[:2], p[2:]) ** 2)

    def scipy_loss(p):
        a, b = p[:2], p[2:]

        def F(x):
            return x + scipy.optimize.root(lambda y: y**3 + y - x * a, np.zeros(2), tol=1e-14).x - b

        return np.sum(scipy.optimize.root(F, np.zeros(2), tol=1e-14).x ** 2)

    p0 = np.array([0.5, 1.5, 1.0, 2.0])
    np.testing.assert_allclose(sg.grad(loss, backend="numpy")(p0), central(scipy_loss, p0), rtol=1e-6)


def test_root_of_symbols_in_the_expression_api():
    k = sg.tensor("k", (2,))
    x = sg.root(lambda x, k: x**3 + k * x - 1, np.zeros(2), k)
    assert repr(x).startswith("root(") and repr(x).endswith("<lambda>, k)")
    value, grad = sg.value_and_grad(sg.sum(x**2), wrt=k, backend="numpy")(np.array([1.0, 2.0]))

    def scipy_loss(k):
        return np.sum(scipy.optimize.root(lambda x: x**3 + k * x - 1, np.zeros(2), tol=1e-14).x ** 2)

    np.testing.assert_allclose(value, scipy_loss(np.array([1.0, 2.0])), rtol=1e-10)
    np.testing.assert_allclose(grad, central(scipy_loss, np.array([1.0, 2.0])), rtol=1e-6)


def test_custom_root_differentiates_a_users_own_solver():
    def F(x, k):
        return x**3 + k * x - 1.0

    @sg.custom_root(F)
    def bisection(x0, k):  # the user's numeric solver: numbers in, numbers out
        lo, hi = np.full_like(x0, -5.0), np.full_like(x0, 5.0)
        for _ in range(80):
            mid = (lo + hi) / 2
            below = mid**3 + k * mid - 1.0 < 0
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return (lo + hi) / 2

    k0 = np.array([0.5, 2.0, 4.0])
    assert bisection.__name__ == "bisection"
    np.testing.assert_allclose(F(bisection(np.zeros(3), k0), k0), 0, atol=1e-12)  # on numbers

    def scipy_loss(k):
        return np.sum(np.arange(1.0, 4.0) * scipy.optimize.root(F, np.zeros(3), args=(k,), tol=1e-14).x)

    g = sg.grad(lambda k: np.sum(np.arange(1.0, 4.0) * bisection(np.zeros(3), k)), backend="numpy")
    np.testing.assert_allclose(g(k0), central(scipy_loss, k0), rtol=1e-6)

    @sg.custom_root(F)
    def wrong(x0, k):
        return x0 + 0.1

    with pytest.raises(sg.SolverError, match=r"sg.root\(.*F\): the solver .*wrong did not converge: max \|F"):
        wrong(np.zeros(3), k0)


def test_the_solver_of_a_function_that_goes_away_is_not_kept():
    import gc
    import weakref

    from symgrad import implicit

    def make():
        return lambda x, k: x**3 + k * x - 1.0

    F = make()
    x = sg.root(F, np.zeros(2), np.array([1.0, 2.0]))
    np.testing.assert_allclose(x**3 + np.array([1.0, 2.0]) * x, 1.0, atol=1e-9)
    assert F in implicit._CACHE
    ref = weakref.ref(F)
    del F
    gc.collect()
    assert ref() is None
