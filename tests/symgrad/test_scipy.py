"""vg.scipy(): flat float64 fun/jac/hess/hessp for scipy.optimize.minimize, against SciPy's
own rosen/rosen_der/rosen_hess runs and a least-squares solution from numpy."""

import numpy as np
import pytest
from scipy.optimize import minimize, rosen, rosen_der, rosen_hess

import symgrad as sg
from symgrad.errors import InputError, UnsupportedError

START = np.array([-1.2, 1.0])


def _rosen_vg(backend):
    z = sg.tensor("z", (2,))
    return sg.value_and_grad(100 * (z[1] - z[0] ** 2) ** 2 + (1 - z[0]) ** 2, wrt=z, backend=backend)


@pytest.mark.parametrize(
    "method, use", [("Newton-CG", "hessp"), ("trust-ncg", "hess"), ("trust-exact", "hess")]
)
def test_newton_and_trust_region_on_rosenbrock_match_scipys_own_derivatives(method, use):
    p = _rosen_vg("numpy").scipy()
    ours = minimize(p.fun, START, jac=True, method=method, **{use: getattr(p, use)})
    if use == "hess":
        theirs = minimize(rosen, START, jac=rosen_der, hess=rosen_hess, method=method)
    else:
        theirs = minimize(rosen, START, jac=rosen_der, method=method, hessp=lambda x, v: rosen_hess(x) @ v)
    assert ours.success and theirs.success
    np.testing.assert_allclose(ours.x, [1.0, 1.0], atol=1e-4)
    assert abs(ours.nit - theirs.nit) <= 2, (ours.nit, theirs.nit)


def test_scipy_adapter_with_numba_and_scalar_symbols():
    x, y = sg.scalars("x y")
    vg = sg.value_and_grad(100 * (y - x**2) ** 2 + (1 - x) ** 2, wrt=[x, y])
    p = vg.scipy()
    value, grad = p.fun(START)
    assert value == pytest.approx(rosen(START)) and grad.dtype == np.float64
    np.testing.assert_allclose(grad, rosen_der(START), rtol=1e-14)
    np.testing.assert_allclose(p.hess(START), rosen_hess(START), rtol=1e-14)
    np.testing.assert_allclose(
        p.hessp(START, np.array([0.5, -2.0])), rosen_hess(START) @ [0.5, -2.0], rtol=1e-14
    )
    res = minimize(p.fun, START, jac=True, hess=p.hess, method="trust-ncg")
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-4)


def test_several_tensor_inputs_are_packed_into_one_flat_vector():
    rng = np.random.default_rng(1)
    X0, t0 = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    W, b = sg.tensor("W", (3, 2)), sg.tensor("b", (2,))
    X, t = sg.tensor("X", (20, 3)), sg.tensor("t", (20, 2))
    loss = sg.sum((X @ W + b - t) ** 2)
    vg = sg.value_and_grad(loss, wrt=[W, b], inputs=[W, X, b, t], backend="numpy")
    p = vg.scipy(X0, t=t0)
    x0 = p.pack(np.zeros((3, 2)), np.zeros(2))
    assert x0.shape == (8,) and x0.dtype == np.float64
    res = minimize(p.fun, x0, jac=True, hessp=p.hessp, method="Newton-CG", options={"xtol": 1e-12})
    W_opt, b_opt = p.unpack(res.x)
    A = np.hstack([X0, np.ones((20, 1))])
    solution = np.linalg.lstsq(A, t0, rcond=None)[0]
    np.testing.assert_allclose(W_opt, solution[:3], atol=1e-8)
    np.testing.assert_allclose(b_opt, solution[3], atol=1e-8)
    H = p.hess(res.x)
    assert H.shape == (8, 8) and np.array_equal(H, H.T)
    np.testing.assert_allclose(p.hessp(res.x, np.arange(8.0)), H @ np.arange(8.0), rtol=1e-12)


def test_scipy_adapter_errors_name_the_problem():
    z = sg.tensor("z", (2,))
    X = sg.tensor("X", (2,))
    vg = sg.value_and_grad(sg.sum((z - X) ** 2), wrt=z, backend="numpy")
    with pytest.raises(InputError, match=r"missing fixed argument 'X'.*args=\(X,\)"):
        vg.scipy().fun(np.zeros(2))
    with pytest.raises(InputError, match="2 extra arguments, but the inputs not fixed are X"):
        vg.scipy()(np.zeros(2), np.ones(2), np.ones(2))
    with pytest.raises(InputError, match="1 extra argument, but every input not differentiated"):
        vg.scipy(X=np.ones(2))(np.zeros(2), np.ones(2))
    with pytest.raises(InputError, match="'z' is differentiated"):
        vg.scipy(X=np.zeros(2), z=np.zeros(2))
    with pytest.raises(InputError, match="unexpected argument 'q'"):
        vg.scipy(X=np.zeros(2), q=1)
    p = vg.scipy(X=np.ones(2))
    with pytest.raises(InputError, match="flat vector of 2 values"):
        p.fun(np.zeros(3))
    with pytest.raises(UnsupportedError, match="sg.value_and_grad"):
        sg.compile(sg.sum(z), backend="numpy").scipy()


def test_check_grad_explains_itself_and_agrees():
    assert "truncation" in sg.check_grad.__doc__ and "round-off" in sg.check_grad.__doc__
    assert sg.check_grad(_rosen_vg("numpy"), START) < 1e-7


def test_scipy_adapter_takes_the_data_as_minimize_args_and_infers_symbolic_sizes():
    w = sg.tensor("w", ("d",))
    X = sg.tensor("X", ("n", "d"))
    t = sg.tensor("t", ("n",))
    vg = sg.value_and_grad(sg.sum((X @ w - t) ** 2) + 0.5 * sg.sum(w * w), wrt=[w], inputs=[w, X, t])
    rng = np.random.default_rng(4)
    X0, t0 = rng.normal(size=(30, 4)), rng.normal(size=30)
    res = minimize(
        vg.scipy(), np.zeros(4), jac=True, args=(X0, t0), method="L-BFGS-B", options={"gtol": 1e-12}
    )
    ridge = np.linalg.solve(2 * X0.T @ X0 + np.eye(4), 2 * X0.T @ t0)
    np.testing.assert_allclose(res.x, ridge, atol=1e-6)
    p = vg.scipy(X=X0)  # t comes with each call
    value, g = p(ridge, t0)
    assert abs(value - (np.sum((X0 @ ridge - t0) ** 2) + 0.5 * ridge @ ridge)) < 1e-9
    assert np.max(np.abs(g)) < 1e-8
    # a symbolic size no fixed input determines: W (d, k) with k free
    W = sg.tensor("W", ("d", "k"))
    V = sg.tensor("V", ("k",))
    vg2 = sg.value_and_grad(sg.sum(W) + sg.sum(V), wrt=[W, V], inputs=[W, V], backend="numpy")
    with pytest.raises(InputError, match="the sizes of W, V are symbolic"):
        vg2.scipy().fun(np.zeros(6))
