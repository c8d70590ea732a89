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
