"""Decompositions and solves (symgrad/ops/linalg.py) against numpy/SciPy and central differences.

Every function's value is compared with numpy's or SciPy's, its gradient (reverse mode) and its
directional derivative (forward mode) with five-point central differences of that numpy/SciPy
function, on random well-conditioned inputs, on both backends. cholesky and eigh read one
triangle of a symmetric matrix, so they are differentiated through A = X X^T + n I, a function of
a general X whose perturbations stay symmetric. Eigen- and singular vectors are compared through
sign-free functions of them (their squares). JAX, when importable, is compared in the same way.
"""

import importlib.util

import numpy as np
import pytest
import scipy.linalg

import symgrad as sg
from symgrad.errors import ShapeError, UnsupportedError

BACKENDS = ["numpy", "numba"]
LA = sg.linalg


def _five_point(f, arrays, index, h=1e-4):
    base = arrays[index]
    grad = np.zeros(base.shape)
    for idx in np.ndindex(base.shape):
        step = h * max(1.0, abs(float(base[idx])))
        values = []
        for k in (-2, -1, 1, 2):
            moved = [a.copy() for a in arrays]
            moved[index][idx] += k * step
            values.append(f(*moved))
        grad[idx] = (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * step)
    return grad


def _direction(f, arrays, tangents, h=1e-4):
    def at(k):
        return np.asarray(f(*[a + k * h * t for a, t in zip(arrays, tangents)]), dtype=np.float64)

    return (at(-2) - 8 * at(-1) + 8 * at(1) - at(2)) / (12 * h)


def _spd(x):
    return x @ x.T + x.shape[0] * np.eye(x.shape[0])


def _spd_sg(x):
    return x @ x.T + x.shape[0] * LA.eye(x.shape[0])


def _tall(rng, m, n):
    return rng.normal(size=(m, n)) + 2 * np.eye(m, n)


def _well(rng, n):
    return rng.normal(size=(n, n)) + n * np.eye(n)


# name -> (symgrad build, numpy/SciPy truth, input maker(rng))
CASES = {
    "solve_vector": (LA.solve, np.linalg.solve, lambda r: [_well(r, 4), r.normal(size=4)]),
    "solve_matrix": (LA.solve, np.linalg.solve, lambda r: [_well(r, 4), r.normal(size=(4, 2))]),
    "inv": (LA.inv, np.linalg.inv, lambda r: [_well(r, 4)]),
    "det": (LA.det, np.linalg.det, lambda r: [_well(r, 3)]),
    "slogdet": (lambda a: LA.slogdet(a)[1], lambda a: np.linalg.slogdet(a)[1], lambda r: [_well(r, 4)]),
    "slogdet_negative": (
        lambda a: LA.slogdet(a)[1],
        lambda a: np.linalg.slogdet(a)[1],
        lambda r: [-_well(r, 3)],
    ),
    "cholesky": (
        lambda x: LA.cholesky(_spd_sg(x)),
        lambda x: np.linalg.cholesky(_spd(x)),
        lambda r: [r.normal(size=(4, 4))],
    ),
    "cholesky_upper": (
        lambda x: LA.cholesky(_spd_sg(x), lower=False),
        lambda x: scipy.linalg.cholesky(_spd(x), lower=False),
        lambda r: [r.normal(size=(3, 3))],
    ),
    **{
        f"solve_triangular_{'lower' if lower else 'upper'}_trans{trans}_{kind}": (
            lambda a, b, lower=lower, trans=trans: LA.solve_triangular(a, b, trans=trans, lower=lower),
            lambda a, b, lower=lower, trans=trans: scipy.linalg.solve_triangular(
                a, b, trans=trans, lower=lower
            ),
            lambda r, kind=kind: [_well(r, 4), r.normal(size=(4,) if kind == "vector" else (4, 3))],
        )
        for lower in (True, False)
        for trans in (0, 1)
        for kind in ("vector", "matrix")
    },
    **{
        f"solve_triangular_{'lower' if lower else 'upper'}_unit_trans{trans}": (
            lambda a, b, lower=lower, trans=trans: LA.solve_triangular(
                a, b, trans, lower, unit_diagonal=True
            ),
            lambda a, b, lower=lower, trans=trans: scipy.linalg.solve_triangular(
                a, b, trans=trans, lower=lower, unit_diagonal=True
            ),
            lambda r: [r.normal(size=(4, 4)) * 0.3, r.normal(size=(4, 2))],
        )
        for lower in (True, False)
        for trans in (0, 1)
    },
    **{
        f"cho_solve_{'lower' if lower else 'upper'}": (
            lambda x, b, lower=lower: LA.cho_solve(LA.cho_factor(_spd_sg(x), lower=lower), b),
            lambda x, b, lower=lower: scipy.linalg.cho_solve(
                scipy.linalg.cho_factor(_spd(x), lower=lower), b
            ),
            lambda r: [r.normal(size=(4, 4)), r.normal(size=4)],
        )
        for lower in (True, False)
    },
    "eigh_values": (
        lambda x: LA.eigh(_spd_sg(x))[0],
        lambda x: np.linalg.eigh(_spd(x))[0],
        lambda r: [r.normal(size=(4, 4))],
    ),
    "eigh_vectors": (
        lambda x: LA.eigh(_spd_sg(x))[1] ** 2,
        lambda x: np.linalg.eigh(_spd(x))[1] ** 2,
        lambda r: [r.normal(size=(4, 4))],
    ),
    "eigvalsh": (
        lambda x: LA.eigvalsh(_spd_sg(x)),
        lambda x: np.linalg.eigvalsh(_spd(x)),
        lambda r: [r.normal(size=(3, 3))],
    ),
    **{
        f"svd_{part}_{m}x{n}": (
            lambda a, k=k: LA.svd(a, full_matrices=False)[k] ** (1 if k == 1 else 2),
            lambda a, k=k: np.linalg.svd(a, full_matrices=False)[k] ** (1 if k == 1 else 2),
            lambda r, m=m, n=n: [_tall(r, m, n) if m >= n else _tall(r, n, m).T],
        )
        for k, part in enumerate(("u", "s", "vt"))
        for m, n in ((4, 3), (3, 4), (3, 3))
    },
    **{
        f"qr_{part}_{m}x{n}": (
            lambda a, k=k: LA.qr(a)[k],
            lambda a, k=k: np.linalg.qr(a)[k],
            lambda r, m=m, n=n: [_tall(r, m, n)],
        )
        for k, part in enumerate(("q", "r"))
        for m, n in ((4, 3), (3, 3))
    },
    **{
        f"norm_vector_{ord}": (
            lambda x, ord=ord: LA.norm(x, ord),
            lambda x, ord=ord: np.linalg.norm(x, ord),
            lambda r: [r.normal(size=5)],
        )
        for ord in (None, 1, 2, 3, 4, 0.5, np.inf, -np.inf)
    },
    **{
        f"norm_matrix_{ord}": (
            lambda x, ord=ord: LA.norm(x, ord),
            lambda x, ord=ord: np.linalg.norm(x, ord),
            lambda r: [r.normal(size=(4, 3))],
        )
        for ord in (None, "fro", "nuc", 2, -2, 1, -1, np.inf, -np.inf)
    },
    **{
        f"pinv_{m}x{n}": (LA.pinv, np.linalg.pinv, lambda r, m=m, n=n: [r.normal(size=(m, n))])
        for m, n in ((4, 3), (3, 4), (3, 3))
    },
    "norm_axis_keepdims": (
        lambda x: LA.norm(x, 3, axis=0, keepdims=True),
        lambda x: np.linalg.norm(x, 3, axis=0, keepdims=True),
        lambda r: [r.normal(size=(4, 3))],
    ),
    "norm_matrix_axes_transposed": (
        lambda x: LA.norm(x, 1, axis=(1, 0)),
        lambda x: np.linalg.norm(x, 1, axis=(1, 0)),
        lambda r: [r.normal(size=(4, 3))],
    ),
}
# each op at least once on numba (its compiles cost a second each); numpy runs every case
NUMBA_CASES = [
    "solve_vector",
    "solve_matrix",
    "inv",
    "det",
    "slogdet",
    "cholesky",
    "solve_triangular_lower_trans0_vector",
    "solve_triangular_upper_trans1_matrix",
    "solve_triangular_lower_trans1_vector",
    "solve_triangular_upper_unit_trans1",
    "cho_solve_lower",
    "cho_solve_upper",
    "eigh_vectors",
    "eigh_values",
    "svd_u_4x3",
    "svd_vt_3x4",
    "svd_s_4x3",
    "qr_q_4x3",
    "qr_r_4x3",
    "norm_matrix_nuc",
    "norm_vector_3",
    "pinv_3x4",
]


def _check_case(name, backend):
    build, truth, make = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    arrays = make(rng)
    symbols = [sg.tensor("abcd"[k], a.shape) for k, a in enumerate(arrays)]
    out = build(*symbols)
    expected = np.asarray(truth(*arrays))
    assert out.shape == expected.shape, (out.shape, expected.shape)
    weight = rng.normal(size=expected.shape)
    loss = sg.sum(out * weight)
    vg = sg.value_and_grad(loss, wrt=symbols, inputs=symbols, backend=backend)
    value, grads = vg(*arrays)

    def f(*xs):
        return float(np.sum(np.asarray(truth(*xs)) * weight))

    np.testing.assert_allclose(value, f(*arrays), rtol=1e-11)
    for k, g in enumerate(grads):
        numeric = _five_point(f, arrays, k)
        scale = max(1.0, float(np.max(np.abs(numeric))))
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-6 * scale, err_msg=f"{name}: input {k}")
    # forward mode: the tangent along a random direction, and the value itself
    tangents = [rng.normal(size=a.shape) for a in arrays]
    fwd = sg.compile([out, sg.jvp(out, symbols, tangents)], inputs=symbols, backend=backend)
    got, tangent = fwd(*arrays)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    want = _direction(truth, arrays, tangents)
    np.testing.assert_allclose(tangent, want, rtol=1e-6, atol=1e-6 * max(1.0, np.max(np.abs(want))))


@pytest.mark.parametrize("name", sorted(CASES))
def test_value_gradient_and_tangent_match_numpy_and_central_differences_numpy(name):
    _check_case(name, "numpy")


@pytest.mark.parametrize("name", NUMBA_CASES)
def test_value_gradient_and_tangent_match_numpy_and_central_differences_numba(name):
    _check_case(name, "numba")


def test_every_linalg_op_runs_on_numba_in_the_cases():
    # the numba list covers every op this module registers
    from symgrad.graph import topo_order

    new_ops = {"solve", "inv", "det", "logabsdet", "cholesky", "solve_triangular"}
    new_ops |= {"eigh_w", "eigh_v", "svd_u", "svd_s", "svd_vt", "qr_q", "qr_r", "pinv"}
    seen = set()
    for name in NUMBA_CASES:
        build, _, make = CASES[name]
        arrays = make(np.random.default_rng(0))
        seen |= {
            n.op for n in topo_order([build(*[sg.tensor("abcd"[k], a.shape) for k, a in enumerate(arrays)])])
        }
    assert new_ops <= seen, new_ops - seen


@pytest.mark.parametrize("backend", BACKENDS)
def test_slogdet_sign_and_logabsdet(backend):
    a = sg.tensor("a", ("n", "n"))
    sign, logabs = LA.slogdet(a)
    f = sg.compile([sign, logabs, LA.det(a)], inputs=[a], backend=backend)
    for m in (np.diag([1.0, -2.0, 3.0]), np.diag([2.0, 2.0]), np.array([[0.0, 1.0], [1.0, 0.0]])):
        s, la, d = f(m)
        want_s, want_la = np.linalg.slogdet(m)
        assert float(s) == want_s
        assert float(la) == pytest.approx(want_la, rel=1e-14, abs=1e-14)
        assert float(d) == pytest.approx(np.linalg.det(m), rel=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_symbolic_sizes_serve_every_n(backend):
    a, b = sg.tensor("a", ("n", "n")), sg.tensor("b", ("n", "k"))
    outs = [
        LA.solve(a, b),
        LA.cho_solve(LA.cho_factor(a @ a.T, lower=True), b),
        LA.eigh(a + a.T)[0],
        LA.svd(a, compute_uv=False),
        LA.slogdet(a)[1],
        LA.qr(a)[1],
    ]
    f = sg.compile(outs, inputs=[a, b], backend=backend)
    rng = np.random.default_rng(2)
    for n, k in ((3, 1), (6, 4)):
        av, bv = _well(rng, n), rng.normal(size=(n, k))
        got = f(av, bv)
        want = [
            np.linalg.solve(av, bv),
            np.linalg.solve(av @ av.T, bv),
            np.linalg.eigvalsh(av + av.T),
            np.linalg.svd(av, compute_uv=False),
            np.linalg.slogdet(av)[1],
            np.linalg.qr(av)[1],
        ]
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("unit", [False, True])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("trans", [0, 1])
def test_numba_triangular_kernel_matches_scipy_blocked_and_unblocked(lower, trans, unit):
    from symgrad.codegen.linalg_kernels import solve_triangular

    rng = np.random.default_rng(3)
    for n, k in ((0, 3), (1, 1), (7, 1), (7, 5), (130, 1), (130, 20), (200, 70)):
        # off the diagonal small enough that a unit-diagonal solve does not grow
        a = rng.normal(size=(n, n)) * (0.5 / np.sqrt(n + 1)) + 4 * np.eye(n)
        for b in (rng.normal(size=(n, k)), rng.normal(size=n)):
            got = solve_triangular(a, b, lower, trans, unit)
            want = scipy.linalg.solve_triangular(a, b, lower=lower, trans=trans, unit_diagonal=unit)
            assert got.shape == b.shape
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=f"n={n} k={k}")
        # a non-contiguous operand (a transposed view) gives the same
        got = solve_triangular(a.T, np.asfortranarray(rng.normal(size=(n, k))), lower, trans, unit)
        assert got.shape == (n, k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_solves_keep_float32(backend):
    a, b = sg.tensor("a", (3, 3), dtype="float32"), sg.tensor("b", (3,), dtype="float32")
    out = (
        LA.solve(a, b) + LA.solve_triangular(a, b, lower=True) + LA.cho_solve((LA.cholesky(a @ a.T), True), b)
    )
    f = sg.compile(out, inputs=[a, b], backend=backend)
    rng = np.random.default_rng(4)
    av, bv = _well(rng, 3).astype(np.float32), rng.normal(size=3).astype(np.float32)
    got = f(av, bv)
    assert got.dtype == np.float32
    av64, bv64 = av.astype(np.float64), bv.astype(np.float64)
    want = (
        np.linalg.solve(av64, bv64)
        + scipy.linalg.solve_triangular(av64, bv64, lower=True)
        + np.linalg.solve(av64 @ av64.T, bv64)
    )
    np.testing.assert_allclose(got, want, rtol=1e-4)


# ---------------------------------------------------------------- second derivatives


def _hessian_numeric(f, x, h=1e-3):
    n = x.size
    hess = np.zeros((n, n))
    for i in range(n):
        for j in range(n):

            def at(di, dj):
                y = x.copy()
                y[i] += di * h
                y[j] += dj * h
                return f(y)

            hess[i, j] = (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)) / (4 * h * h)
    return hess


@pytest.mark.parametrize("backend", BACKENDS)
def test_hessian_of_a_gaussian_log_likelihood_through_cholesky_slogdet_and_cho_solve(backend):
    # A(x) = A0 + sum_k x_k B_k: logdet, a solve, and a Cholesky-based quadratic form
    rng = np.random.default_rng(5)
    a0 = _spd(rng.normal(size=(4, 4)))
    basis = np.stack([(m + m.T) / 2 for m in rng.normal(size=(3, 4, 4))])
    y = rng.normal(size=4)

    def truth(x):
        a = a0 + np.tensordot(x, basis, axes=1)
        low = np.linalg.cholesky(a)
        return (
            np.linalg.slogdet(a)[1]
            + y @ scipy.linalg.cho_solve((low, True), y)
            + np.sum(np.log(np.diag(low)) ** 2)
            + np.sum(np.linalg.solve(a, y) ** 3)
        )

    x = sg.tensor("x", (3,))
    a = a0 + sg.sum(sg.reshape(x, (3, 1, 1)) * basis, axis=0)
    low = LA.cholesky(a)
    diag = sg.sum(low * np.eye(4), axis=1)
    e = LA.slogdet(a)[1] + y @ LA.cho_solve((low, True), y) + sg.sum(sg.log(diag) ** 2)
    e = e + sg.sum(LA.solve(a, y) ** 3)
    f = sg.compile([e, sg.hessian(e, x)], inputs=[x], backend=backend)
    x0 = rng.normal(size=3) * 0.1
    value, hess = f(x0)
    assert float(value) == pytest.approx(truth(x0), rel=1e-12)
    np.testing.assert_allclose(hess, _hessian_numeric(truth, x0), rtol=1e-5, atol=1e-5)


def test_hessian_of_logdet_is_the_known_formula():
    # d2 log det A [E, F] = -tr(A^-1 E A^-1 F): the Hessian over A's entries
    rng = np.random.default_rng(6)
    a0 = _well(rng, 3)
    a = sg.tensor("a", (3, 3))
    hess = sg.compile(sg.hessian(LA.slogdet(a)[1], a), inputs=[a], backend="numpy")(a0)
    inv = np.linalg.inv(a0)
    want = -np.einsum("jk,li->ijkl", inv, inv)  # d/dA_kl of (A^-T)_ij = -(A^-1)_jk (A^-1)_li
    np.testing.assert_allclose(hess, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_eigh_and_svd_second_derivatives(backend):
    rng = np.random.default_rng(7)
    x0 = rng.normal(size=(3, 3)).ravel() * 0.5
    c = rng.normal(size=(3, 3))

    def truth(x):
        s = _spd(x.reshape(3, 3))
        return np.sum(np.linalg.eigh(s)[0] ** 3) + np.sum(
            np.linalg.svd(x.reshape(3, 3) + c, compute_uv=False) ** 3
        )

    x = sg.tensor("x", (9,))
    m = sg.reshape(x, (3, 3))
    e = sg.sum(LA.eigh(_spd_sg(m))[0] ** 3) + sg.sum(LA.svd(m + c, compute_uv=False) ** 3)
    hess = sg.compile(sg.hessian(e, x), inputs=[x], backend=backend)(x0)
    np.testing.assert_allclose(hess, _hessian_numeric(truth, x0, 1e-4), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- tracing numpy and SciPy code


def gp_negative_log_likelihood(log_params, x, y):
    """A Gaussian process's negative log marginal likelihood, written for numpy and SciPy."""
    params = np.exp(log_params)
    amplitude, length, noise = params[0], params[1], params[2]
    d2 = (x[:, None] - x[None, :]) ** 2
    k = amplitude * np.exp(-0.5 * d2 / length**2) + (noise + 1e-6) * np.eye(x.shape[0])
    low = np.linalg.cholesky(k)
    alpha = scipy.linalg.cho_solve((low, True), y)
    return 0.5 * y @ alpha + 0.5 * np.linalg.slogdet(k)[1] + 0.5 * x.shape[0] * np.log(2 * np.pi)


@pytest.mark.parametrize("backend", BACKENDS)
def test_traced_gaussian_process_likelihood(backend):
    rng = np.random.default_rng(8)
    x = np.sort(rng.uniform(0, 5, 12))
    y = np.sin(x) + 0.1 * rng.normal(size=12)
    p = np.array([0.1, -0.2, -2.0])
    vg = sg.value_and_grad(gp_negative_log_likelihood, backend=backend)
    value, grad = vg(p, x, y)
    assert float(value) == pytest.approx(gp_negative_log_likelihood(p, x, y), rel=1e-12)
    numeric = _five_point(lambda q: gp_negative_log_likelihood(q, x, y), [p], 0)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-8)


def _traced_linalg(a, b):
    low = scipy.linalg.cholesky(a @ a.T + 3 * np.eye(3), lower=True)
    c, lower = scipy.linalg.cho_factor(a @ a.T + 3 * np.eye(3))
    w, v = np.linalg.eigh(a + a.T)
    u, s, vt = np.linalg.svd(a)
    q, r = np.linalg.qr(a)
    return (
        np.sum(scipy.linalg.solve_triangular(low, b, lower=True) ** 2)
        + np.sum(scipy.linalg.cho_solve((c, lower), b))
        + np.sum(np.linalg.solve(a, b) * np.linalg.inv(a)[0])
        + np.linalg.det(a)
        + np.sum(w**2)
        + np.sum(v**2 * b)
        + np.sum(s) * np.sum(u**2 @ vt**2)
        + np.sum(q**3)
        + np.sum(r**2)
        + scipy.linalg.det(a)
        + np.sum(scipy.linalg.inv(a))
        + np.sum(scipy.linalg.solve(a, b))
        + np.linalg.norm(a, "nuc")
        + np.linalg.norm(b, 3)
        + np.linalg.norm(a, 2)
        + scipy.linalg.norm(b, 4)
        + np.sum(scipy.linalg.eigh(a + a.T, eigvals_only=True))
        + np.sum(scipy.linalg.svd(a, compute_uv=False))
        + np.sum(scipy.linalg.qr(a)[1])
        + np.linalg.slogdet(a)[1] * np.linalg.slogdet(a)[0]
        + np.sum(np.linalg.eigvalsh(a @ a.T))
    )


def test_np_linalg_and_scipy_linalg_trace_to_the_ops():
    rng = np.random.default_rng(9)
    a, b = _well(rng, 3), rng.normal(size=3)
    vg = sg.value_and_grad(_traced_linalg, argnums=(0, 1), backend="numpy")
    value, (ga, gb) = vg(a, b)
    assert float(value) == pytest.approx(_traced_linalg(a, b), rel=1e-12)
    np.testing.assert_allclose(ga, _five_point(_traced_linalg, [a, b], 0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gb, _five_point(_traced_linalg, [a, b], 1), rtol=1e-6, atol=1e-6)
    # outside a trace scipy.linalg is scipy's own again
    assert scipy.linalg.cho_solve.__module__.startswith("scipy")


def test_jax_agrees_when_importable():
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import jax.scipy.linalg as jsl

    rng = np.random.default_rng(10)
    a, b = _well(rng, 4), rng.normal(size=4)

    def loss(xp, sl, a, b):
        s = a @ a.T + 4 * xp.eye(4)
        low = xp.linalg.cholesky(s)
        w, v = xp.linalg.eigh(s)
        return (
            xp.linalg.slogdet(a)[1]
            + xp.sum(sl.cho_solve((low, True), b) ** 2)
            + xp.sum(sl.solve_triangular(a, b, lower=True) ** 2)
            + xp.sum(w**0.5)
            + xp.sum(v**2 * b)
            + xp.sum(xp.linalg.svd(a, compute_uv=False))
            + xp.sum(xp.linalg.qr(a)[1] ** 2)
            + xp.linalg.det(a)
            + xp.sum(xp.linalg.inv(a) @ b)
        )

    value, (ga, gb) = sg.value_and_grad(lambda a, b: loss(np, scipy.linalg, a, b), argnums=(0, 1))(a, b)
    jv, (jga, jgb) = jax.value_and_grad(lambda a, b: loss(jnp, jsl, a, b), argnums=(0, 1))(a, b)
    assert float(value) == pytest.approx(float(jv), rel=1e-12)
    np.testing.assert_allclose(ga, np.asarray(jga), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(gb, np.asarray(jgb), rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "build, error, message",
    [
        (
            lambda: LA.solve(sg.tensor("a", (3, 4)), sg.tensor("b", (3,))),
            ShapeError,
            r"np.linalg.solve of shape \(3, 4\): the matrix must be square \(3 != 4\)",
        ),
        (
            lambda: LA.solve(sg.tensor("a", (3, 3)), sg.tensor("b", (4, 2))),
            ShapeError,
            r"np.linalg.solve of shapes \(3, 3\) and \(4, 2\): the right-hand side has 4 rows, the matrix 3",
        ),
        (
            lambda: LA.solve(sg.tensor("a", (3, 3)), sg.scalar("s")),
            ShapeError,
            r"the right-hand side must be a vector or a matrix",
        ),
        (
            lambda: LA.inv(sg.tensor("a", (3,))),
            ShapeError,
            r"np.linalg.inv of shape \(3,\): the operand must be a 2-D matrix",
        ),
        (
            lambda: LA.det(sg.tensor("a", ("b", 3, 3))),
            UnsupportedError,
            r"np.linalg.det of shape \(b, 3, 3\): a stack of matrices needs leading dimensions of "
            r"concrete size, not \(b,\)",
        ),
        (
            lambda: LA.solve(sg.tensor("a", (2, 3, 3)), sg.tensor("b", (4, 3, 1))),
            ShapeError,
            r"np.linalg.solve of shapes \(2, 3, 3\), \(4, 3, 1\): the stacks' leading dimensions differ",
        ),
        (
            lambda: LA.inv(sg.tensor("a", (0, 3, 3))),
            UnsupportedError,
            r"np.linalg.inv of shape \(0, 3, 3\): an empty stack",
        ),
        (
            lambda: LA.cholesky(sg.tensor("a", (2, 3, 4))),
            ShapeError,
            r"np.linalg.cholesky of shape \(3, 4\): the matrix must be square",
        ),
        (
            lambda: LA.cholesky(sg.tensor("a", ("n", "m"))),
            ShapeError,
            r"np.linalg.cholesky of shape \(n, m\): the matrix must be square \(n != m\)",
        ),
        (lambda: LA.slogdet(sg.tensor("a", (2, 3))), ShapeError, r"np.linalg.slogdet of shape \(2, 3\)"),
        (lambda: LA.eigh(sg.tensor("a", (2, 3))), ShapeError, r"np.linalg.eigh of shape \(2, 3\)"),
        (lambda: LA.eigh(sg.tensor("a", (3, 3)), UPLO="U"), UnsupportedError, r"UPLO='U'"),
        (
            lambda: LA.svd(sg.tensor("a", ("n", 3))),
            UnsupportedError,
            r"np.linalg.svd of shape \(n, 3\): the number of singular values min\(n, 3\) must be known",
        ),
        (lambda: LA.svd(sg.tensor("a", (4, 3))), UnsupportedError, r"full_matrices=False"),
        (
            lambda: LA.qr(sg.tensor("a", (3, 4))),
            UnsupportedError,
            r"np.linalg.qr of shape \(3, 4\): only a matrix with at least as many rows as columns",
        ),
        (lambda: LA.qr(sg.tensor("a", (4, 3)), mode="complete"), UnsupportedError, r"mode='complete'"),
        (
            lambda: LA.solve_triangular(sg.tensor("a", (3, 3)), sg.tensor("b", (3,)), trans="X"),
            UnsupportedError,
            r"trans='X'",
        ),
        (lambda: LA.norm(sg.tensor("x", (3,)), "fro"), UnsupportedError, r"ord='fro'\) of a vector"),
        (lambda: LA.norm(sg.tensor("x", (3, 3)), 3), UnsupportedError, r"ord=3\) of a matrix"),
        (lambda: LA.norm(sg.tensor("x", (2, 3, 3)), 2), ShapeError, r"give axis"),
    ],
)
def test_bad_operands_are_refused_naming_the_function_and_shapes(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_pinv_traces_and_its_unsupported_forms_are_refused():
    a = np.random.default_rng(4).normal(size=(4, 3))
    vg = sg.value_and_grad(lambda a: np.sum(np.linalg.pinv(a, rcond=1e-10) ** 2), backend="numpy")
    value, g = vg(a)
    assert value == pytest.approx(np.sum(np.linalg.pinv(a) ** 2), rel=1e-12)
    assert sg.check_grad(vg.compiled_for(a), a) < 1e-6
    with pytest.raises(UnsupportedError, match=r"np.linalg.pinv\(..., hermitian=True\)"):
        sg.value_and_grad(lambda a: np.sum(np.linalg.pinv(a, hermitian=True)))(np.eye(3))
    with pytest.raises(UnsupportedError, match=r"rcond must be one number"):
        sg.value_and_grad(lambda a: np.sum(np.linalg.pinv(a, np.ones(3))))(np.eye(3))


def test_unsupported_scipy_forms_are_refused_when_traced():
    with pytest.raises(UnsupportedError, match=r"scipy.linalg.eigh\(a, b\)"):
        sg.value_and_grad(lambda a: np.sum(scipy.linalg.eigh(a, np.eye(3))[0]))(np.eye(3))
    with pytest.raises(UnsupportedError, match=r"scipy.linalg.qr\(..., mode='full'\) of shape \(4, 3\)"):
        sg.value_and_grad(lambda a: np.sum(scipy.linalg.qr(a)[1]))(np.ones((4, 3)))


def test_scipy_linalg_imported_by_name_is_refused_naming_it():
    # a name bound before tracing is scipy's own function: it converts its argument to numbers
    from scipy.linalg import cho_solve

    def loss(a, b):
        return np.sum(cho_solve((np.linalg.cholesky(a), True), b))

    with pytest.raises(
        UnsupportedError, match=r"scipy.linalg.cho_solve on a symbolic value.*sg.linalg.cho_solve"
    ):
        sg.value_and_grad(loss)(np.eye(3) * 2, np.ones(3))


# ---------------------------------------------------------------- stacks of matrices


def _stack_loss(A, b):
    S = A @ np.swapaxes(A, -1, -2)
    return (
        np.sum(np.linalg.solve(A, b) ** 2)
        + np.sum(np.linalg.solve(A, b[0, 0, :, 0]) ** 2)
        + np.sum(np.linalg.slogdet(S)[1])
        + np.sum(np.sin(np.linalg.inv(A)))
        + np.sum(np.linalg.det(A))
        + np.sum(np.linalg.cholesky(S))
        + np.sum(np.linalg.eigh(S)[0] ** 2)
        + np.sum(np.linalg.svd(A, compute_uv=False))
        + np.sum(np.linalg.qr(A)[1] ** 2)
        + np.sum(np.linalg.pinv(A) ** 2)
    )


def _small_stack_loss(A, b):
    return np.sum(np.linalg.solve(A, b) ** 2) + np.sum(np.linalg.slogdet(A)[1])


@pytest.mark.parametrize(
    ("backend", "loss", "lead"),
    [("numpy", _stack_loss, (2, 2)), pytest.param("numba", _small_stack_loss, (2,), marks=pytest.mark.slow)],
)
def test_stacks_of_matrices_match_numpy_and_central_differences(backend, loss, lead):
    rng = np.random.default_rng(5)
    A0 = rng.normal(size=lead + (3, 3)) + 3 * np.eye(3)
    b0 = rng.normal(size=lead + (3, 2))
    vg = sg.value_and_grad(loss, argnums=(0, 1), backend=backend)
    value, (dA, db) = vg(A0, b0)
    assert value == pytest.approx(loss(A0, b0), rel=1e-12)
    h = 1e-6
    for arg, grad in ((0, dA), (1, db)):
        for index in [(0,) * len(lead) + (0, 0), (1,) * len(lead) + (2, 1), (0,) * len(lead) + (1, 0)]:
            up, down = [A0.copy(), b0.copy()], [A0.copy(), b0.copy()]
            up[arg][index] += h
            down[arg][index] -= h
            numeric = (loss(*up) - loss(*down)) / (2 * h)
            assert grad[index] == pytest.approx(numeric, rel=1e-5, abs=1e-6)


def test_a_stack_with_a_shared_matrix_and_its_parts_keep_numpys_shapes():
    rng = np.random.default_rng(6)
    A = sg.tensor("A", (3, 3))
    B = sg.tensor("B", (4, 3, 2))
    S = sg.tensor("S", (2, 3, 3))
    outs = [LA.solve(A, B), *LA.eigh(S), *LA.slogdet(S), *LA.svd(S, full_matrices=False), LA.qr(S, mode="r")]
    f = sg.compile(outs, inputs=[A, B, S], backend="numpy")
    a0, b0 = rng.normal(size=(3, 3)) + 3 * np.eye(3), rng.normal(size=(4, 3, 2))
    s0 = rng.normal(size=(2, 3, 3))
    s0 = s0 @ np.swapaxes(s0, -1, -2) + np.eye(3)
    got = f(a0, b0, s0)
    want = [np.linalg.solve(a0, b0), *np.linalg.eigh(s0), *np.linalg.slogdet(s0)]
    for g, w in zip(got[:5], want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    u, sv, vt = np.linalg.svd(s0, full_matrices=False)
    np.testing.assert_allclose(got[6], sv, rtol=1e-12)
    assert got[5].shape == u.shape and got[7].shape == vt.shape and got[8].shape == (2, 3, 3)
