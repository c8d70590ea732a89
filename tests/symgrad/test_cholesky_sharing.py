"""One Cholesky factorisation for every use of a matrix (symgrad/ops/linalg.py: cho_solve,
cho_inverse, cho_logdet, is_symmetric, share_factor).

A solve, inverse or determinant of a symmetric matrix whose Cholesky factor the same function
computes is taken from that factor, and cho_solve of a factor differentiates for the matrix
(an outer product) instead of through the factorisation. The values are compared with
numpy/SciPy, the derivatives with central differences, and the graph is counted: the Gaussian
process likelihood and its gradient factor the kernel matrix once and invert it once (through
the factor), with no LU and no triangular solve of a matrix.
"""

import collections

import numpy as np
import pytest
import scipy.linalg

import symgrad as sg
from loop_programs import central
from symgrad.graph import topo_order
from symgrad.ops.linalg import is_symmetric, share_factor

LA = sg.linalg


def _gp_sg(logp, x, y, spell="scipy"):
    p = sg.exp(logp)
    d2 = (x[:, None] - x[None, :]) ** 2
    k = p[0] * sg.exp(-0.5 * d2 / p[1] ** 2) + (p[2] + 1e-6) * LA.eye(x.shape[0])
    low = LA.cholesky(k)
    if spell == "scipy":
        alpha = LA.cho_solve((low, True), y)
    elif spell == "triangular":
        alpha = LA.solve_triangular(low, LA.solve_triangular(low, y, lower=True), lower=True, trans=1)
    else:  # upper factor, scipy's default
        up = LA.cholesky(k, lower=False)
        alpha = LA.cho_solve((up, False), y)
    return 0.5 * sg.sum(y * alpha) + 0.5 * LA.slogdet(k)[1]


def _gp_np(logp, x, y):
    p = np.exp(logp)
    d2 = (x[:, None] - x[None, :]) ** 2
    k = p[0] * np.exp(-0.5 * d2 / p[1] ** 2) + (p[2] + 1e-6) * np.eye(x.shape[0])
    return 0.5 * y @ np.linalg.solve(k, y) + 0.5 * np.linalg.slogdet(k)[1]


def _data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, 5, n))
    return np.array([0.1, -0.2, -1.5]), x, np.sin(x) + 0.1 * rng.normal(size=n)


def _ops(outputs):
    return collections.Counter(n.op for n in topo_order(list(outputs)))


def _gp_graph(spell="scipy"):
    logp, x, y = sg.tensor("logp", (3,)), sg.tensor("x", ("n",)), sg.tensor("y", ("n",))
    loss = _gp_sg(logp, x, y, spell)
    return loss, sg.grad(loss, logp), (logp, x, y)


@pytest.mark.parametrize("spell", ["scipy", "triangular", "upper"])
def test_gp_value_and_gradient_factor_once_and_invert_once(spell):
    loss, grad, _ = _gp_graph(spell)
    ops = _ops(share_factor([loss, grad]))
    assert ops["cholesky"] == 1
    assert ops["cho_inverse"] == 1  # the gradient of log det, shared by the value's solve
    for heavy in ("logabsdet", "detsign", "inv", "solve", "solve_triangular", "matmul"):
        assert ops[heavy] == 0, (heavy, ops)


@pytest.mark.parametrize("spell", ["scipy", "triangular", "upper"])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_gp_value_and_gradient_match_numpy_and_central_differences(spell, backend):
    if backend == "numba" and spell != "scipy":
        pytest.skip("one numba case")
    loss, _, (logp, x, y) = _gp_graph(spell)
    vg = sg.value_and_grad(loss, [logp], inputs=[logp, x, y], backend=backend)
    p, xs, ys = _data()
    value, (g,) = vg(p, xs, ys)
    np.testing.assert_allclose(value, _gp_np(p, xs, ys), rtol=1e-10)
    np.testing.assert_allclose(g, central(lambda q: _gp_np(q, xs, ys), p, h=1e-5), rtol=1e-6, atol=1e-8)


def test_gp_hessian_matches_central_differences_of_the_gradient():
    loss, grad, (logp, x, y) = _gp_graph()
    hess = sg.compile(sg.hessian(loss, logp), inputs=[logp, x, y], backend="numpy")
    gradf = sg.compile(grad, inputs=[logp, x, y], backend="numpy")
    p, xs, ys = _data()
    want = np.stack([central(lambda q: gradf(q, xs, ys)[i], p, h=1e-5) for i in range(3)])
    np.testing.assert_allclose(hess(p, xs, ys), want, rtol=1e-5, atol=1e-7)


def _spd(n, seed=1):
    x = np.random.default_rng(seed).normal(size=(n, n))
    return x @ x.T + n * np.eye(n)


def _sym_directional(f, a, grad, seed=2):
    """<grad, E> against central differences of f along a symmetric direction E."""
    e = np.random.default_rng(seed).normal(size=a.shape)
    e = e + e.T
    h = 1e-6
    want = (f(a + h * e) - f(a - h * e)) / (2 * h)
    np.testing.assert_allclose(np.sum(grad * e), want, rtol=1e-6)


@pytest.mark.parametrize(
    "build, truth",
    [
        (lambda a, b: LA.slogdet(a)[1], lambda a, b: np.linalg.slogdet(a)[1]),
        (lambda a, b: LA.slogdet(a)[0] * LA.det(a), lambda a, b: np.linalg.det(a)),
        (lambda a, b: sg.sum(LA.inv(a) * b[:, None]), lambda a, b: np.sum(np.linalg.inv(a) * b[:, None])),
        (lambda a, b: sg.sum(LA.solve(a, b) ** 2), lambda a, b: np.sum(np.linalg.solve(a, b) ** 2)),
        (
            lambda a, b: sg.sum(LA.cho_solve(LA.cho_factor(a), b) * b),
            lambda a, b: b @ scipy.linalg.cho_solve(scipy.linalg.cho_factor(a), b),
        ),
    ],
)
def test_functions_of_a_factored_symmetric_matrix_match_numpy(build, truth):
    a_sym, b_sym = sg.tensor("a", (4, 4)), sg.tensor("b", (4,))
    s = (a_sym + a_sym.T) * 0.5  # symmetric by construction, factored below
    factored = sg.sum(LA.cho_solve((LA.cholesky(s), True), b_sym))  # the function factors s
    f = build(s, b_sym) + factored
    ops = _ops(share_factor([f, sg.grad(f, a_sym)]))
    assert ops["cholesky"] == 1
    for heavy in ("logabsdet", "detsign", "inv", "solve", "det", "solve_triangular"):
        assert ops[heavy] == 0, (heavy, ops)
    vg = sg.value_and_grad(f, [a_sym], inputs=[a_sym, b_sym], backend="numpy")
    a, b = _spd(4), np.random.default_rng(3).normal(size=4)
    value, (g,) = vg(a, b)

    def want(m, b):
        return truth(m, b) + np.sum(np.linalg.solve(m, b))

    np.testing.assert_allclose(value, want(a, b), rtol=1e-10)
    _sym_directional(lambda m: want(m, b), a, g)


def test_a_matrix_not_symmetric_by_construction_keeps_its_lu():
    # cholesky reads the lower triangle only: log|det a| of a non-symmetric a is not the factor's
    a_sym = sg.tensor("a", (3, 3))
    f = LA.slogdet(a_sym)[1] + 0.0 * sg.sum(LA.cholesky(a_sym))
    ops = _ops(share_factor([f]))
    assert ops["logabsdet"] == 1 and ops["cho_logdet"] == 0
    a = _spd(3) + np.triu(np.ones((3, 3)), 1)  # a PD lower triangle, a different upper one
    got = sg.compile(f, inputs=[a_sym], backend="numpy")(a)
    np.testing.assert_allclose(got, np.linalg.slogdet(a)[1], rtol=1e-12)
    assert abs(got - 2 * np.sum(np.log(np.diag(np.linalg.cholesky(a))))) > 1e-3


def test_is_symmetric_by_construction():
    x, v, w = sg.tensor("x", ("n",)), sg.tensor("v", ("n",)), sg.tensor("w", ("n",))
    m, t = sg.tensor("m", ("n", "k")), sg.tensor("t", ("n", "n"))
    diff = x[:, None] - x[None, :]
    symmetric = [
        sg.exp(-0.5 * diff**2) + 2.0 * LA.eye(x.shape[0]),
        sg.abs(diff) * 3.0,
        diff * diff,
        sg.cos(diff),
        x[:, None] * x[None, :],
        sg.maximum(x[:, None], x[None, :]),
        m @ m.T,
        t + t.T,
        LA.inv(t + t.T),
        sg.where(LA.eye(x.shape[0]) > 0.5, t @ t.T, 1.0),
        sg.tensor("c", (3, 3)) @ sg.tensor("c", (3, 3)).T + 4.0 * LA.eye(3),  # a folded identity
    ]
    not_symmetric = [
        diff,
        sg.exp(diff),
        v[:, None] * w[None, :],
        x[:, None] - w[None, :],
        t,
        t @ t,
        LA.inv(t),
        diff**3,
        t + t.T + sg.tril(t),
        sg.tensor("c", (2, 2)) + np.array([[0.0, 1.0], [2.0, 0.0]]),
    ]
    assert [is_symmetric(e) for e in symmetric] == [True] * len(symmetric)
    assert [is_symmetric(e) for e in not_symmetric] == [False] * len(not_symmetric)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_cho_inverse_kernel_matches_numpy(backend):
    a_sym = sg.tensor("a", ("n", "n"))
    s = (a_sym + a_sym.T) * 0.5
    f = sg.compile(LA.inv(s) + 0.0 * LA.cholesky(s), inputs=[a_sym], backend=backend)
    for n in (1, 5, 70):
        a = _spd(n)
        np.testing.assert_allclose(f(a), np.linalg.inv(a), rtol=1e-10, atol=1e-14)
    with pytest.raises(np.linalg.LinAlgError):
        f(-_spd(3))


def test_gp_gradient_solves_once_and_forms_no_transposed_outer_product():
    # the log-likelihood's 0.5 y^T A^-1 y: the reverse pass's solve of 0.5 y is 0.5 alpha (a
    # scalar comes out of a solve's right-hand side), and sym(0.5 alpha alpha^T) is that
    # product itself, no transpose
    loss, grad, _ = _gp_graph("scipy")
    ops = _ops(share_factor([loss, grad]))
    assert ops["cho_solve"] == 1, ops
    assert ops["transpose"] == 0, ops


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_scaled_right_hand_side_and_a_general_cotangent_match_numpy(backend):
    # A^-1 (s b): the scalar taken out; c^T A^-1 b with c unrelated to b: the symmetrised
    # outer product of two different vectors
    a_sym, b_sym, c_sym = sg.tensor("a", ("n", "n")), sg.tensor("b", ("n",)), sg.tensor("c", ("n",))
    s = a_sym @ a_sym.T + 3.0 * LA.eye(a_sym.shape[0])
    low = LA.cholesky(s)
    f = sg.sum(c_sym * LA.cho_solve((low, True), 2.5 * b_sym))
    vg = sg.value_and_grad(f, [a_sym, b_sym], inputs=[a_sym, b_sym, c_sym], backend=backend)
    rng = np.random.default_rng(5)
    a, b, c = rng.normal(size=(6, 6)), rng.normal(size=6), rng.normal(size=6)

    def by_hand(a):
        return c @ np.linalg.solve(a @ a.T + 3.0 * np.eye(6), 2.5 * b)

    value, (ga, gb) = vg(a, b, c)
    np.testing.assert_allclose(value, by_hand(a), rtol=1e-12)
    np.testing.assert_allclose(ga, central(by_hand, a, h=1e-5), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gb, 2.5 * np.linalg.solve(a @ a.T + 3.0 * np.eye(6), c), rtol=1e-12)


def test_the_triangular_inverse_kernel_matches_numpy_across_its_blocks():
    from symgrad.codegen import linalg_kernels

    for n in (0, 1, 2, 63, 64, 65, 129, 200):
        a = _spd(n)
        low = np.linalg.cholesky(a)
        inv_low = linalg_kernels.lower_inverse(low)
        np.testing.assert_allclose(inv_low @ low, np.eye(n), atol=1e-12)
        np.testing.assert_array_equal(np.triu(inv_low, 1), 0.0)
        got = linalg_kernels.cho_inverse(a, low)
        np.testing.assert_array_equal(got, got.T)
        np.testing.assert_allclose(got, np.linalg.inv(a) if n else a, rtol=1e-10, atol=1e-13)
    low = np.linalg.cholesky(_spd(3))
    low[1, 1] = 0.0  # a singular factor: every entry inf, as LAPACK's potri reports it
    assert np.all(np.isinf(linalg_kernels.cho_inverse(low @ low.T, low)))
