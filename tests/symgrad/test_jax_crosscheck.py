"""symgrad's gradients against ``jax.grad`` of the same function, when JAX is importable.

The array functions, contractions and decompositions have their own JAX comparisons
(test_array_functions.py, test_contract.py, test_linalg_decomp.py); this file covers what those
do not: the special functions, pinv, and the functions taken from a Cholesky factor
(symgrad/ops/linalg.py share_factor), each written once as numpy/SciPy code (``xp``, ``sp`` the
modules), traced by symgrad and run by JAX with x64 enabled. numpy backend: the lowerings are
tested elsewhere; this is about the derivative rules.
"""

import numpy as np
import pytest
import scipy.linalg
import scipy.special

import symgrad as sg

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy
jsp = pytest.importorskip("jax.scipy.special")
jsl = pytest.importorskip("jax.scipy.linalg")

MODULES = {"symgrad": (np, scipy.special, scipy.linalg), "jax": (jnp, jsp, jsl)}


def _positive(rng, shape):
    return rng.uniform(0.3, 3.0, shape)


def _unit(rng, shape):
    return rng.uniform(0.05, 0.95, shape)


def _signed(rng, shape):
    return rng.uniform(-2.0, 2.0, shape)


def _spd(rng, n):
    x = rng.normal(size=(n, n))
    return x @ x.T + n * np.eye(n)


# name -> (f(xp, sp, sl, *arrays) -> array, array makers)
CASES = {
    "gammaln": (lambda xp, sp, sl, x: sp.gammaln(x), [_positive]),
    "digamma": (lambda xp, sp, sl, x: sp.digamma(x), [_positive]),
    "polygamma": (lambda xp, sp, sl, x: sp.polygamma(1, x), [_positive]),
    "betaln": (lambda xp, sp, sl, x, y: sp.betaln(x, y), [_positive, _positive]),
    "erfinv": (lambda xp, sp, sl, x: sp.erfinv(x - 0.5), [_unit]),
    "ndtr": (lambda xp, sp, sl, x: sp.ndtr(x), [_signed]),
    "ndtri": (lambda xp, sp, sl, x: sp.ndtri(x), [_unit]),
    "log_ndtr": (lambda xp, sp, sl, x: sp.log_ndtr(3 * x), [_signed]),
    "xlogy": (lambda xp, sp, sl, x, y: sp.xlogy(x, y), [_signed, _positive]),
    "xlog1py": (lambda xp, sp, sl, x, y: sp.xlog1py(x, y), [_signed, _positive]),
    "logit": (lambda xp, sp, sl, x: sp.logit(x), [_unit]),
    "i0e": (lambda xp, sp, sl, x: sp.i0e(x), [_signed]),
    "i1e": (lambda xp, sp, sl, x: sp.i1e(x), [_signed]),
    "logsumexp_b": (lambda xp, sp, sl, x, b: sp.logsumexp(x, axis=1, b=b), [_signed, _positive]),
    "softmax": (lambda xp, sp, sl, x: sp.softmax(x, axis=0), [_signed]),
    "log_softmax": (lambda xp, sp, sl, x: sp.log_softmax(x, axis=-1), [_signed]),
    "poisson_glm": (
        lambda xp, sp, sl, w, y: xp.sum(xp.exp(w) - y * w + sp.gammaln(y + 1.0)),
        [_signed, _positive],
    ),
    "pinv_tall": (lambda xp, sp, sl, a: xp.linalg.pinv(a), [lambda r, s: r.normal(size=(5, 3))]),
    "pinv_wide": (lambda xp, sp, sl, a: xp.linalg.pinv(a), [lambda r, s: r.normal(size=(3, 5))]),
    "norm_nuc": (lambda xp, sp, sl, a: xp.linalg.norm(a, "nuc"), [lambda r, s: r.normal(size=(4, 3))]),
    "factored_logdet_and_solve": (
        lambda xp, sp, sl, x, b: (
            xp.linalg.slogdet(x @ x.T + 4.0 * xp.eye(4))[1]
            + xp.sum(sl.cho_solve((xp.linalg.cholesky(x @ x.T + 4.0 * xp.eye(4)), True), b) * b)
            + xp.sum(xp.linalg.inv(x @ x.T + 4.0 * xp.eye(4)))
        ),
        [lambda r, s: r.normal(size=(4, 4)), lambda r, s: r.normal(size=4)],
    ),
    "gp_likelihood": (
        lambda xp, sp, sl, logp, x, y: _gp(xp, sl, logp, x, y),
        [
            lambda r, s: np.array([0.2, -0.1, -1.0]),
            lambda r, s: np.sort(r.uniform(0, 5, 10)),
            lambda r, s: r.normal(size=10),
        ],
    ),
}


def _gp(xp, sl, logp, x, y):
    p = xp.exp(logp)
    k = p[0] * xp.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / p[1] ** 2) + (p[2] + 1e-6) * xp.eye(x.shape[0])
    low = xp.linalg.cholesky(k)
    return 0.5 * xp.sum(y * sl.cho_solve((low, True), y)) + 0.5 * xp.linalg.slogdet(k)[1]


def _arrays(name):
    _, makers = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    shape = (3, 4)
    return [m(rng, shape) for m in makers]


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_jax(name):
    fn, _ = CASES[name]
    arrays = _arrays(name)
    out = np.asarray(fn(*MODULES["symgrad"][:3], *[np.asarray(a) for a in arrays]))
    weight = np.random.default_rng(0).uniform(0.5, 1.5, out.shape)
    argnums = tuple(range(len(arrays)))

    def loss(modules):
        xp = modules[0]
        return lambda *a: xp.sum(fn(*modules, *a) * weight)

    value, grads = sg.value_and_grad(loss(MODULES["symgrad"]), argnums=argnums, backend="numpy")(*arrays)
    jvalue, jgrads = jax.value_and_grad(loss(MODULES["jax"]), argnums=argnums)(*map(jnp.asarray, arrays))
    assert float(value) == pytest.approx(float(jvalue), rel=1e-10)
    for k, (g, jg) in enumerate(zip(grads, jgrads)):
        np.testing.assert_allclose(g, np.asarray(jg), rtol=1e-8, atol=1e-10, err_msg=f"{name}: argument {k}")


@pytest.mark.slow  # (jax.hessian and symgrad's Hessian build: half of this file's time)
def test_gp_likelihood_hessian_matches_jax():
    arrays = _arrays("gp_likelihood")
    logp, rest = arrays[0], arrays[1:]

    def loss(xp, sl):
        return lambda p: _gp(xp, sl, p, *[xp.asarray(a) for a in rest])

    h = sg.hessian(loss(np, scipy.linalg), backend="numpy")(logp)
    jh = jax.hessian(loss(jnp, jsl))(jnp.asarray(logp))
    np.testing.assert_allclose(h, np.asarray(jh), rtol=1e-7, atol=1e-9)
