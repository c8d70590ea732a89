"""Hessians, Hessian-vector products, higher derivatives and the sparse Hessian, against
closed forms (scipy.optimize.rosen_hess, sympy.diff) and finite differences of gradients."""

import numpy as np
import pytest
import scipy.sparse
import sympy
from scipy.optimize import rosen_hess

import symgrad as sg
from symgrad.errors import ShapeError, UnsupportedError
from symgrad.graph import topo_order

POINTS = [np.array([-1.2, 1.0]), np.array([1.0, 1.0]), np.array([0.3, -0.7]), np.array([2.0, 3.5])]


def _rosenbrock(z):
    return 100 * (z[1] - z[0] ** 2) ** 2 + (1 - z[0]) ** 2


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_rosenbrock_hessian_matches_the_closed_form(backend):
    z = sg.tensor("z", (2,))
    h = sg.compile(sg.hessian(_rosenbrock(z), z), backend=backend)
    for p in POINTS:
        a, b = p
        closed = np.array([[1200 * a**2 - 400 * b + 2, -400 * a], [-400 * a, 200.0]])
        np.testing.assert_allclose(h(p), closed, rtol=1e-13)
        np.testing.assert_allclose(h(p), rosen_hess(p), rtol=1e-13)


def test_hessian_of_scalar_symbols_is_symmetric_blocks_matching_sympy():
    x, y = sg.scalars("x y")
    e = sg.exp(x * y) + sg.sin(x) * y**3
    H = sg.hessian(e, [x, y])
    assert H[0][1] is H[1][0]  # the off-diagonal entry is one expression, computed once
    f = sg.compile([H[0][0], H[0][1], H[1][1]], inputs=[x, y], backend="numpy")
    X, Y = sympy.symbols("x y")
    E = sympy.exp(X * Y) + sympy.sin(X) * Y**3
    at = {X: 0.7, Y: -0.4}
    expected = [
        float(sympy.diff(E, X, X).subs(at)),
        float(sympy.diff(E, X, Y).subs(at)),
        float(sympy.diff(E, Y, Y).subs(at)),
    ]
    np.testing.assert_allclose(f(0.7, -0.4), expected, rtol=1e-13)


def test_third_derivative_of_sin_is_minus_cos():
    x = sg.scalar("x")
    d3 = sg.grad(sg.grad(sg.grad(sg.sin(x), x), x), x)
    f = sg.compile(d3, backend="numpy")
    for v in (-2.0, 0.3, 1.7):
        assert f(v) == pytest.approx(-np.cos(v), rel=1e-15)


def _mlp():
    rng = np.random.default_rng(3)
    X0, labels = rng.normal(size=(6, 2)), rng.integers(0, 3, 6)
    T0 = np.eye(3)[labels]
    w = sg.tensor("w", (2 * 4 + 4 * 3,))
    X, T = sg.tensor("X", (6, 2)), sg.tensor("T", (6, 3))
    W1, W2 = sg.reshape(w[:8], (2, 4)), sg.reshape(w[8:], (4, 3))
    scores = sg.tanh(X @ W1) @ W2
    loss = -sg.sum(T * sg.log_softmax(scores, axis=1)) / 6
    return w, X, T, loss, X0, T0, rng.normal(size=20) * 0.5


def test_mlp_loss_hessian_matches_finite_differences_of_the_gradient():
    w, X, T, loss, X0, T0, w0 = _mlp()
    H = sg.compile(sg.hessian(loss, w), inputs=[w, X, T], backend="numpy")(w0, X0, T0)
    vg = sg.value_and_grad(loss, wrt=w, inputs=[w, X, T], backend="numpy")
    h = 1e-5
    numeric = np.stack(
        [(vg(w0 + h * e, X0, T0)[1] - vg(w0 - h * e, X0, T0)[1]) / (2 * h) for e in np.eye(20)], axis=1
    )
    np.testing.assert_allclose(H, numeric, rtol=1e-6, atol=1e-8)
    assert np.array_equal(H, H.T)


def test_hvp_equals_hessian_times_vector_without_forming_it():
    w, X, T, loss, X0, T0, w0 = _mlp()
    v = sg.tensor("v", (20,))
    Hv = sg.hvp(loss, w, v)
    H = sg.compile(sg.hessian(loss, w), inputs=[w, X, T], backend="numpy")(w0, X0, T0)
    v0 = np.linspace(-1, 1, 20)
    got = sg.compile(Hv, inputs=[w, X, T, v], backend="numpy")(w0, X0, T0, v0)
    np.testing.assert_allclose(got, H @ v0, rtol=1e-12, atol=1e-12)
    # a small constant times one gradient, not n times
    gradient_nodes = len(topo_order([sg.grad(loss, w)]))
    assert len(topo_order([Hv])) < 4 * gradient_nodes


def test_hessian_graph_grows_as_nodes_times_inputs_not_faster():
    def chain(n_inputs, depth):
        xs = sg.scalars(" ".join(f"q{i}" for i in range(n_inputs)))
        e = xs[0]
        for k in range(depth):
            e = sg.sin(e * xs[k % n_inputs]) + xs[(k + 1) % n_inputs]
        return e, list(xs)

    for n_inputs, depth in [(2, 200), (4, 200), (4, 400)]:
        e, xs = chain(n_inputs, depth)
        N = len(topo_order([e]))
        H = sg.hessian(e, xs)
        size = len(topo_order([b for row in H for b in row]))
        assert size <= 12 * N * n_inputs, (n_inputs, depth, N, size)


def test_value_grad_and_hessian_returns_all_three_from_one_function():
    x, y = sg.scalars("x y")
    e = x**2 * y + sg.cos(y)
    vgh = sg.value_grad_and_hessian(e, [x, y], backend="numpy")
    value, (gx, gy), ((hxx, hxy), (hyx, hyy)) = vgh(1.5, 0.5)
    assert value == pytest.approx(1.125 + np.cos(0.5))
    np.testing.assert_allclose([gx, gy], [1.5, 2.25 - np.sin(0.5)], rtol=1e-15)
    np.testing.assert_allclose([hxx, hxy, hyx, hyy], [1.0, 3.0, 3.0, -np.cos(0.5)], rtol=1e-15)
    z = sg.tensor("z", (2,))
    value, g, H = sg.value_grad_and_hessian(_rosenbrock(z), z)(POINTS[0])  # numba
    np.testing.assert_allclose(H, rosen_hess(POINTS[0]), rtol=1e-13)


def _chained_rosenbrock(X):
    return sg.sum(100 * (X[1:] - X[:-1] ** 2) ** 2 + (1 - X[:-1]) ** 2)


def test_sparse_hessian_of_1000_dim_rosenbrock_is_tridiagonal_and_exact():
    n = 1000
    X = sg.tensor("X", (n,))
    f = _chained_rosenbrock(X)
    pattern = sg.hessian_sparsity(f, X)
    assert isinstance(pattern, scipy.sparse.csr_matrix) and pattern.shape == (n, n)
    assert pattern.nnz == 2998 == 3 * n - 2
    rows, cols = pattern.nonzero()
    assert np.abs(rows - cols).max() == 1
    sh = sg.sparse_hessian(f, X, backend="numpy")
    assert int(sh.colors.max()) + 1 == 3  # three Hessian-vector products
    x0 = np.random.default_rng(0).uniform(-1.5, 1.5, n)
    H = sh(x0)
    assert isinstance(H, scipy.sparse.csr_matrix) and H.nnz == 2998
    dense = rosen_hess(x0)
    np.testing.assert_allclose(H.toarray(), dense, rtol=1e-13, atol=1e-9)


def test_sparse_hessian_of_a_separable_sum_in_several_tensors():
    a, b = sg.tensor("a", (4,)), sg.tensor("b", (3,))
    f = sg.sum(sg.exp(a) * a) + sg.sum(b**3) + a[0] * b[2]
    pattern = sg.hessian_sparsity(f, [a, b]).toarray()
    expected = np.zeros((7, 7), dtype=bool)
    expected[np.arange(7), np.arange(7)] = True
    expected[0, 6] = expected[6, 0] = True
    assert np.array_equal(pattern, expected)
    a0, b0 = np.linspace(-1, 1, 4), np.array([0.5, -2.0, 1.5])
    H = sg.sparse_hessian(f, [a, b])(a0, b0).toarray()  # numba
    dense = np.diag(np.concatenate([np.exp(a0) * (a0 + 2), 6 * b0]))
    dense[0, 6] = dense[6, 0] = 1.0
    np.testing.assert_allclose(H, dense, rtol=1e-14)


def test_hessian_errors_name_the_problem():
    v = sg.tensor("v", (3,))
    with pytest.raises(ShapeError, match="scalar expression"):
        sg.hessian(v * 2.0, v)
    with pytest.raises(UnsupportedError, match="symbolic size"):
        sg.hessian(sg.sum(sg.tensor("u", ("n",)) ** 2), sg.tensor("u", ("n",)))
    with pytest.raises(UnsupportedError, match="dtype int64"):
        sg.hessian(sg.sum(sg.tensor("k", (3,), dtype="int64")), v)
    with pytest.raises(ShapeError, match="vector for v has shape"):
        sg.hvp(sg.sum(v**3), v, np.ones(4))
    with pytest.raises(UnsupportedError, match="wrt must be symbols"):
        sg.hessian_sparsity(sg.sum(v**3), [v * 2])
