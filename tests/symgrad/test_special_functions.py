"""The special functions in use: scipy.special code traced into the ops (ndtr, log_ndtr, ndtri,
erfcinv, logit, i0e, i1e, betaln, xlog1py; logsumexp with b= and keepdims, softmax and
log_softmax with tuple axes), in probit, Poisson, negative-binomial and Student-t losses, against
SciPy's values and central differences of SciPy-written code (and mpmath in the far tail)."""

import mpmath
import numpy as np
import pytest
import scipy.special as sp
import scipy.stats

import symgrad as sg

BACKENDS = ["numpy", "numba"]


def _central(f, args, argnum, h=1e-6):
    """d f / d args[argnum] by central differences (relative step)."""
    x = np.asarray(args[argnum], dtype=np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = h * max(1.0, abs(float(x[i])))
        up, down = x.copy(), x.copy()
        up[i] += step
        down[i] -= step
        hi = list(args)
        lo = list(args)
        hi[argnum], lo[argnum] = up, down
        g[i] = (f(*hi) - f(*lo)) / (2 * step)
    return g


def _check(loss, args, backend, argnums=0, rtol=1e-6):
    """The traced loss's value (SciPy's, to 1e-12) and gradients (central differences)."""
    vg = sg.value_and_grad(loss, argnums, backend=backend)
    value, grads = vg(*args)
    assert value == pytest.approx(loss(*args), rel=1e-12, abs=1e-12)
    nums = argnums if isinstance(argnums, tuple) else (argnums,)
    grads = grads if isinstance(argnums, tuple) else (grads,)
    for k, g in zip(nums, grads):
        want = _central(loss, args, k)
        np.testing.assert_allclose(g, want, rtol=rtol, atol=rtol * max(1.0, np.max(np.abs(want))))
    return vg


# ---------------------------------------------------------------- each function, traced


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "loss",
    [
        lambda x: np.sum(sp.ndtr(x) ** 2),
        lambda x: np.sum(sp.log_ndtr(3 * x)),
        lambda x: np.sum(sp.ndtri(sp.expit(x)) * x),
        lambda x: np.sum(sp.erfcinv(2 * sp.expit(x)) ** 3),
        lambda x: np.sum(sp.logit(0.5 + 0.4 * np.tanh(x)) ** 2),
        lambda x: np.sum(sp.i0e(x) + sp.i1e(x) * x),
        lambda x: np.sum(sp.betaln(x**2 + 0.5, np.exp(x))),
        lambda x: np.sum(sp.xlog1py(x, x**2)),
    ],
    ids=["ndtr", "log_ndtr", "ndtri", "erfcinv", "logit", "i0e-i1e", "betaln", "xlog1py"],
)
def test_scipy_special_function_traces_with_its_gradient(loss, backend):
    x = np.random.default_rng(4).normal(size=(4, 3))
    x[np.abs(x) < 0.05] = 0.3  # off i0e's kink at 0
    _check(loss, [x], backend)


def test_the_traced_functions_are_the_ops_not_composites():
    x = sg.tensor("x", (3,))
    for name in "ndtr log_ndtr ndtri erfcinv logit i0e i1e".split():
        assert getattr(sp, name)(x).op == name
    assert sp.expit(x).op == "sigmoid"
    assert sp.betaln(x, x).op == "betaln" and sp.xlog1py(x, x).op == "xlog1py"


@pytest.mark.parametrize("backend", BACKENDS)
def test_i1e_derivative_at_zero_is_its_limit_one_half(backend):
    x = sg.tensor("x", (3,))
    f = sg.compile(
        [sg.grad(sg.sum(sg.i1e(x)), x), sg.grad(sg.sum(sg.i0e(x)), x)], inputs=[x], backend=backend
    )
    d1, d0 = f(np.array([0.0, -0.0, 1e-300]))
    np.testing.assert_allclose(d1, [0.5, 0.5, 0.5], rtol=1e-15)
    np.testing.assert_allclose(d0, [sp.i1e(0.0) - 0.0, 0.0, sp.i1e(1e-300) - sp.i0e(1e-300)], atol=1e-15)


# ---------------------------------------------------------------- log_ndtr far in the left tail


@pytest.mark.parametrize("backend", BACKENDS)
def test_log_ndtr_value_and_first_two_derivatives_far_in_the_left_tail(backend):
    # log(ndtr(x)) is -inf below -38.5; log_ndtr stays accurate, and so do its derivative phi/Phi
    # (from log_ndtr's series below -20) and the second, -phi/Phi (x + phi/Phi), whose two terms cancel
    x = sg.scalar("x")
    d1 = sg.grad(sg.log_ndtr(x), x)
    f = sg.compile([sg.log_ndtr(x), d1, sg.grad(d1, x)], inputs=[x], backend=backend)
    for point in [-40.0, -100.0, -1e3, -5.0, 0.0, 5.0, 30.0]:
        with mpmath.workdps(50):
            t = mpmath.mpf(point)
            logcdf = mpmath.log(mpmath.ncdf(t)) if t < 0 else mpmath.log1p(-mpmath.ncdf(-t))
            mills = mpmath.npdf(t) / mpmath.ncdf(t)
            second = -mills * (t + mills)
        value, first, curvature = f(point)
        # numba: our kernel, 2 ulp; numpy: SciPy's log_ndtr, ~30 ulp off in the right tail
        assert value == pytest.approx(float(logcdf), rel=4e-16 if backend == "numba" else 1e-13, abs=1e-300)
        assert first == pytest.approx(float(mills), rel=1e-13, abs=1e-300)
        assert curvature == pytest.approx(float(second), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_probit_log_likelihood_traced_matches_central_differences_also_in_the_far_tail(backend):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3))
    y = (rng.uniform(size=40) < 0.5).astype(float)

    def nll(w, X, y):
        eta = X @ w
        return -np.sum(y * sp.log_ndtr(eta) + (1 - y) * sp.log_ndtr(-eta))

    _check(nll, [rng.normal(size=3), X, y], backend)
    # separated data: margins of -40 (log(ndtr) would be -inf, its gradient nan)
    w = np.array([20.0, 0.0, 0.0])
    Xs = np.array([[2.0, 0.1, 0.3], [-2.0, 0.2, -0.1], [1.5, -0.3, 0.2]])
    ys = np.array([0.0, 1.0, 1.0])
    value, grad = sg.value_and_grad(nll, backend=backend)(w, Xs, ys)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    with mpmath.workdps(40):
        eta = [mpmath.mpf(float(v)) for v in Xs @ w]
        want_value = -sum(
            (yi * mpmath.log(mpmath.ncdf(e)) + (1 - yi) * mpmath.log(mpmath.ncdf(-e)))
            for yi, e in zip(ys, eta)
        )
        dl = [
            -(yi * mpmath.npdf(e) / mpmath.ncdf(e) - (1 - yi) * mpmath.npdf(e) / mpmath.ncdf(-e))
            for yi, e in zip(ys, eta)
        ]
        want_grad = [float(sum(d * float(Xs[i, j]) for i, d in enumerate(dl))) for j in range(3)]
    assert value == pytest.approx(float(want_value), rel=1e-14)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12)


# ---------------------------------------------------------------- count and heavy-tailed models


@pytest.mark.parametrize("backend", BACKENDS)
def test_poisson_and_negative_binomial_losses_match_scipy_stats_and_central_differences(backend):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 2)) * 0.5
    counts = rng.poisson(3.0, size=30).astype(float)

    def poisson_nll(w, X, k):
        eta = X @ w
        return np.sum(np.exp(eta) - sp.xlogy(k, np.exp(eta)) + sp.gammaln(k + 1))

    w = np.array([0.3, -0.2])
    _check(poisson_nll, [w, X, counts], backend)
    assert poisson_nll(w, X, counts) == pytest.approx(
        -scipy.stats.poisson.logpmf(counts, np.exp(X @ w)).sum()
    )

    def negbin_nll(params, X, k):  # mean mu = exp(X w), dispersion r = exp(params[-1])
        w, r = params[:-1], np.exp(params[-1])
        mu = np.exp(X @ w)
        p = r / (r + mu)
        return -np.sum(-sp.betaln(r, k + 1) - np.log(k + r) + sp.xlogy(r, p) + sp.xlog1py(k, -p))

    params = np.array([0.3, -0.2, np.log(2.5)])
    want = -scipy.stats.nbinom.logpmf(counts, 2.5, 2.5 / (2.5 + np.exp(X @ params[:2]))).sum()
    assert negbin_nll(params, X, counts) == pytest.approx(want, rel=1e-12)
    _check(negbin_nll, [params, X, counts], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_student_t_log_likelihood_with_betaln_matches_scipy_stats(backend):
    rng = np.random.default_rng(3)
    data = scipy.stats.t.rvs(4.0, loc=1.0, scale=2.0, size=50, random_state=rng)

    def t_nll(theta, x):  # location, log scale, log degrees of freedom
        loc, scale, nu = theta[0], np.exp(theta[1]), np.exp(theta[2])
        z = (x - loc) / scale
        logpdf = (
            -0.5 * np.log(nu) - sp.betaln(0.5, nu / 2) - np.log(scale) - (nu + 1) / 2 * np.log1p(z**2 / nu)
        )
        return -np.sum(logpdf)

    theta = np.array([0.8, np.log(1.7), np.log(5.0)])
    assert t_nll(theta, data) == pytest.approx(-scipy.stats.t.logpdf(data, 5.0, 0.8, 1.7).sum(), rel=1e-12)
    _check(t_nll, [theta, data], backend)


# ---------------------------------------------------------------- logsumexp with b=, softmax with tuple axes


_B_CASES = {
    "array": dict(b=np.array([[0.5, 2.0, 1.0]] * 4)),
    "scalar-axis1": dict(b=2.0, axis=1),
    "broadcast-row-tuple-keepdims": dict(b=np.array([0.3, 0.0, 1.5]), axis=(0, 1), keepdims=True),
    "zeros-axis0": dict(
        b=np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 1.0], [3.0, 1.0, 0.0], [1.0, 1.0, 1.0]]), axis=0
    ),
    "signed-positive-sum": dict(b=np.array([1.0, -0.02, 0.5]), axis=1),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(_B_CASES))
def test_scipy_logsumexp_with_weights_traces(case, backend):
    kwargs = _B_CASES[case]
    x = np.random.default_rng(5).normal(size=(4, 3))
    x[:, 1] += 3.0  # the largest entries where some b are 0: the shift leaves them out

    def loss(x):
        return np.sum(
            sp.logsumexp(x, **kwargs)
            * np.arange(1.0, 1.0 + np.size(sp.logsumexp(x, **kwargs))).reshape(
                np.shape(sp.logsumexp(x, **kwargs))
            )
        )

    _check(loss, [x], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_logsumexp_weights_as_an_input_and_the_edges_as_scipy(backend):
    x = np.random.default_rng(6).normal(size=(3, 4))
    b = np.random.default_rng(7).uniform(0.1, 2.0, size=(3, 4))

    def loss(x, b):
        return np.sum(sp.logsumexp(x, axis=1, b=b) ** 2)

    _check(loss, [x, b], backend, argnums=(0, 1))
    # a negative weighted sum is nan (SciPy's value without return_sign), all-zero weights -inf,
    # b == 0 beside an infinite entry leaves it out
    xs = np.array([[0.0, 1.0], [0.5, 0.2], [np.inf, 1.0]])
    bs = np.array([[1.0, -2.0], [0.0, 0.0], [0.0, 1.0]])
    a, w = sg.tensor("a", (3, 2)), sg.tensor("w", (3, 2))
    got = sg.compile(sg.logsumexp(a, axis=1, b=w), inputs=[a, w], backend=backend)(xs, bs)
    with np.errstate(all="ignore"):
        want = sp.logsumexp(xs, axis=1, b=bs)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[0]) and got[1] == -np.inf and got[2] == 1.0


def test_logsumexp_return_sign_and_bad_weights_are_refused_with_the_reason():
    with pytest.raises(
        sg.UnsupportedError, match=r"logsumexp\(\.\.\., return_sign=True\) on a symbolic value"
    ):
        sg.value_and_grad(lambda x: sp.logsumexp(x, return_sign=True)[0], backend="numpy")(np.ones(3))
    with pytest.raises(sg.ShapeError, match=r"logsumexp\(a, b=\.\.\.\): a and b"):
        sg.logsumexp(sg.tensor("x", (3,)), b=np.ones(4))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis", [(0, 1), (0, 2), (-1, 0), None, 1])
def test_softmax_and_log_softmax_over_tuple_axes_trace(axis, backend):
    x = np.random.default_rng(8).normal(size=(2, 3, 4))
    weight = np.random.default_rng(9).normal(size=(2, 3, 4))

    def loss(x):
        return np.sum(sp.softmax(x, axis=axis) * weight) + np.sum(sp.log_softmax(x, axis=axis) * weight**2)

    _check(loss, [x], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_operand_special_functions_promote_mixed_float_dtypes_as_numpy(backend):
    a, b = sg.tensor("a", (3,), "float32"), sg.tensor("b", (3,))
    av, bv = np.array([0.5, 2.0, 7.0], dtype=np.float32), np.array([3.0, 0.25, 1e7])
    for name in ["betaln", "xlog1py"]:
        mixed = sg.compile(getattr(sg, name)(a, b), inputs=[a, b], backend=backend)(av, bv)
        assert mixed.dtype == np.float64
        np.testing.assert_allclose(mixed, getattr(sp, name)(av.astype(np.float64), bv), rtol=1e-14)
        single = sg.compile(getattr(sg, name)(a, a), inputs=[a], backend=backend)(av)
        assert single.dtype == np.float32
