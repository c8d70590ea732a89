"""The special-function kernels (symgrad.codegen.special) against SciPy and mpmath.

Each is called as numba code calls it (an njit loop over the elements, through the overload
of erfinv/gammaln/digamma/polygamma) on ~10^5 points: log-spaced, uniform and near the edges;
errors are in units in the last place of the reference, with SciPy's own known looseness
(near the zeros of gammaln and of digamma on the negative axis) allowed for by a tolerance
relative to the size of the terms that cancel there, and mpmath as the independent truth."""

import math
import subprocess
import sys

import mpmath
import numba
import numpy as np
import pytest
import scipy.special as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from symgrad.codegen import special

EPS = np.finfo(np.float64).eps
TINY = np.finfo(np.float64).tiny


@numba.njit
def _erfinv_loop(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = special.erfinv(x[i])
    return out


@numba.njit
def _gammaln_loop(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = special.gammaln(x[i])
    return out


@numba.njit
def _digamma_loop(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = special.digamma(x[i])
    return out


@numba.njit
def _polygamma_loop(n, x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = special.polygamma(n, x[i])
    return out


@numba.njit
def _on_arrays(x):
    return special.erfinv(x), special.gammaln(x), special.digamma(x), special.polygamma(2, x)


def _ulps(got, want):
    """|got - want| in ulps of want; equal values (also infinities, and nan with nan) are 0."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    with np.errstate(invalid="ignore"):
        d = np.abs(got - want) / np.spacing(np.maximum(np.abs(want), TINY))
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    return np.where(same, 0.0, d)


def _sp_polygamma(n, x):
    """SciPy's polygamma, without the warnings of its float arithmetic at the poles."""
    with np.errstate(all="ignore"):
        return sp.polygamma(n, x)


def _mp(fn, xs):
    """fn (an mpmath function) at each float64 of xs, to 30 digits, rounded to float64."""
    with mpmath.workdps(30):
        return np.array([float(fn(mpmath.mpf(float(v)))) for v in xs])


def _within(got, want, tolerance):
    """|got - want| <= tolerance elementwise, equal values (infinities, nan with nan) passing."""
    with np.errstate(invalid="ignore"):
        ok = (np.abs(got - want) <= tolerance) | (got == want) | (np.isnan(got) & np.isnan(want))
    bad = ~ok
    assert not bad.any(), (
        f"{bad.sum()} points, e.g. x-index {np.flatnonzero(bad)[:5]}: {got[bad][:5]} vs {want[bad][:5]}"
    )


def _same(got, want):
    """Equal as IEEE values: nan with nan, and zeros and infinities with their signs."""
    got, want = np.float64(got), np.float64(want)
    if np.isnan(want):
        return bool(np.isnan(got))
    return bool(got == want and np.signbit(got) == np.signbit(want))


_RNG = np.random.default_rng(18)
_POS = np.concatenate(
    [np.logspace(-300, 300, 30_000), _RNG.uniform(0, 20, 30_000), _RNG.uniform(1.2, 1.8, 10_000)]
)
_NEG = -np.concatenate([np.logspace(-300, 15, 10_000), _RNG.uniform(0, 40, 20_000)])
_NEG = _NEG[_NEG != np.floor(_NEG)]  # the poles are tested on their own


# ---------------------------------------------------------------- erfinv


def test_erfinv_within_4_ulp_of_scipy_over_the_domain():
    x = np.concatenate(
        [
            _RNG.uniform(-1, 1, 60_000),
            1 - np.logspace(-16, -0.3, 15_000),  # toward +1 (the last point 1 - 1.1e-16)
            -1 + np.logspace(-16, -0.3, 15_000),
            np.logspace(-323, -0.3, 10_000) * _RNG.choice([-1, 1], 10_000),  # subnormal up
        ]
    )
    got = _erfinv_loop(x)
    assert _ulps(got, sp.erfinv(x)).max() <= 4


def test_erfinv_within_2_ulp_of_mpmath():
    x = np.concatenate([_RNG.uniform(-1, 1, 150), 1 - np.logspace(-16, -1, 100), np.logspace(-300, -1, 50)])
    want = _mp(mpmath.erfinv, x)
    assert _ulps(_erfinv_loop(x), want).max() <= 2


@pytest.mark.parametrize(
    "x, want",
    [
        (1.0, math.inf),
        (-1.0, -math.inf),
        (0.0, 0.0),
        (-0.0, -0.0),  # SciPy gives +0.0; erfinv is odd
        (1.0000000000000002, math.nan),
        (-1.5, math.nan),
        (math.inf, math.nan),
        (-math.inf, math.nan),
        (math.nan, math.nan),
        (5e-324, 5e-324),
        (-5e-324, -5e-324),
        (1e-310, sp.erfinv(1e-310)),
    ],
)
def test_erfinv_special_values(x, want):
    assert _same(_erfinv_loop(np.array([x]))[0], want)


# ---------------------------------------------------------------- gammaln


def _gammaln_tolerance(x, want):
    """4 ulp, and SciPy's error where gammaln cancels: near its zeros at 1 and 2 an absolute
    eps, and for x < 0 (its reflection) a few eps of the terms log|pi / sin(pi x)| and
    gammaln(1 - x)."""
    with np.errstate(all="ignore"):
        terms = np.where(
            x < 0, np.abs(np.log(np.abs(np.pi / np.sin(np.pi * x)))) + np.abs(sp.gammaln(1 - x)), 1.0
        )
    return 4 * np.spacing(np.maximum(np.abs(want), TINY)) + 4 * EPS * terms


def test_gammaln_agrees_with_scipy():
    x = np.concatenate([_POS[_POS > 1e-300], _NEG])
    want = sp.gammaln(x)
    got = _gammaln_loop(x)
    _within(got, want, _gammaln_tolerance(x, want))


def test_gammaln_within_4_ulp_of_mpmath_where_scipy_is_loose():
    x = np.concatenate([_RNG.uniform(0.9, 2.1, 100), -_RNG.uniform(2, 4, 100), _RNG.uniform(0, 200, 100)])
    want = _mp(lambda v: mpmath.re(mpmath.loggamma(v)), x)
    assert _ulps(_gammaln_loop(x), want).max() <= 4


@pytest.mark.parametrize(
    "x, want",
    [
        (0.0, math.inf),
        (-0.0, math.inf),
        (-1.0, math.inf),
        (-2.0, math.inf),
        (-1e300, math.inf),  # an integer: a pole
        (-math.inf, -math.inf),  # SciPy's value: |Γ| -> 0 between the poles
        (math.inf, math.inf),
        (math.nan, math.nan),
        (1.0, 0.0),
        (2.0, 0.0),
        (1e308, sp.gammaln(1e308)),
        (2.6e305, math.inf),
    ],
)
def test_gammaln_special_values(x, want):
    assert _same(_gammaln_loop(np.array([x]))[0], want)
    assert _same(sp.gammaln(x), want)


def test_gammaln_of_subnormals_is_minus_log_x_where_scipy_overflows():
    # SciPy returns inf once 1/x overflows (x < 5.6e-309); log|Γ(x)| = -log(x) - γx + ... is finite
    x = np.array([5e-324, -5e-324, 1e-310, 2e-308])
    assert np.all(_ulps(_gammaln_loop(x), -np.log(np.abs(x))) <= 1)


# ---------------------------------------------------------------- digamma


def test_digamma_within_4_ulp_of_scipy_for_positive_x():
    assert _ulps(_digamma_loop(_POS), sp.digamma(_POS)).max() <= 4


def test_digamma_near_its_positive_zero_keeps_relative_accuracy():
    x0 = 1.4616321449683622
    x = x0 + np.linspace(-1e-3, 1e-3, 20_001)
    want = _mp(mpmath.digamma, x[::100])
    assert _ulps(_digamma_loop(x[::100]), want).max() <= 3
    assert _ulps(_digamma_loop(x), sp.digamma(x)).max() <= 4


def _digamma_terms(x):
    """The size of the terms of the reflection psi(1 - x) - pi cot(pi x), which cancel near
    the zeros of digamma on the negative axis."""
    with np.errstate(all="ignore"):
        return np.abs(sp.digamma(1 - x)) + np.abs(np.pi / np.tan(np.pi * x))


def test_digamma_for_negative_x_to_the_size_of_its_reflection_terms():
    # SciPy itself is up to ~1200 ulp off near the poles (-28.99985: mpmath agrees with ours)
    want = sp.digamma(_NEG)
    got = _digamma_loop(_NEG)
    _within(got, want, 4 * np.spacing(np.abs(want)) + 2e-12 * _digamma_terms(_NEG))
    # mpmath: the worst against SciPy and a sample
    with np.errstate(invalid="ignore"):
        worst = np.argsort(np.abs(got - want) / _digamma_terms(_NEG))[-150:]
    x = np.concatenate([_NEG[worst], _RNG.choice(_NEG, 250)])
    truth = _mp(mpmath.digamma, x)
    _within(_digamma_loop(x), truth, 4 * np.spacing(np.abs(truth)) + 4 * EPS * _digamma_terms(x))


def test_digamma_within_3_ulp_of_mpmath():
    x = np.concatenate([_RNG.uniform(0, 12, 300), np.logspace(-300, 300, 100)])
    want = _mp(mpmath.digamma, x)
    assert _ulps(_digamma_loop(x), want).max() <= 3


@pytest.mark.parametrize(
    "x, want",
    [
        (0.0, -math.inf),
        (-0.0, math.inf),
        (-1.0, math.nan),
        (-7.0, math.nan),
        (-1e300, math.nan),
        (-math.inf, math.nan),
        (math.inf, math.inf),
        (math.nan, math.nan),
        (5e-324, -math.inf),
        (-5e-324, math.inf),
        (1e-310, -math.inf),
        (1.0, -np.euler_gamma),
        (1e308, sp.digamma(1e308)),
    ],
)
def test_digamma_special_values(x, want):
    assert _same(_digamma_loop(np.array([x]))[0], want)
    assert _same(sp.digamma(x), want)


# ---------------------------------------------------------------- polygamma


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_polygamma_agrees_with_scipy_for_x_in_0_100(n):
    x = np.concatenate([np.logspace(-20, 2, 3_000), _RNG.uniform(0, 100, 5_000)])
    want = _sp_polygamma(n, x)
    rel = np.abs(_polygamma_loop(n, x) / want - 1)
    assert rel.max() <= 1e-13


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_polygamma_for_negative_x_by_reflection(n):
    x = _NEG[_NEG > -100]
    want = _sp_polygamma(n, x)
    got = _polygamma_loop(n, x)
    # SciPy sums the shift terms up from x: near the zeros of the even orders (x about -k - 1/2)
    # its relative error grows to ~3e-12, where ours stays at 1e-15 (mpmath, below)
    _within(got, want, 1e-11 * np.abs(want))
    with np.errstate(invalid="ignore"):
        worst = np.argsort(np.abs(got / want - 1))[-60:]
    near_zeros = -np.arange(1, 60) - 0.5 + _RNG.uniform(-1e-5, 1e-5, 59)
    x = np.concatenate([x[worst], near_zeros, _RNG.choice(x, 100)])
    truth = _mp(lambda v: mpmath.polygamma(n, v), x)
    _within(_polygamma_loop(n, x), truth, 1e-14 * np.abs(truth))


def test_polygamma_to_mpmath_beyond_the_reflection_table():
    # the order past the table of cot's derivatives sums the shift terms directly
    x = np.array([-0.7, -3.3, -10.2, 0.3, 7.5])
    n = special._COT_MAX + 2
    want = _mp(lambda v: mpmath.polygamma(n, v), x)
    assert np.abs(_polygamma_loop(n, x) / want - 1).max() <= 1e-12


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize(
    "x", [0.0, -0.0, -1.0, -2.0, -1e300, -math.inf, math.inf, math.nan, 5e-324, -5e-324, 1e-310, 1e308]
)
def test_polygamma_special_values_are_scipys(n, x):
    want = _sp_polygamma(n, x)
    assert _same(_polygamma_loop(n, np.array([x]))[0], want)


def test_polygamma_order_zero_is_digamma_and_a_bad_order_is_nan():
    x = np.array([0.3, 2.5, -1.5])
    assert np.array_equal(_polygamma_loop(0, x), _digamma_loop(x))
    assert np.all(np.isnan(_polygamma_loop(-1, x)))
    assert np.all(np.isnan(_polygamma_loop(1.5, x)))
    assert np.all(np.isnan(_sp_polygamma(-1, x))) and np.all(np.isnan(_sp_polygamma(1.5, x)))


# ---------------------------------------------------------------- float32, arrays, the numpy reference


def test_float32_in_float32_out_rounded_from_float64():
    x = np.linspace(-0.999, 0.999, 2001, dtype=np.float32)
    y = np.linspace(0.01, 30, 2001, dtype=np.float32)
    for loop, arg, ref in [
        (_erfinv_loop, x, sp.erfinv),
        (_gammaln_loop, y, sp.gammaln),
        (_digamma_loop, y, sp.digamma),
        (lambda v: _polygamma_loop(3, v), y, lambda v: _sp_polygamma(3, v)),
    ]:
        got = loop(arg)
        assert got.dtype == np.float32
        want = ref(arg.astype(np.float64)).astype(np.float32)
        assert _ulps(got, want).max() <= 1  # float32 ulps: the float64 values agree to a few ulp


def test_array_arguments_any_layout_in_numba_and_plain_python():
    x = np.linspace(0.05, 0.95, 24).reshape(4, 6)[:, ::2]  # not contiguous
    refs = [sp.erfinv, sp.gammaln, sp.digamma, lambda v: _sp_polygamma(2, v)]
    for k, (got, ref) in enumerate(zip(_on_arrays(x), refs)):
        assert got.shape == x.shape and got.dtype == x.dtype
        want = ref(x)
        # 4 ulp, and SciPy's gammaln near 1; polygamma to 1e-13
        _within(got, want, _gammaln_tolerance(x, want) if k < 3 else 1e-13 * np.abs(want))
    x32 = x.astype(np.float32)
    got32 = _on_arrays(x32)
    assert all(g.dtype == np.float32 for g in got32)
    # plain Python (the numpy backend's reference): SciPy, in the argument's dtype
    assert np.array_equal(special.erfinv(x), sp.erfinv(x))
    assert special.polygamma(2, x32).dtype == np.float32
    assert isinstance(special.polygamma(1, np.float32(2.0)), np.float32)
    assert special.polygamma(1, 2.0) == _sp_polygamma(1, 2.0)


# ---------------------------------------------------------------- hypothesis over the domains

_settings = settings(max_examples=200, deadline=None)


@_settings
@given(st.floats(-1.0, 1.0))
def test_erfinv_hypothesis(x):
    assert _ulps(_erfinv_loop(np.array([x])), sp.erfinv(x))[0] <= 4 or (x == 0 and np.signbit(x))


@_settings
@given(st.floats(-1e6, 1e300, allow_nan=False))
def test_gammaln_and_digamma_hypothesis(x):
    a = np.array([x])
    want = sp.gammaln(a)
    if abs(x) > 5.6e-309:  # below, SciPy's gammaln overflows (see the subnormal test)
        _within(_gammaln_loop(a), want, _gammaln_tolerance(a, want))
    want = sp.digamma(a)
    if x > 0 or x == 0 or x == math.floor(x):
        assert _ulps(_digamma_loop(a), want)[0] <= 4
    else:
        # against mpmath: near the poles SciPy's own error grows (7e-7 relative at x = -2 + 1.2e-10)
        truth = _mp(mpmath.digamma, a)
        _within(_digamma_loop(a), truth, 4 * np.spacing(np.abs(truth)) + 4 * EPS * _digamma_terms(a))


@_settings
@given(st.integers(1, 6), st.floats(1e-3, 100.0))
def test_polygamma_hypothesis(n, x):
    want = _sp_polygamma(n, x)
    assert abs(_polygamma_loop(n, np.array([x]))[0] / want - 1) <= 1e-13


# ---------------------------------------------------------------- the derivative rules


def _central(loop, x, h):
    return (loop(x + h) - loop(x - h)) / (2 * h)


def test_derivative_rules_by_central_differences():
    x = np.linspace(-0.95, 0.95, 39)
    h = 1e-5
    rule = np.sqrt(np.pi) / 2 * np.exp(_erfinv_loop(x) ** 2)
    np.testing.assert_allclose(_central(_erfinv_loop, x, h), rule, rtol=1e-7)

    x = np.concatenate([np.linspace(0.2, 30, 40), -np.linspace(0.25, 5.75, 12)])  # no pole near
    np.testing.assert_allclose(_central(_gammaln_loop, x, h), _digamma_loop(x), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(_central(_digamma_loop, x, h), _polygamma_loop(1, x), rtol=1e-7, atol=1e-8)
    for n in range(1, 6):
        diff = _central(lambda v, n=n: _polygamma_loop(n, v), x, h)
        np.testing.assert_allclose(diff, _polygamma_loop(n + 1, x), rtol=1e-6, atol=1e-8)


def test_importing_the_kernels_does_not_import_scipy_special():
    # numba code never needs SciPy; plain Python imports it on first use
    code = (
        "import sys, numpy as np; from symgrad.codegen import special; "
        "assert 'scipy.special' not in sys.modules; "
        "assert special.gammaln(np.float32(3.0)) == np.float32(np.log(2.0)); "
        "assert 'scipy.special' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ================================================================ the normal distribution, logit, i0e/i1e,
# betaln and xlog1py: against mpmath (the truth, 40 digits) and SciPy (with SciPy's own looseness
# in the tails, where mpmath agrees with these kernels), errors in ulps of the reference


def _loop1(kernel):
    @numba.njit
    def run(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = kernel(x[i])
        return out

    return run


def _loop2(kernel):
    @numba.njit
    def run(a, b):
        out = np.empty_like(a)
        for i in range(a.size):
            out[i] = kernel(a[i], b[i])
        return out

    return run


_RNG2 = np.random.default_rng(19)  # its own: _RNG's draws above stay as they were
_ndtr = _loop1(special.ndtr)
_log_ndtr = _loop1(special.log_ndtr)
_ndtri = _loop1(special.ndtri)
_erfcinv = _loop1(special.erfcinv)
_logit = _loop1(special.logit)
_i0e = _loop1(special.i0e)
_i1e = _loop1(special.i1e)
_betaln = _loop2(special.betaln)
_xlog1py = _loop2(special.xlog1py)


def _mp40(fn, xs):
    with mpmath.workdps(40):
        return np.array([float(fn(mpmath.mpf(float(v)))) for v in xs])


def _mp_log_ndtr(v):
    return mpmath.log(mpmath.ncdf(v)) if v < 0 else mpmath.log1p(-mpmath.ncdf(-v))


def _mp_ndtri(v):
    """Φ^-1(v): Newton's method in mpmath from SciPy's value (or -38.5 where SciPy gives -inf)."""
    lower = v <= 0.5
    t = v if lower else 1 - v
    start = sp.ndtri(float(t)) if float(t) > 0 and np.isfinite(sp.ndtri(float(t))) else -38.5
    x = mpmath.mpf(start)
    for _ in range(4):
        x -= (mpmath.ncdf(x) - t) / mpmath.npdf(x)
    return x if lower else -x


def _sample(x, k, seed=0):
    return np.random.default_rng(seed).choice(x, k, replace=False)


_X_NORMAL = np.concatenate(
    [
        _RNG2.uniform(-38.4, 9, 40_000),
        -np.logspace(-300, np.log10(38.4), 10_000),
        np.logspace(-300, np.log10(9), 5_000),
        -37.5 - _RNG2.uniform(0, 1, 1_000),  # Φ subnormal
    ]
)


def test_ndtr_within_3_ulp_of_mpmath_through_the_left_tail():
    # the argument x / sqrt(2) is formed in double-double: SciPy rounds it, and its error grows as
    # x^2 (5e12 ulp near -37.7 in the subnormals, ~1000 ulp at -20)
    x = _sample(_X_NORMAL, 1500)
    assert _ulps(_ndtr(x), _mp40(mpmath.ncdf, x)).max() <= 3
    tail = np.linspace(-37.4, -20, 200)
    assert _ulps(_ndtr(tail), _mp40(mpmath.ncdf, tail)).max() <= 3
    assert _ulps(sp.ndtr(tail), _mp40(mpmath.ncdf, tail)).max() > 100  # SciPy's own error there


def test_ndtr_agrees_with_scipy_where_scipy_is_accurate():
    x = _X_NORMAL[_X_NORMAL >= -1]
    assert _ulps(_ndtr(x), sp.ndtr(x)).max() <= 4
    x = _X_NORMAL[_X_NORMAL > -37]  # (below, Φ is subnormal: SciPy's error is 5e12 ulp there)
    # everywhere: SciPy's error, a relative 2x^2 eps (the rounding of x / sqrt(2) through erfc)
    want = sp.ndtr(x)
    _within(_ndtr(x), want, 4 * np.spacing(np.abs(want)) + 4 * (1 + x * x) * EPS * np.abs(want) + 1e-320)


def test_log_ndtr_within_2_ulp_of_mpmath_in_both_tails():
    x = np.concatenate(
        [
            _sample(_X_NORMAL, 800),
            -np.logspace(1.3, 150, 300),
            -_RNG2.uniform(20, 60, 200),
            _RNG2.uniform(0, 38, 200),
        ]
    )
    assert _ulps(_log_ndtr(x), _mp40(_mp_log_ndtr, x)).max() <= 2
    # the far left tail: x = -40, -1e3, -1e5, where Φ underflows
    far = np.array([-40.0, -1e3, -1e5, -1e150])
    assert _ulps(_log_ndtr(far), _mp40(_mp_log_ndtr, far)).max() <= 1


def test_log_ndtr_agrees_with_scipy():
    x = np.concatenate([_X_NORMAL[_X_NORMAL < 1], -np.logspace(1, 5, 2_000)])
    assert _ulps(_log_ndtr(x), sp.log_ndtr(x)).max() <= 4
    # the right tail, where SciPy is up to ~1000 ulp off (log1p(-erfc / 2)): to its accuracy
    x = np.concatenate([_RNG2.uniform(1, 5, 5_000), np.linspace(5, 37, 500)])  # above: subnormal
    want = sp.log_ndtr(x)
    _within(_log_ndtr(x), want, (2e-13 + 4 * (1 + x * x) * EPS) * np.abs(want))


_P = np.concatenate(
    [
        _RNG2.uniform(0, 1, 40_000),
        np.logspace(-323, -0.31, 10_000),  # the left tail, to the subnormals
        1 - np.logspace(-16, -0.31, 5_000),  # the right tail, to 1 - 1.1e-16
        0.5 + _RNG2.uniform(-1e-9, 1e-9, 1_000),  # near the zero at 1/2
    ]
)


def test_ndtri_within_5_ulp_of_mpmath_and_6_of_scipy():
    # AS 241 in the centre (5 ulp at worst, near p = 1/3 and 2/3), refined to 3 in the tails
    x = np.concatenate([_sample(_P, 1200), np.logspace(-323, -300, 30)])
    assert _ulps(_ndtri(x), _mp40(_mp_ndtri, x)).max() <= 5
    tails = np.concatenate([np.logspace(-300, -2, 300), 1 - np.logspace(-16, -2, 100)])
    assert _ulps(_ndtri(tails), _mp40(_mp_ndtri, tails)).max() <= 3
    assert _ulps(_ndtri(_P), sp.ndtri(_P)).max() <= 6


def test_erfcinv_within_5_ulp_of_mpmath_and_8_of_scipy():
    y = np.concatenate([2 * _P, np.logspace(-323, -300, 20)])  # y / 2 would lose bits below 2e-308
    x = _sample(y, 1200)
    want = _mp40(lambda v: -_mp_ndtri(v / 2) / mpmath.sqrt(2), x)
    assert _ulps(_erfcinv(x), want).max() <= 5
    normal = y[y > 1e-300]  # SciPy's y / 2 is exact there (below, SciPy loses bits, inf at 5e-324)
    assert _ulps(_erfcinv(normal), sp.erfcinv(normal)).max() <= 8


def test_logit_within_2_ulp_of_mpmath_and_scipy():
    x = np.concatenate([_P, 0.5 + np.logspace(-17, -1, 1_000), 0.5 - np.logspace(-17, -1, 1_000)])
    assert _ulps(_logit(x), sp.logit(x)).max() <= 2
    sub = _sample(x, 1500)
    assert _ulps(_logit(sub), _mp40(lambda v: mpmath.log(v / (1 - v)), sub)).max() <= 2


_X_BESSEL = np.concatenate(
    [_RNG2.uniform(-30, 30, 40_000), np.logspace(-320, 300, 10_000) * _RNG2.choice([-1, 1], 10_000)]
)


@pytest.mark.parametrize("order, loop", [(0, _i0e), (1, _i1e)], ids=["i0e", "i1e"])
def test_scaled_bessel_within_3_ulp_of_mpmath_and_10_of_scipy(order, loop):
    # (SciPy's Cephes series is itself up to ~9 ulp off below |x| = 8)
    edges = np.concatenate([np.linspace(1.9, 2.1, 41), np.linspace(7.9, 8.1, 41), [1e-6, 9.9e-7, 0.0]])
    x = np.concatenate([_sample(_X_BESSEL, 1500), edges, -edges])
    want = _mp40(lambda v: mpmath.besseli(order, v) * mpmath.exp(-abs(v)), x)
    assert _ulps(loop(x), want).max() <= 3
    reference = sp.i0e if order == 0 else sp.i1e
    x = _X_BESSEL[np.abs(_X_BESSEL) > 1e-300]  # SciPy's i1e of a subnormal rounds differently
    assert _ulps(loop(x), reference(x)).max() <= 10


def _mp_betaln(a, b):
    """log|B(a, b)| as the sum of mpmath's log Γ, with the digits it cancels added to its precision."""
    out = []
    for p, q in zip(a, b):
        p, q = float(p), float(q)
        with mpmath.workdps(40 + max(0, int(math.log10(max(abs(p), abs(q), 1.0))))):
            x, y = mpmath.mpf(p), mpmath.mpf(q)
            out.append(float(mpmath.re(mpmath.loggamma(x) + mpmath.loggamma(y) - mpmath.loggamma(x + y))))
    return np.array(out)


def test_betaln_to_mpmath_where_the_sum_of_gammaln_cancels():
    rng = np.random.default_rng(5)
    a = np.concatenate([10 ** rng.uniform(-5, 15, 1500), rng.uniform(0, 30, 1000), rng.uniform(0, 1, 300)])
    b = np.concatenate(
        [10 ** rng.uniform(-5, 15, 1500), rng.uniform(0, 30, 1000), 10 ** rng.uniform(5, 15, 300)]
    )
    want = _mp_betaln(a, b)
    got = _betaln(a, b)
    # 6 ulp where |betaln| >= 1 (libm's Γ for small arguments), and an absolute 1.5e-15 near
    # betaln's zeros (betaln(1, 1) = 0: its terms cancel there)
    _within(got, want, 6 * np.spacing(np.abs(want)) + 1.5e-15)
    assert _ulps(got, want)[np.abs(want) >= 1].max() <= 6
    # SciPy sums the gammaln terms below b = 1e6: millions of ulp off where one argument is large
    a = np.array([0.12028440365245777, 0.5, 2.5, 0.3])
    b = np.array([675992.7138633531, 9e5, 5e5, 1e5])
    want = _mp_betaln(a, b)
    assert _ulps(sp.betaln(a, b), want).max() > 1e4
    # (6: log Γ(a) and a log(b) cancel in the answer, ~0.4 here)
    assert _ulps(_betaln(a, b), want).max() <= 6


def test_betaln_agrees_with_scipy_on_small_arguments_and_negative_ones():
    rng = np.random.default_rng(6)
    a, b = rng.uniform(0.01, 10, 20_000), rng.uniform(0.01, 10, 20_000)
    want = sp.betaln(a, b)
    _within(_betaln(a, b), want, 8 * np.spacing(np.abs(want)) + 4e-15)
    a, b = -rng.uniform(0, 5, 2000), rng.uniform(0, 5, 2000)
    a = a[a != np.floor(a)]
    b = b[: a.size]
    want = sp.betaln(a, b)
    _within(_betaln(a, b), want, 1e-12 * np.maximum(np.abs(want), 1))


def test_xlog1py_within_2_ulp_of_scipy():
    rng = np.random.default_rng(7)
    x = rng.uniform(-3, 3, 4000)
    y = np.concatenate(
        [rng.uniform(-1, 3, 2000), -1 + np.logspace(-16, -1, 1000), np.logspace(-300, 0, 1000)]
    )
    assert _ulps(_xlog1py(x, y), sp.xlog1py(x, y)).max() <= 2


_SPECIAL_VALUES = [0.0, -0.0, 0.5, 1.0, -1.0, 2.0, -40.0, 40.0, 1e300, -1e300, math.inf, -math.inf, math.nan]


@pytest.mark.parametrize("name", ["ndtr", "log_ndtr", "ndtri", "erfcinv", "logit", "i0e", "i1e"])
@pytest.mark.parametrize("x", _SPECIAL_VALUES)
def test_special_values_are_scipys(name, x):
    # inf, nan and the signed zeros are SciPy's, except i1e(-0.0) = -0.0 (i1e is odd; SciPy gives
    # +0.0); a finite value is within 2 ulp of mpmath
    got = _loop1(getattr(special, name + "_scalar"))(np.array([x]))[0]
    with np.errstate(all="ignore"):
        want = getattr(sp, name)(x)
    if name == "i1e" and x == 0:
        want = x
    if _same(got, want):
        return
    assert np.isfinite(want), (got, want)
    truth = {
        "ndtr": mpmath.ncdf,
        "log_ndtr": _mp_log_ndtr,
        "ndtri": _mp_ndtri,
        "erfcinv": lambda v: -_mp_ndtri(v / 2) / mpmath.sqrt(2),
        "logit": lambda v: mpmath.log(v / (1 - v)),
        "i0e": lambda v: mpmath.besseli(0, v) * mpmath.exp(-abs(v)),
        "i1e": lambda v: mpmath.besseli(1, v) * mpmath.exp(-abs(v)),
    }[name]
    assert _ulps(got, _mp40(truth, [x])[0]) <= 2, (got, want)


@pytest.mark.parametrize(
    "a, b, want",
    [
        (0.0, 1.0, math.inf),
        (0.0, 0.0, math.inf),
        (-1.0, 2.0, math.inf),  # a pole
        (2.0, math.inf, -math.inf),
        (math.nan, 1.0, math.nan),
        (1.0, 1.0, 0.0),
        (1e-310, 1.0, -math.log(1e-310)),  # SciPy: inf (Γ(1e-310) overflows)
        (1e308, 1e308, float(mpmath.log(mpmath.beta(1e308, 1e308)))),  # SciPy: nan (a + b overflows)
    ],
)
def test_betaln_special_values(a, b, want):
    got = _betaln(np.array([a]), np.array([b]))[0]
    assert _same(got, want) or _ulps(got, want) <= 2, (got, want)


def test_new_kernels_keep_float32_and_take_arrays_in_numba_and_plain_python():
    @numba.njit
    def on_arrays(x, y):
        return (
            special.ndtr(x),
            special.log_ndtr(x),
            special.ndtri(y),
            special.erfcinv(y),
            special.logit(y),
            special.i0e(x),
            special.i1e(x),
            special.betaln(y, x * x),
            special.xlog1py(x, y),
        )

    x = np.linspace(-3, 3, 24).reshape(4, 6)[:, ::2]  # not contiguous
    y = np.linspace(0.05, 0.95, 24).reshape(4, 6)[:, ::2]
    refs = [
        sp.ndtr(x),
        sp.log_ndtr(x),
        sp.ndtri(y),
        sp.erfcinv(y),
        sp.logit(y),
        sp.i0e(x),
        sp.i1e(x),
        sp.betaln(y, x * x),
        sp.xlog1py(x, y),
    ]
    for got, want in zip(on_arrays(x, y), refs):
        assert got.shape == x.shape and got.dtype == np.float64
        _within(got, want, 8 * np.spacing(np.abs(want)) + 4e-15)
    for got, want in zip(on_arrays(x.astype(np.float32), y.astype(np.float32)), refs):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=2e-7, atol=1e-7)
    # plain Python (the numpy backend's reference): SciPy
    assert np.array_equal(special.log_ndtr(x), sp.log_ndtr(x))
    assert np.array_equal(special.betaln(y, x), sp.betaln(y, x))


def test_new_kernels_derivative_rules_by_central_differences():
    h = 1e-6
    x = np.linspace(-6, 6, 49)
    pdf = np.exp(-x * x / 2) / np.sqrt(2 * np.pi)
    np.testing.assert_allclose(_central(_ndtr, x, h), pdf, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(_central(_log_ndtr, x, h), pdf / sp.ndtr(x), rtol=1e-7, atol=1e-9)
    p = np.linspace(0.02, 0.98, 49)
    np.testing.assert_allclose(
        _central(_ndtri, p, h), np.sqrt(2 * np.pi) * np.exp(_ndtri(p) ** 2 / 2), rtol=1e-7
    )
    y = 2 * p
    rule = -np.sqrt(np.pi) / 2 * np.exp(_erfcinv(y) ** 2)
    np.testing.assert_allclose(_central(_erfcinv, y, h), rule, rtol=1e-7)
    np.testing.assert_allclose(_central(_logit, p, h), 1 / (p * (1 - p)), rtol=1e-7)
    x = x[np.abs(x) > 0.1]  # |x| has a kink at 0
    np.testing.assert_allclose(_central(_i0e, x, h), _i1e(x) - np.sign(x) * _i0e(x), rtol=1e-7, atol=1e-10)
    rule = _i0e(x) - _i1e(x) * (np.sign(x) + 1 / x)
    np.testing.assert_allclose(_central(_i1e, x, h), rule, rtol=1e-7, atol=1e-10)
    assert abs((_i1e(np.array([h]))[0] - _i1e(np.array([-h]))[0]) / (2 * h) - 0.5) < 1e-5  # i1e'(0)


@_settings
@given(st.floats(-1e6, 40.0))
def test_ndtr_and_log_ndtr_hypothesis(x):
    a = np.array([x])
    assert _ulps(_log_ndtr(a), _mp40(_mp_log_ndtr, a))[0] <= 2
    if x > -37:  # Φ normal (above the subnormals)
        assert _ulps(_ndtr(a), _mp40(mpmath.ncdf, a))[0] <= 3


@_settings
@given(st.floats(0.0, 1.0, exclude_min=True, exclude_max=True))
def test_ndtri_hypothesis_round_trips_through_ndtr(p):
    x = _ndtri(np.array([p]))
    assert _ulps(x, _mp40(_mp_ndtri, [p]))[0] <= 5


@_settings
@given(st.floats(0.0, 700.0), st.floats(-1e300, 1e300))
def test_i0e_i1e_and_logit_hypothesis(x, y):
    a = np.array([x, -x])
    assert _ulps(_i0e(a), sp.i0e(a)).max() <= 10 and _ulps(_i1e(a), sp.i1e(a)).max() <= 10
    p = np.array([abs(y) / 1e300])
    assert _ulps(_logit(p), sp.logit(p))[0] <= 2


@_settings
@given(st.floats(1e-300, 1e300), st.floats(1e-300, 1e300))
def test_betaln_hypothesis(a, b):
    want = _mp_betaln([a], [b])
    got = _betaln(np.array([a]), np.array([b]))
    _within(got, want, 6 * np.spacing(np.abs(want)) + 1.5e-15)
