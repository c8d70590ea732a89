"""The seed examples of design.md that need no parser or tracing, checked against hand-derived truth."""

import numpy as np
import pytest
import sympy

import symgrad as sg

BACKENDS = ["numba", "numpy"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_chain_rule_seed_matches_hand_derivative(backend):
    x, y = sg.scalars("x y")
    vg = sg.value_and_grad(x * y + sg.sin(x), wrt=[x, y], backend=backend)
    for xv, yv in [(0.7, -1.3), (-2.0, 3.5), (0.0, 0.0)]:
        value, (dx, dy) = vg(xv, yv)
        assert value == pytest.approx(xv * yv + np.sin(xv), rel=1e-15, abs=1e-15)
        assert dx == pytest.approx(yv + np.cos(xv), rel=1e-15)
        assert dy == pytest.approx(xv, rel=1e-15)


def test_chain_rule_seed_matches_sympy_diff():
    x, y = sg.scalars("x y")
    gx, gy = sg.grad(x * y + sg.sin(x), [x, y])
    f = sg.compile([gx, gy], inputs=[x, y])
    X, Y = sympy.symbols("x y")
    z = X * Y + sympy.sin(X)
    dzdx = sympy.lambdify((X, Y), sympy.diff(z, X))
    dzdy = sympy.lambdify((X, Y), sympy.diff(z, Y))
    rng = np.random.default_rng(1)
    for xv, yv in rng.normal(size=(5, 2)):
        gxv, gyv = f(xv, yv)
        assert gxv == pytest.approx(dzdx(xv, yv), rel=1e-14)
        assert gyv == pytest.approx(dzdy(xv, yv), rel=1e-14)


def test_chain_rule_seed_source_computes_sin_and_cos_once():
    x, y = sg.scalars("x y")
    vg = sg.value_and_grad(x * y + sg.sin(x), wrt=[x, y])
    assert vg.source.count("np.sin(") == 1
    assert vg.source.count("np.cos(") == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_affine_seed_values(backend):
    W, x, b = sg.scalars("W x b")
    vg = sg.value_and_grad(W * x + b, wrt=[W, x, b], backend=backend)
    value, (dW, dx, db) = vg(-2.0, 5.0, 3.0)
    assert value == -7.0
    assert (dW, dx, db) == (5.0, -2.0, 1.0)


@pytest.mark.parametrize("n", [1, 4])
@pytest.mark.parametrize("backend", BACKENDS)
def test_matmul_backward_is_dy_at_W_T_and_x_T_at_dy(n, backend):
    D, H = 3, 5
    x = sg.tensor("x", ("n", D))
    W = sg.tensor("W", (D, H))
    dy = sg.tensor("dy", ("n", H))
    dx, dW = sg.vjp(x @ W, [x, W], dy)
    f = sg.compile([dx, dW], inputs=[x, W, dy], backend=backend)
    rng = np.random.default_rng(n)
    xv, Wv, dyv = rng.normal(size=(n, D)), rng.normal(size=(D, H)), rng.normal(size=(n, H))
    got_dx, got_dW = f(xv, Wv, dyv)
    np.testing.assert_allclose(got_dx, dyv @ Wv.T, rtol=1e-13)
    np.testing.assert_allclose(got_dW, xv.T @ dyv, rtol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_repeat_gradient_is_sum_over_repeated_axis(backend):
    x = sg.tensor("x", ("d",))
    G = sg.tensor("G", ("n", "d"))
    repeated = sg.broadcast_to(x, ("n", "d"))
    vg = sg.value_and_grad(sg.sum(repeated * G), wrt=x, inputs=[x, G], backend=backend)
    rng = np.random.default_rng(2)
    Gv = rng.normal(size=(6, 3))
    _, dx = vg(rng.normal(size=3), Gv)
    np.testing.assert_allclose(dx, Gv.sum(axis=0), rtol=1e-13)
    # the same through implicit broadcasting in an elementwise op
    vg2 = sg.value_and_grad(sg.sum(x * G), wrt=x, inputs=[x, G], backend=backend)
    np.testing.assert_allclose(vg2(rng.normal(size=3), Gv)[1], Gv.sum(axis=0), rtol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sum_gradient_is_repeat(backend):
    X = sg.tensor("X", ("n", "d"))
    g = sg.tensor("g", ("d",))
    (dX,) = sg.vjp(sg.sum(X, axis=0), [X], g)
    f = sg.compile(dX, inputs=[X, g], backend=backend)
    gv = np.array([1.0, -2.0, 3.0])
    np.testing.assert_array_equal(f(np.zeros((4, 3)), gv), np.tile(gv, (4, 1)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_cross_entropy_gradient_is_softmax_minus_t_over_n(backend):
    N, C = 5, 4
    s = sg.tensor("s", ("N", C))
    t = sg.tensor("t", ("N", C))
    loss = -sg.sum(t * sg.log_softmax(s, axis=1)) / N
    vg = sg.value_and_grad(loss, wrt=s, inputs=[s, t], backend=backend)
    rng = np.random.default_rng(3)
    sv = rng.normal(size=(N, C)) * 3
    tv = np.eye(C)[rng.integers(0, C, N)]
    e = np.exp(sv - sv.max(axis=1, keepdims=True))
    softmax = e / e.sum(axis=1, keepdims=True)
    value, ds = vg(sv, tv)
    assert value == pytest.approx(-np.sum(tv * np.log(softmax)) / N, rel=1e-13)
    np.testing.assert_allclose(ds, (softmax - tv) / N, rtol=1e-12, atol=1e-15)
    # large scores stay finite
    value, ds = vg(sv + 1000.0, tv)
    assert np.isfinite(value) and np.all(np.isfinite(ds))
    np.testing.assert_allclose(ds, (softmax - tv) / N, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigmoid_derivative_is_s_times_one_minus_s(backend):
    x = sg.scalar("x")
    vg = sg.value_and_grad(sg.sigmoid(x), wrt=x, backend=backend)
    for xv in [-30.0, -2.0, 0.0, 0.5, 40.0]:
        s = 1 / (1 + np.exp(-xv))
        one_minus_s = 1 / (1 + np.exp(xv))  # 1 - s, without rounding to 0 at x = 40
        value, d = vg(xv)
        assert value == pytest.approx(s, rel=1e-15)
        assert d == pytest.approx(s * one_minus_s, rel=1e-12, abs=1e-300)
        assert d > 0


def test_gradient_descent_seed_visits_the_documented_points():
    w1, w2 = sg.scalars("w1 w2")
    vg = sg.value_and_grad(w1**2 + 0.5 * w2**2, wrt=[w1, w2])
    w = np.array([1.0, 1.0])
    visited = [tuple(w)]
    for _ in range(2):
        _, grads = vg(*w)
        w = w - 1.0 * np.array(grads)
        visited.append(tuple(w))
    assert visited == [(1.0, 1.0), (-1.0, 0.0), (1.0, 0.0)]
