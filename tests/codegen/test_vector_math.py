"""exp, log and log1p as the numba runtime spells them in arithmetic (vexp, vlog, vlog1p:
loops of them run on SIMD lanes): within 1 ulp of numpy (libm) everywhere, with libm's
special values.

Each function is checked the way fused loops call it (one element at a time inside a
numba loop, which LLVM vectorises) and on whole arrays, in float64 and float32; the
composites built on them (sigmoid, softplus, logaddexp) against numpy formulas.
"""

import math
import re

import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import symgrad.codegen.numba_runtime as rt

from recurrences import POINTS, check, recurrence

_FUNCTIONS = {"exp": (rt.vexp, np.exp), "log": (rt.vlog, np.log), "log1p": (rt.vlog1p, np.log1p)}


def _loop_of(fn):
    """A numba loop calling ``fn`` element by element, as fused loops do."""

    @numba.njit(error_model="numpy")
    def loop(a):
        out = np.empty_like(a)
        for i in range(a.size):
            out[i] = fn(a[i])
        return out

    return loop


_loop_exp, _loop_log, _loop_log1p = (_loop_of(rt.vexp), _loop_of(rt.vlog), _loop_of(rt.vlog1p))
_LOOPS = {"exp": _loop_exp, "log": _loop_log, "log1p": _loop_log1p}


@numba.njit(error_model="numpy")
def _scalar(name, x):
    if name == 0:
        return rt.vexp(x)
    if name == 1:
        return rt.vlog(x)
    return rt.vlog1p(x)


def _ulps(got, want):
    """|got - want| in units of the last place of ``want``; 0 where both agree exactly
    (equal, both nan, or the same infinity)."""
    got, want = np.asarray(got), np.asarray(want)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    with np.errstate(all="ignore"):
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        unit = np.spacing(np.abs(want)).astype(np.float64)
    return np.where(same, 0.0, np.where(np.isfinite(diff), diff / unit, np.inf))


_rng = np.random.default_rng(11)
_SPECIAL = np.array(
    [
        0.0,
        -0.0,
        1.0,
        -1.0,
        2.0,
        -2.0,
        0.5,
        -0.5,
        np.inf,
        -np.inf,
        np.nan,
        5e-324,
        -5e-324,
        1e-310,
        2.2250738585072014e-308,
        1e-300,
        1e-20,
        -1e-20,
        1e-17,
        709.782712893384,
        709.7827128933841,
        709.79,
        710.0,
        720.0,
        -708.39,
        -708.4,
        -720.0,
        -745.13,
        -745.14,
        -746.0,
        -800.0,
        1e300,
        -1e300,
        np.finfo(np.float64).max,
        -0.9999999999999999,
        -1 + 2.0**-30,
        3.0,
        4.0,
        2**52,
        1 + 2.0**-52,
    ]
)
_DATA = {
    "exp": np.concatenate(
        [
            _rng.uniform(-750, 712, 200_000),
            _rng.normal(size=100_000),
            _rng.uniform(-1e-8, 1e-8, 1000),
            _SPECIAL,
        ]
    ),
    "log": np.concatenate(
        [
            np.exp(_rng.uniform(-745, 709, 200_000)),
            _rng.uniform(0.5, 2, 100_000),
            _rng.uniform(-3, 3, 1000),
            _SPECIAL,
        ]
    ),
    "log1p": np.concatenate(
        [
            _rng.uniform(-1, 4, 200_000),
            np.exp(_rng.uniform(-745, 709, 100_000)),
            -np.exp(_rng.uniform(-745, 0, 100_000)),
            _rng.uniform(-1e-9, 1e-9, 1000),
            _SPECIAL,
        ]
    ),
}


@pytest.mark.parametrize("name", sorted(_FUNCTIONS))
def test_a_loop_of_it_is_within_one_ulp_of_libm(name):
    x = _DATA[name]
    with np.errstate(all="ignore"):
        want = _FUNCTIONS[name][1](x)
    got = _LOOPS[name](x)
    err = _ulps(got, want)
    worst = int(np.argmax(err))
    assert err[worst] <= 1.0, f"{name}({x[worst]!r}) = {got[worst]!r}, libm says {want[worst]!r}"
    # the signs of zeros and infinities and where nan comes out are libm's
    assert np.array_equal(np.isnan(got), np.isnan(want))
    exact = ~np.isnan(want) & ((want == 0) | np.isinf(want))
    assert np.array_equal(got[exact], want[exact])
    assert np.array_equal(np.signbit(got[exact]), np.signbit(want[exact]))


@pytest.mark.parametrize("name", sorted(_FUNCTIONS))
def test_special_values(name):
    inf, nan = math.inf, math.nan
    cases = {
        "exp": [(0.0, 1.0), (-0.0, 1.0), (inf, inf), (-inf, 0.0), (710.0, inf), (-746.0, 0.0), (1.0, math.e)],
        "log": [
            (1.0, 0.0),
            (0.0, -inf),
            (-0.0, -inf),
            (inf, inf),
            (-1.0, nan),
            (-inf, nan),
            (5e-324, -744.4400719213812),
            (math.e, 1.0),
        ],
        "log1p": [
            (0.0, 0.0),
            (-1.0, -inf),
            (-2.0, nan),
            (inf, inf),
            (-inf, nan),
            (1e-300, 1e-300),
            (math.e - 1, 1.0),
        ],
    }[name]
    code = sorted(_FUNCTIONS).index(name)
    for x, want in cases + [(nan, nan)]:
        got = _scalar(code, x)
        assert (math.isnan(got) and math.isnan(want)) or _ulps(got, want) <= 1.0, (name, x, got, want)
    if name == "log1p":
        assert math.copysign(1.0, _scalar(code, -0.0)) == -1.0  # log1p(-0.0) is -0.0


@pytest.mark.parametrize("name", sorted(_FUNCTIONS))
def test_float32_rounds_the_float64_result(name):
    x = _DATA[name][np.abs(_DATA[name]) < 3e38].astype(np.float32)
    with np.errstate(all="ignore"):
        want = _FUNCTIONS[name][1](x.astype(np.float64)).astype(np.float32)
    got = _LOOPS[name](x)
    assert got.dtype == np.float32
    # the float64 result is within 1 ulp of the true value, so its rounding to float32 is within 1 float32 ulp
    assert _ulps(got, want).max() <= 1.0


@pytest.mark.parametrize("name", sorted(_FUNCTIONS))
def test_whole_arrays_of_any_layout(name):
    fn, ref = _FUNCTIONS[name]
    x = np.abs(_rng.normal(size=(40, 30)))[::2, ::3] + 0.25

    @numba.njit
    def on_array(a):
        return fn(a)

    got = on_array(x)
    assert got.shape == x.shape and got.dtype == x.dtype
    assert _ulps(got, ref(x)).max() <= 1.0
    # in plain Python the same functions are numpy's
    np.testing.assert_array_equal(fn(x), ref(x))


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_float64_is_within_one_ulp(x):
    with np.errstate(all="ignore"):
        for code, name in enumerate(sorted(_FUNCTIONS)):
            want = _FUNCTIONS[name][1](np.float64(x))
            got = _scalar(code, x)
            assert _ulps(got, want) <= 1.0, (name, x, got, want)


@numba.njit(error_model="numpy")
def _composites(x, y):
    s, p, l = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    for i in range(x.size):
        s[i] = rt.vsigmoid(x[i])
        p[i] = rt.vsoftplus(x[i])
        l[i] = rt.vlogaddexp(x[i], y[i])
    return s, p, l


def test_sigmoid_softplus_and_logaddexp_on_the_arithmetic_exp():
    x = np.concatenate(
        [_rng.normal(scale=30, size=50_000), [0.0, -0.0, 800.0, -800.0, np.inf, -np.inf, np.nan]]
    )
    y = np.concatenate([_rng.normal(scale=30, size=50_000), [0.0, 1.0, 800.0, -np.inf, np.inf, -np.inf, 0.0]])
    s, p, l = _composites(x, y)
    with np.errstate(all="ignore"):
        want_s = np.where(x >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x)))
        want_p = np.logaddexp(0.0, x)
        want_l = np.logaddexp(x, y)
    assert _ulps(s, want_s).max() <= 3.0
    assert _ulps(p, want_p).max() <= 3.0
    # max(x, y) + log1p(...) cancels where the result is near 0: the error is counted in
    # units of the larger term, as for numpy's own logaddexp
    finite = np.isfinite(want_l)
    scale = np.spacing(np.maximum(np.abs(want_l), np.abs(np.maximum(x, y))))[finite]
    assert np.max(np.abs(l[finite] - want_l[finite]) / scale) <= 2.0
    assert np.array_equal(l[~finite], want_l[~finite], equal_nan=True)
    # the special pairs at the end: (0, 0), (-0, 1), (800, 800), (-800, -inf), (inf, inf), (-inf, -inf), (nan, 0)
    np.testing.assert_array_equal(s[-7:], [0.5, 0.5, 1.0, 0.0, 1.0, 0.0, np.nan])
    np.testing.assert_array_equal(p[-7:], [np.log(2), np.log(2), 800.0, 0.0, np.inf, 0.0, np.nan])
    np.testing.assert_array_equal(
        l[-7:], [np.log(2), np.logaddexp(-0.0, 1.0), 800 + np.log(2), -800.0, np.inf, -np.inf, np.nan]
    )


def test_inlining_them_into_a_new_function_warns_nothing():
    import warnings

    @numba.njit(error_model="numpy")
    def everything(x, y):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = (
                rt.vexp(x[i])
                + rt.vlog(y[i])
                + rt.vlog1p(y[i])
                + rt.vsigmoid(x[i])
                + rt.vsoftplus(x[i])
                + rt.vlogaddexp(x[i], y[i])
                + rt.vexp(np.float32(x[i]))
            )
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = everything(np.array([0.5, -2.0]), np.array([1.5, 3.0]))
    x, y = np.array([0.5, -2.0]), np.array([1.5, 3.0])
    want = (
        np.exp(x)
        + np.log(y)
        + np.log1p(y)
        + 1 / (1 + np.exp(-x))
        + np.logaddexp(0, x)
        + np.logaddexp(x, y)
        + np.exp(x.astype(np.float32))
    )
    np.testing.assert_allclose(got, want, rtol=1e-7)


@numba.njit(error_model="numpy")
def _loop_composites(x, y, out):
    for i in range(x.size):
        out[i] = rt.vsigmoid(x[i]) + rt.vsoftplus(y[i]) + rt.vlogaddexp(x[i], y[i])


@pytest.mark.parametrize("loop", [_loop_exp, _loop_log, _loop_log1p, _loop_composites])
def test_llvm_vectorises_a_loop_of_them(loop):
    """The point of spelling them in arithmetic: LLVM puts the loop on SIMD lanes (vector
    types in the optimised IR); a call left un-inlined, or libm's, would keep it scalar."""
    args = (np.ones(64), np.ones(64), np.empty(64)) if loop is _loop_composites else (np.ones(64),)
    loop(*args)
    ir = "\n".join(loop.inspect_llvm().values())
    assert re.search(r"fmul [^\n]*<\d+ x double>", ir), "the loop was not vectorised"
    # no exp or log left for the machine code to call (LLVM's vector intrinsics for them
    # become one libm call per lane)
    assert not re.search(r"@(llvm\.)?(exp|log|log1p)(\.v\d+f64|\.f64)?\(", ir)


# ---------------------------------------------------------------- sin, cos, tan, tanh, arctan, pow's sqrt forms
# Their arithmetic versions (vsin, vcos, vtan, vtanh, varctan, vpow) run in the SIMD passes of
# fused loops; sin, cos and tan hold for |x| <= 2^19 pi/2 (vsin_far says beyond), and a tile
# with an operand beyond runs its pass again on libm. Checked against numpy at random points
# over the whole domain (log-uniform magnitudes, both signs) and at the edges, one element at a
# time in a numba loop and through compiled functions on both backends, float64 and float32.

_TRIG_LIMIT = 2**19 * math.pi / 2
_MORE = {
    "sin": (rt.vsin, np.sin, "sin"),
    "cos": (rt.vcos, np.cos, "cos"),
    "tan": (rt.vtan, np.tan, "tan"),
    "tanh": (rt.vtanh, np.tanh, "tanh"),
    "arctan": (rt.varctan, np.arctan, "arctan"),
}
_more_rng = np.random.default_rng(23)
_HALF_PI_MULTIPLES = (np.arange(-5000, 5001) * (np.pi / 2))[:, None]
_EDGES = np.concatenate(
    [
        [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, -2.2250738585072014e-308, 1e-310, -1e-310],
        [np.inf, -np.inf, np.nan, 1e300, -1e300, np.finfo(np.float64).max, -np.finfo(np.float64).max],
        [_TRIG_LIMIT, np.nextafter(_TRIG_LIMIT, np.inf), -_TRIG_LIMIT, 1e6, 2.0**52, 2.0**60],
        [0.4375, 0.6875, 1.1875, 2.4375, 0.9, -0.9, np.nextafter(0.9, 0), 22.0, 355.0, 400.0],
        # multiples of pi/2 (the double nearest, and its neighbours): where the reduction cancels most
        (_HALF_PI_MULTIPLES * (1 + np.array([-2.3e-16, -1.2e-16, 0.0, 1.2e-16, 2.3e-16]))).ravel(),
        # the double nearest a multiple of pi/2 below 2^19 pi/2 (6381956970095103 2^-797 is the
        # nearest of all doubles, far beyond: libm's)
        [np.pi / 2, np.nextafter(np.pi / 2, 0), np.pi, 6381956970095103 * 2.0**797],
    ]
)


def _whole_domain(n):
    """n random float64 of log-uniform magnitude over the whole range, both signs."""
    mags = np.exp(_more_rng.uniform(np.log(5e-324), np.log(1.7e308), n))
    return mags * _more_rng.choice([-1.0, 1.0], n)


_MORE_DATA = np.concatenate(
    [_whole_domain(100_000), _more_rng.uniform(-20, 20, 50_000), _more_rng.normal(size=10_000), _EDGES]
)


def _within(name, x):
    """The points the arithmetic version itself holds for (sin/cos/tan: |x| <= 2^19 pi/2, or nan)."""
    return x[~(np.abs(x) > _TRIG_LIMIT)] if name in ("sin", "cos", "tan") else x


_MORE_LOOPS = {name: _loop_of(fn) for name, (fn, _, _) in _MORE.items()}


def _check_ulps(name, x, got, want, limit=2.0):
    err = _ulps(got, want)
    worst = int(np.argmax(err))
    assert err[worst] <= limit, f"{name}({x[worst]!r}) = {got[worst]!r}, numpy says {want[worst]!r}"
    assert np.array_equal(np.isnan(got), np.isnan(want))
    exact = ~np.isnan(want) & ((want == 0) | np.isinf(want))
    assert np.array_equal(got[exact], want[exact])
    assert np.array_equal(np.signbit(got[exact]), np.signbit(want[exact])), "a zero's sign differs"


@pytest.mark.parametrize("name", sorted(_MORE))
def test_the_arithmetic_trig_tanh_arctan_are_within_two_ulp_of_numpy(name):
    x = _within(name, _MORE_DATA)
    with np.errstate(all="ignore"):
        want = _MORE[name][1](x)
    _check_ulps(name, x, _MORE_LOOPS[name](x), want)


@pytest.mark.parametrize("name", sorted(_MORE))
def test_their_float32_rounds_within_two_ulp(name):
    x = _within(name, _MORE_DATA[np.abs(_MORE_DATA) < 3e38]).astype(np.float32)
    with np.errstate(all="ignore"):
        want = _MORE[name][1](x.astype(np.float64)).astype(np.float32)
    got = _MORE_LOOPS[name](x)
    assert got.dtype == np.float32
    _check_ulps(name, x, got, want)


def test_the_far_flag_is_the_reduction_range():
    @numba.njit(error_model="numpy")
    def far(a):
        return np.array([rt.vsin_far(v) for v in a])

    x = np.array(
        [0.0, 1.0, -_TRIG_LIMIT, _TRIG_LIMIT, np.nextafter(_TRIG_LIMIT, np.inf), -1e300, np.inf, np.nan]
    )
    np.testing.assert_array_equal(far(x), [False, False, False, False, True, True, True, False])


@numba.njit(error_model="numpy")
def _loop_vpow(a, b):
    out = np.empty_like(a)
    for i in range(a.size):
        out[i] = rt.vpow(a[i], b)
    return out


@pytest.mark.parametrize("exponent", [0.5, -0.5, 1.5])
def test_pow_sqrt_forms_are_within_two_ulp_with_powers_special_values(exponent):
    x = np.concatenate([np.abs(_MORE_DATA), _MORE_DATA[:1000], _EDGES])
    with np.errstate(all="ignore"):
        # pow's values (C99's, libm's, as numba's np.power has them): numpy's power by a scalar
        # 0.5 is sqrt instead (-0.0 at -0.0, nan at -inf); by an array of 0.5, pow's
        want = np.power(x, np.full_like(x, exponent))
    _check_ulps(f"pow(x, {exponent})", x, _loop_vpow(x, exponent), want)


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0, 3.0, 4.0, -1.0, -2.0, -3.0])
def test_pow_by_a_small_integer_is_products_within_two_ulp_away_from_subnormal_results(exponent):
    """x ** k for an integer k in POW_BY_PRODUCTS: products by squaring, within 2 ulp of libm's
    pow wherever neither pow nor an intermediate product is subnormal (their rounding is coarser
    there), and pow's values at 0, -0, inf and nan everywhere."""

    x = np.concatenate([_MORE_DATA, -_MORE_DATA[:1000], _EDGES])
    with np.errstate(all="ignore"):
        want = np.power(x, np.full_like(x, exponent))
        tiny = np.finfo(np.float64).tiny
        keep = ~((np.abs(want) < tiny) & (want != 0)) & ~(np.abs(x) ** abs(exponent) < tiny)
    got = _loop_vpow(x, exponent)
    _check_ulps(f"pow(x, {exponent})", x[keep], got[keep], want[keep])
    edges = np.array([0.0, -0.0, np.inf, -np.inf, np.nan])
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(_loop_vpow(edges, exponent), np.power(edges, np.full(5, exponent)))


def test_pow_by_a_small_integer_keeps_its_loop_on_lanes():
    """x ** 3 used to be libm's pow, keeping exp in its loop off the lanes too; now the loop's one
    vector pass, and the values and gradient numpy's."""
    import symgrad as sg

    x = sg.tensor("x", ("n",))
    vg = sg.value_and_grad(sg.sum(x**3 * sg.exp(x) + x**-2), wrt=[x], backend="numba")
    kernel = vg.source.split("kernel_entry")[0]
    assert "np.power(" not in kernel and "_rt.vexp(" in kernel and "_rt.vpow(" in kernel
    data = np.linspace(0.1, 3.0, 1001)
    value, (grad,) = vg(data)
    assert np.isclose(value, np.sum(data**3 * np.exp(data) + data**-2.0), rtol=1e-14)
    want = 3 * data**2 * np.exp(data) + data**3 * np.exp(data) - 2 * data**-3.0
    np.testing.assert_allclose(grad, want, rtol=1e-14)


@numba.njit(error_model="numpy")
def _loop_trig(a):
    out = np.empty_like(a)
    for i in range(a.size):
        out[i] = rt.vsin(a[i]) + rt.vcos(a[i]) + rt.vtan(a[i]) + rt.vtanh(a[i]) + rt.varctan(a[i])
    return out


def test_llvm_vectorises_a_loop_of_the_trig_functions():
    _loop_trig(np.ones(64))
    ir = "\n".join(_loop_trig.inspect_llvm().values())
    assert re.search(r"fmul [^\n]*<\d+ x double>", ir), "the loop was not vectorised"
    assert not re.search(r"@(llvm\.)?(sin|cos|tan|tanh|atan|exp)(\.v\d+f64|\.f64)?\(", ir)


def test_the_constants_are_rederived():
    """The 33-bit split of pi/2, atan's two-part bases and the Taylor coefficients, from mpmath."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60
    rest = mpmath.pi / 2
    for part, bits in zip((rt._PIO2_1, rt._PIO2_2, rt._PIO2_3, rt._PIO2_4), (33, 33, 33, 53)):
        m, e = mpmath.frexp(rest)
        assert part == float(mpmath.ldexp(mpmath.nint(mpmath.ldexp(m, bits)), e - bits))
        rest -= mpmath.mpf(part)
    assert abs(rest) < 1e-48
    for c, hi, lo in zip(
        (mpmath.atan(0.5), mpmath.pi / 4, mpmath.atan(1.5), mpmath.pi / 2), rt._ATAN_HI, rt._ATAN_LO
    ):
        assert hi == float(c) and lo == float(c - mpmath.mpf(hi))
    assert rt._S[0] == -1 / 6 and rt._C[0] == 1 / 24 and rt._TRIG_LIMIT == _TRIG_LIMIT


def _elementwise_and_sum(sg, fn, x):
    """f(x) elementwise and the sum of it: the loop is tiled (the sum), f on lanes."""
    y = fn(x)
    return [y, sg.sum(y)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_compiled_functions_match_numpy_over_the_whole_domain(backend, dtype):
    import symgrad as sg

    x = sg.tensor("x", ("n",), dtype=dtype)
    fns = {
        "sin": sg.sin,
        "cos": sg.cos,
        "tan": sg.tan,
        "tanh": sg.tanh,
        "arctan": sg.arctan,
        "sqrt form": lambda v: v**0.5,
    }
    outs = []
    for fn in fns.values():
        outs += _elementwise_and_sum(sg, fn, x)
    f = sg.compile(outs, [x], backend=backend).wait()  # numba's machine code, not the first tier's numpy
    if backend == "numba":
        source = f.source
        assert all(f"_rt.v{op}(" in source for op in ("sin", "cos", "tan", "tanh", "arctan", "pow"))
        assert "again on libm" in source
    # the huge and special values sit in tiles of their own and in tiles of ordinary values
    data = np.concatenate([_MORE_DATA[:20_000], _EDGES, _more_rng.uniform(-10, 10, 5000), _EDGES[::-1]])
    if dtype == "float32":
        data = data[np.abs(data) < 3e38].astype(np.float32)
    got = f(data)
    refs = {"sin": np.sin, "cos": np.cos, "tan": np.tan, "tanh": np.tanh, "arctan": np.arctan}
    for k, name in enumerate(fns):
        with np.errstate(all="ignore"):
            if name == "sqrt form":  # numba's np.power is libm's pow; numpy's x ** 0.5 is sqrt
                e = 0.5 if backend == "numpy" else np.full(data.shape, 0.5)
                want = np.power(data.astype(np.float64), e).astype(dtype)
            else:
                want = refs[name](data.astype(np.float64))
                if backend == "numba" and name == "tan":
                    # beyond 2^19 pi/2 the kernel is libm's; at the double nearest a multiple of
                    # pi/2, 6381956970095103 2^797 (tan about -2e18), numpy's tan is 14 ulp from libm's
                    far = np.abs(data) > _TRIG_LIMIT
                    want[far] = [
                        math.tan(v) if math.isfinite(v) else math.nan for v in data[far].astype(np.float64)
                    ]
                want = want.astype(dtype)
        assert got[2 * k].dtype == np.dtype(dtype)
        # a float32 tile with a far operand runs again on libm's float32 tanf, up to 3 ulp from the
        # rounded float64 value near tan's poles
        _check_ulps(name, data, got[2 * k], want, limit=4.0 if (dtype, name) == ("float32", "tan") else 2.0)


# ---------------------------------------------------------------- sin and cos in scalar code, sincos
# Outside SIMD passes (a rolled recurrence, a loop kept scalar) the numba backend spells sin and
# cos _rt.sin / _rt.cos: the arithmetic kernels with branches (no reduction for |x| <= pi/4, libm
# beyond 2^19 pi/2), and _rt.sincos one reduction for both. Over the whole domain, far values too.

_SCALAR_TRIG = {"sin": (rt.sin, np.sin), "cos": (rt.cos, np.cos)}


@numba.njit(error_model="numpy")
def _loop_sincos(a):
    s, c = np.empty_like(a), np.empty_like(a)
    for i in range(a.size):
        s[i], c[i] = rt.sincos(a[i])
    return s, c


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_scalar_sin_cos_and_sincos_are_within_two_ulp_of_numpy(dtype):
    x = np.concatenate([_MORE_DATA, np.linspace(-1, 1, 20_001), _rng.uniform(-np.pi / 4, np.pi / 4, 20_000)])
    if dtype == "float32":
        x = x[np.abs(x) < 3e38]
    x = x.astype(dtype)
    s, c = _loop_sincos(x)
    for name, got in (("sin", s), ("cos", c)):
        with np.errstate(all="ignore"):
            want = _SCALAR_TRIG[name][1](x.astype(np.float64)).astype(dtype)
        assert got.dtype == np.dtype(dtype)
        _check_ulps(f"sincos[{name}]", x, got, want)
        _check_ulps(name, x, _loop_of(_SCALAR_TRIG[name][0])(x), want)
    # in plain Python: numpy's
    np.testing.assert_array_equal(rt.sin(x[:100]), np.sin(x[:100]))


def test_scalar_recurrence_calls_libm_sin_and_cos_outside_its_loops():
    """recur's shape: x = sin(x) x + c, its gradient needs cos at every step. Scalar code calls
    libm (the arithmetic kernels, inlined, cost every kernel's build 0.1-0.3 s); a rolled loop's
    body calls the cached scalar twins _rt.ssin / _rt.scos (tests/codegen/test_recurrence_kernel.py)."""
    import symgrad as sg

    x, x0, c = recurrence(40)
    vg = sg.value_and_grad(x, wrt=[x0, c], backend="numba")
    assert "sincos(" not in vg.source and "_rt.sin(" not in vg.source and "_rt.cos(" not in vg.source
    loop = vg.source[vg.source.index("for k in range") :]
    assert "_rt.ssin(" in loop[: loop.index("value =")]
    assert "np.sin(" in vg.source[: vg.source.index("for k in range")]
    check(vg, 40, points=POINTS[:4])


def test_a_fused_loop_pairs_sin_and_cos_of_one_operand_on_lanes():
    import symgrad as sg

    x = sg.tensor("x", ("n",))
    vg = sg.value_and_grad(sg.sum(sg.exp(sg.sin(x)) * sg.tanh(x)), wrt=[x], backend="numba")
    assert "_rt.vsincos(x[i])" in vg.source and "_rt.vsin_far(x[i])" in vg.source
    data = np.concatenate([_MORE_DATA[:5000], _EDGES[np.isfinite(_EDGES)]])
    value, (grad,) = vg(data)
    with np.errstate(all="ignore"):
        want = np.exp(np.sin(data)) * (np.cos(data) * np.tanh(data) + 1 - np.tanh(data) ** 2)
    np.testing.assert_allclose(grad, want, rtol=1e-13, atol=1e-15)
    assert math.isclose(value, math.fsum(np.exp(np.sin(data)) * np.tanh(data)), rel_tol=1e-12)


def test_pairs_are_only_of_one_value():
    """A rolled loop's carried value is one IR value before and after the statement that updates
    it: sin before and cos after the update are of two values, not a pair. Only statements on SIMD
    lanes pair (scalar code calls libm)."""
    from symgrad.codegen import emit, ir

    import symgrad as sg

    a = sg.scalar("a")
    v = ir.Given(a)
    s = ir.Instr(sg.sin(a), [v], scalar=True, lanes=True)
    c = ir.Instr(sg.cos(a), [v], scalar=True, lanes=True)
    assert emit.find_pairs([s, c]) == {id(s): c}
    libm = [ir.Instr(sg.sin(a), [v], scalar=True), ir.Instr(sg.cos(a), [v], scalar=True)]
    assert emit.find_pairs(libm) == {}
    assert emit.find_pairs([s, ir.Assign(v, s), c]) == {}
    assert emit.find_pairs([c, s]) == {}


# ---------------------------------------------------------------- erf
# verf: fdlibm's rational approximations on four ranges, the range's coefficients selected per lane
# (so a loop of it runs on SIMD lanes), its exp(-x^2) tail on the arithmetic exp; against libm's erf.

_ERF_DATA = np.concatenate(
    [
        _more_rng.uniform(-7, 7, 100_000),
        _whole_domain(50_000),
        np.exp(_more_rng.uniform(np.log(5e-324), np.log(8), 50_000)),
        [0.84375, 1.25, 1 / 0.35, 6.0, 5.921875, 2.0**-28, 2.0**-1022],
        np.nextafter([0.84375, 1.25, 1 / 0.35, 6.0], 0),
        -np.array([0.84375, 1.25, 1 / 0.35, 6.0]),
        _EDGES,
    ]
)
_loop_erf = _loop_of(rt.verf)


def _libm_erf(x):
    return np.array([math.erf(v) for v in x.astype(np.float64)])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_arithmetic_erf_is_within_two_ulp_of_libm(dtype):
    x = _ERF_DATA[np.abs(_ERF_DATA) < 3e38] if dtype == "float32" else _ERF_DATA
    x = x.astype(dtype)
    got = _loop_erf(x)
    assert got.dtype == np.dtype(dtype)
    _check_ulps("erf", x, got, _libm_erf(x).astype(dtype))
    # the special values: signed zeros, +-1 at +-inf, nan
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324], dtype=dtype)
    np.testing.assert_array_equal(_loop_erf(special), _libm_erf(special).astype(dtype))
    assert np.signbit(_loop_erf(special))[1]
    # in plain Python: libm's
    np.testing.assert_array_equal(rt.verf(x[:100]), _libm_erf(x[:100]).astype(dtype))


def test_llvm_vectorises_a_loop_of_erf():
    _loop_erf(np.ones(64))
    ir = "\n".join(_loop_erf.inspect_llvm().values())
    assert re.search(r"fmul [^\n]*<\d+ x double>", ir), "the loop was not vectorised"
    assert not re.search(r"@(llvm\.)?(erf|exp)(\.v\d+f64|\.f64)?\(", ir)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_compiled_erf_matches_libm_and_its_gradient(backend):
    """numba: erf on SIMD lanes through the compiled tile kernel (verf_tile, called once a tile,
    never inlined into the kernel), its derivative's exp on lanes beside it; numpy: libm's erf."""
    import symgrad as sg

    x = sg.tensor("x", ("n",))
    vg = sg.value_and_grad(sg.sum(sg.erf(x) * x), wrt=[x], backend=backend)
    if backend == "numba":
        assert "_rt.verf_tile(erf_x_t, " in vg.source and "_rt.vexp(" in vg.source
        assert "_rt.erf(" not in vg.source and "_rt.verf(" not in vg.source
    data = np.concatenate([_ERF_DATA[:20_000], _ERF_DATA[-60:]])
    data = data[np.isfinite(data) & (np.abs(data) < 1e150)]
    value, (grad,) = vg(data)
    erf = _libm_erf(data)
    assert math.isclose(value, math.fsum(erf * data), rel_tol=1e-12)
    want = erf + data * (2 / math.sqrt(math.pi)) * np.exp(-(data**2))
    np.testing.assert_allclose(grad, want, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize(
    "backend, dtype",
    [("numba", "float64"), pytest.param("numba", "float32", marks=pytest.mark.slow), ("numpy", "float64")],
)
def test_compiled_erf_over_the_whole_domain_and_its_edges(backend, dtype):
    """erf(x) as an array, erf(erf(x)) (one tile kernel's value staged into the next one's buffer)
    and their sum: within 2 ulp of libm's erf at every point, its special values kept (the sign of
    -0.0, -0.0 and subnormals, +-1 at +-inf, nan); huge and special values in tiles of their own
    and among ordinary ones, and a last tile that is not full."""
    import symgrad as sg

    x = sg.tensor("x", ("n",), dtype=dtype)
    f = sg.compile([sg.erf(x), sg.erf(sg.erf(x)), sg.sum(sg.erf(x))], [x], backend=backend)
    if backend == "numba":
        assert f.source.count("_rt.verf_tile(") >= 2 and "_rt.erf(" not in f.source.split("kernel_checked")[0]
    data = np.concatenate([_ERF_DATA[:30_000], _EDGES, _ERF_DATA[-60:], _more_rng.uniform(-3, 3, 1001)])
    if dtype == "float32":
        data = data[~(np.abs(data) >= 3e38) | np.isinf(data)]  # (nan and +-inf kept)
    data = data.astype(dtype)
    erf, erf2, total = f(data)
    want = _libm_erf(data).astype(dtype)
    assert erf.dtype == np.dtype(dtype)
    _check_ulps("erf", data, erf, want)
    _check_ulps("erf(erf)", data, erf2, _libm_erf(want).astype(dtype))
    assert math.isnan(total)  # _EDGES hold a nan
    finite = ~np.isnan(data)
    rel = 1e-6 if dtype == "float32" else 1e-12
    assert math.isclose(f(data[finite])[2], math.fsum(want[finite].astype(np.float64)), rel_tol=rel)


def test_erf_is_within_one_ulp_of_the_exact_value():
    """Against mpmath's erf rounded to the nearest double (scipy.special.erf is itself up to 3 ulp
    from it between 0.8 and 1: libm is the reference of the whole-domain tests)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    x = np.concatenate(
        [
            _more_rng.uniform(-6, 6, 3000),
            _more_rng.uniform(0.8, 1.0, 1000),
            np.exp(_more_rng.uniform(-700, 1, 500)),
        ]
    )
    exact = np.array([float(mpmath.erf(mpmath.mpf(v))) for v in x])
    got = x.copy()
    rt.verf_tile(got, got.size)
    _check_ulps("erf", x, got, exact, limit=1.0)


# ---------------------------------------------------------------- pow with any exponent
# vpow_general, pow for any exponent: exp(b log|a|) in two doubles, with pow's special values (C99's,
# as numpy's np.power of arrays has them), against np.power of arrays (libm's pow). Compiled kernels
# call it through vpow_tile (one call a tile, compiled once into numba's disk cache).

_pow_rng = np.random.default_rng(31)


def _pow_data():
    n = 60_000
    a = np.concatenate(
        [np.exp(_pow_rng.uniform(-745, 709, n)), _pow_rng.uniform(0, 3, n), _pow_rng.uniform(0.999, 1.001, n)]
    )
    b = np.concatenate(
        [_pow_rng.uniform(-1, 1, n), _pow_rng.uniform(-60, 60, n), _pow_rng.uniform(-1e6, 1e6, n)]
    )
    with np.errstate(all="ignore"):
        y = np.abs(b * np.log(a))
        b = np.where(y > 740, b * (740 / y), b)  # most results finite, some over- and underflowing
    # negative bases, by integer-valued exponents (a sign) and by others (nan)
    negative = _pow_rng.random(a.size) < 0.3
    b = np.where(negative & (_pow_rng.random(a.size) < 0.5), np.round(b), b)
    a = np.where(negative, -a, a)
    edges = [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 3.0, -3.0]
    edges += [1e300, -1e300, 1e-300, 0.9999999999999999, 1.0000000000000002, 2.0**53, 2.0**52 + 1]
    exps = edges + [1.5, 2.5, -2.5, 1e20, -1e20, 1075.0, -1075.0, 2.0**52 + 1, -(2.0**53) - 2, 0.1, 7.0, -7.0]
    grid_a, grid_b = np.meshgrid(edges, exps)
    return np.concatenate([a, grid_a.ravel()]), np.concatenate([b, grid_b.ravel()])


_POW_A, _POW_B = _pow_data()


@numba.njit(error_model="numpy")
def _loop_pow(a, b):
    out = np.empty_like(a)
    for i in range(a.size):
        out[i] = rt.vpow_general(a[i], b[i])
    return out


def test_pow_with_any_exponent_is_within_two_ulp_with_powers_special_values():
    with np.errstate(all="ignore"):
        want = np.power(_POW_A, _POW_B)  # arrays: libm's pow, element by element
    got = _loop_pow(_POW_A, _POW_B)
    _check_ulps("pow", np.stack([_POW_A, _POW_B], axis=1).tolist(), got, want)
    # 0 ** 0, nan ** 0, 1 ** nan, (-1) ** inf, 0 ** -1, (-0) ** -3, (-inf) ** 3, (-8) ** (1/3)
    a = np.array([0.0, np.nan, 1.0, -1.0, 0.0, -0.0, -np.inf, -8.0, -np.inf])
    b = np.array([0.0, 0.0, np.nan, np.inf, -1.0, -3.0, 3.0, 1 / 3, 0.5])
    np.testing.assert_array_equal(
        _loop_pow(a, b), [1.0, 1.0, 1.0, 1.0, np.inf, -np.inf, -np.inf, np.nan, np.inf]
    )


def test_llvm_vectorises_a_loop_of_pow():
    _loop_pow(np.ones(64), np.ones(64))
    ir = "\n".join(_loop_pow.inspect_llvm().values())
    assert re.search(r"fmul [^\n]*<\d+ x double>", ir), "the loop was not vectorised"
    assert not re.search(r"@(llvm\.)?(pow|exp|log)(\.v\d+f64|\.f64)?\(", ir)


@pytest.mark.parametrize(
    "backend, dtype",
    [
        ("numba", "float64"),
        pytest.param("numba", "float32", marks=pytest.mark.slow),
        ("numpy", "float64"),
        ("numpy", "float32"),
    ],
)
def test_compiled_pow_by_a_traced_or_fractional_exponent(backend, dtype):
    import symgrad as sg

    a, b = sg.tensor("a", ("n",), dtype=dtype), sg.tensor("b", ("n",), dtype=dtype)
    outs = [a**b, sg.sum(a**b), a**2.5, sg.sum(a**2.5), a**3.0]
    f = sg.compile(outs, [a, b], backend=backend)
    if backend == "numba":  # on lanes through the tile kernel (any exponent), never inlined
        assert f.source.count("_rt.vpow_tile(") >= 3 and "vpow_general" not in f.source
        assert "np.power(" not in f.source.split("kernel_checked")[0]
    x, y = _POW_A, _POW_B
    if dtype == "float32":
        keep = (np.abs(x) < 3e38) & (np.abs(y) < 3e38)
        x, y = x[keep].astype(np.float32), y[keep].astype(np.float32)
    got = f(x, y)
    with np.errstate(all="ignore"):
        want = np.power(x.astype(np.float64), y.astype(np.float64)).astype(dtype)
        want25 = np.power(x.astype(np.float64), np.full(x.shape, 2.5)).astype(dtype)
    assert got[0].dtype == np.dtype(dtype)
    _check_ulps("pow", x, got[0], want)
    _check_ulps("pow(x, 2.5)", x, got[2], want25)


def test_a_loop_of_elementwise_ops_alone_runs_on_lanes():
    """No sum or scalar work beside them: the loop is still tiled, each tile one pass on SIMD lanes
    (and again on libm for a tile with an operand beyond the arithmetic versions' range)."""
    import symgrad as sg

    x = sg.tensor("x", ("n",))
    f = sg.compile([sg.sin(x) * 2.0 + sg.tanh(x)], [x], backend="numba")
    assert "_rt.vsin(x[i])" in f.source and "_rt.vtanh(x[i])" in f.source and "again on libm" in f.source
    data = np.concatenate([_MORE_DATA[:20_000], _EDGES])
    with np.errstate(all="ignore"):
        want = np.sin(data) * 2.0 + np.tanh(data)
    np.testing.assert_allclose(f(data)[0], want, rtol=4e-16, atol=4e-16)


def test_pow_by_any_exponent_lets_the_rest_of_its_loop_onto_lanes():
    """A general pow used to keep its whole loop on libm (sin and exp too); its tile kernel is a pass
    of its own, the loop's other ops on lanes beside it (the gradient's log too). The
    values against numpy (libm's pow for arrays), negative bases by fractional exponents nan."""
    import symgrad as sg

    x, p = sg.tensor("x", ("n",)), sg.tensor("p", ("n",))
    loss = sg.sum(sg.exp(sg.sin(x)) * x**p)
    vg = sg.value_and_grad(loss, wrt=[x, p], backend="numba")
    kernel = vg.source.split("kernel_entry")[0]
    assert "_rt.vsincos(x[i])" in kernel and "_rt.vexp(" in kernel and "_rt.vlog(" in kernel
    # x ** p on its tile kernel; x ** (p - 1), in a branch of where(p == 0, ...), on it too: the
    # where computes both branches and selects (tiling.selected_on_lanes)
    assert kernel.count("_rt.vpow_tile(") == 2 and kernel.count("_rt.vpow(") == 0
    assert "np.power(" not in kernel
    rng = np.random.default_rng(5)
    xs = np.concatenate([rng.uniform(0.01, 3, 3000), [0.0, 1.0, 2.5, 1e-300]])
    ps = np.concatenate([rng.uniform(-3, 3, 3000), [2.0, 0.5, -1.5, 0.5]])
    value, (gx, gp) = vg(xs, ps)
    e, xp = np.exp(np.sin(xs)), np.power(xs, ps)
    assert math.isclose(value, math.fsum(e * xp), rel_tol=1e-12)
    with np.errstate(all="ignore"):
        terms = e * np.cos(xs) * xp, e * ps * np.power(xs, ps - 1)
        want_p = e * xp * np.log(np.where(xs == 0, 1.0, xs))
    # (the two terms of d/dx cancel in places: to 1e-12 of their size)
    assert np.all(np.abs(gx - (terms[0] + terms[1])) <= 1e-12 * (np.abs(terms[0]) + np.abs(terms[1])))
    np.testing.assert_allclose(gp, want_p, rtol=1e-12, atol=1e-300)
    value, _ = vg(np.array([-2.0, 1.0]), np.array([0.5, 1.0]))
    assert math.isnan(value)


@pytest.mark.slow
def test_tile_kernels_on_the_threads_have_buffers_of_their_own():
    """Row blocks on two threads: each block allocates the tile kernels' buffers (a shared buffer
    would mix the blocks' values); the same bits as on one thread and libm's erf."""
    import symgrad as sg
    from symgrad.codegen import threads

    x = sg.tensor("x", ("n",))
    f = sg.compile([sg.erf(x) * 2.0, sg.sum(sg.erf(x))], [x], backend="numba")
    blocks = f.source[f.source.index("def kernel_blocks") : f.source.index("def kernel_checked")]
    assert blocks.index("numba.prange") < blocks.index("erf_x_t = _rt.empty")
    data = np.random.default_rng(2).uniform(-4, 4, threads.MIN_ROWS + 3 * threads.BLOCK + 17)
    with sg.config(threads=1):
        one = f(data)
    with sg.config(threads=2):
        two = f(data)
    assert one[0].tobytes() == two[0].tobytes() and np.float64(one[1]) == np.float64(two[1])
    _check_ulps("erf", data, two[0] / 2.0, _libm_erf(data))
