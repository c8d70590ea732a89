"""ndtr, log_ndtr, i0e, i1e, digamma and gammaln as the numba runtime spells them in arithmetic
(vndtr, ..., vgammaln: loops of them run on SIMD lanes), against the exact values (mpmath, rounded
to the nearest double; SciPy's own ndtr, log_ndtr, i0e, i1e, digamma and gammaln are up to
thousands of ulp off in places) and SciPy's special values: within 2 ulp over their domains and
edges, digamma within 3 for x > 0 and both within a few ulp of the larger term of the reflection
on the negative axis (where it cancels near their zeros, as libm's gammaln does).

The helpers and the edge points are test_vector_math's; each function is checked in one numba loop.
"""

import math
import re

import numpy as np
import pytest
import scipy.special

import symgrad.codegen.numba_runtime as rt
from test_vector_math import _EDGES, _check_ulps, _loop_of, _ulps, _whole_domain

mpmath = pytest.importorskip("mpmath")

_NAMES = ["ndtr", "log_ndtr", "i0e", "i1e", "digamma", "gammaln"]
_LOOPS = {name: _loop_of(getattr(rt, f"v{name}")) for name in _NAMES}
_rng = np.random.default_rng(23)


def _log_ndtr_exact(v):
    return mpmath.log1p(-mpmath.ncdf(-v)) if v > 0 else mpmath.log(mpmath.ncdf(v))


_EXACT = {
    "ndtr": mpmath.ncdf,
    "log_ndtr": _log_ndtr_exact,
    "i0e": lambda v: mpmath.besseli(0, v) * mpmath.exp(-abs(v)),
    "i1e": lambda v: mpmath.besseli(1, v) * mpmath.exp(-abs(v)),
    "digamma": mpmath.digamma,
    "gammaln": lambda v: mpmath.re(mpmath.loggamma(v)),
}


def _exact(name, x):
    """mpmath's value rounded to the nearest double (and its zeros signed: i1e is odd, log_ndtr <= 0)."""
    with mpmath.workdps(40):
        out = np.array([float(_EXACT[name](mpmath.mpf(float(v)))) for v in x])
    if name == "i1e":
        return np.copysign(out, x)
    return -np.abs(out) if name == "log_ndtr" else out


def _log_uniform(lo, hi, n):
    return np.exp(_rng.uniform(np.log(lo), np.log(hi), n))


_N = 1000  # points a range (the measured maxima over 1e5 a range are in the report of this change)
_POINTS = {
    "ndtr": [
        _rng.uniform(-40, 40, _N),
        _rng.uniform(-3, 3, _N),
        -_log_uniform(1e-300, 39, _N),  # the left tail, to the subnormal results
        np.array([-38.4, -38.5, -37.5, -8.0, -1.7677669529663689, -1.2, 1.2, 1.7677669529663689]),
        np.array([-4.04, 4.04, -1.19, 1.19, -0.35, 0.35, 5e-324, -5e-324, 1e-310, 39.9, -39.9]),
    ],
    "log_ndtr": [
        _rng.uniform(-40, 40, _N),
        -_log_uniform(20, 1e150, _N),  # the asymptotic series
        _log_uniform(1e-300, 40, _N),  # the right tail: -ndtr(-x)
        np.array([-20.0, np.nextafter(-20.0, 0), np.nextafter(-20.0, -99), 8.3, 38.0, 38.5, 1e-310, -1e-310]),
    ],
    "i0e": [
        _rng.uniform(-10, 10, _N),
        _log_uniform(1e-300, 1e300, _N) * _rng.choice([-1.0, 1.0], _N),
        np.array([2.0, np.nextafter(2.0, 9), 8.0, np.nextafter(8.0, 9), 1e-6, np.nextafter(1e-6, 0), 1e-300]),
    ],
    "digamma": [
        _rng.uniform(0, 20, _N),
        _log_uniform(1e-300, 1e300, _N),
        np.array([1.4616321449683622, 1.0, 2.0, 10.0, np.nextafter(10.0, 0), 0.25, 5e-324, 1e-310]),
        -_log_uniform(1e-300, 0.25, 200),  # one step up: no reflection
    ],
    "gammaln": [
        _rng.uniform(0, 20, _N),
        _log_uniform(1e-300, 1e300, _N),
        np.array([1.0, 2.0, 0.5, 1.5, 2.5, np.nextafter(2.5, 0), 10.0, np.nextafter(10.0, 0), 1e290, 2e305]),
        1 + _rng.uniform(-1e-3, 1e-3, 200),  # the zeros at 1 and 2
        2 + _rng.uniform(-1e-3, 1e-3, 200),
        -_log_uniform(1e-300, 0.5, 200),  # no reflection above -1/2
    ],
}
_POINTS["i1e"] = _POINTS["i0e"]


@pytest.mark.parametrize("name", _NAMES)
def test_a_loop_of_it_is_within_two_ulp_of_the_exact_value(name):
    x = np.concatenate(_POINTS[name])
    # digamma: within 3 (the scalar kernel's bound: near 2.04 its sum cancels by 3.4x)
    _check_ulps(name, x, _LOOPS[name](x), _exact(name, x), limit=3.0 if name == "digamma" else 2.0)


@pytest.mark.parametrize("name", ["digamma", "gammaln"])
def test_the_reflection_is_within_a_few_ulp_of_its_larger_term(name):
    """x < 0: ψ(1 - x) - pi cot(pi x), log(pi / |x sin(pi x)|) - gammaln(-x): near the function's
    zeros the two terms cancel, and the error is measured in ulp of the larger one (for digamma plus
    what the rounding of 1 - x moves ψ(1 - x) by)."""
    x = np.concatenate([_rng.uniform(-30, -0.5, _N), -_log_uniform(0.5, 1e15, 300)])
    x = x[x != np.floor(x)]
    got = _LOOPS[name](x)
    with mpmath.workdps(40):
        terms = []
        for v in x:
            v = mpmath.mpf(float(v))
            if name == "digamma":
                terms.append(max(abs(mpmath.digamma(1 - v)), abs(mpmath.pi * mpmath.cot(mpmath.pi * v))))
            else:
                terms.append(
                    max(
                        abs(mpmath.log(mpmath.pi / abs(v * mpmath.sin(mpmath.pi * v)))),
                        abs(mpmath.loggamma(-v)),
                    )
                )
    scale = np.spacing(np.array([float(t) for t in terms]))
    if name == "digamma":  # and the rounding of 1 - x: ψ'(1 - x) times half an ulp of 1 - x
        scale = scale + scipy.special.polygamma(1, 1 - x) * np.spacing(1 - x) / 2
    err = np.abs(got - _exact(name, x)) / scale
    worst = int(np.argmax(err))
    assert err[worst] <= 4.0, f"{name}({x[worst]!r}): {err[worst]} ulp of the larger term"


@pytest.mark.parametrize("name", _NAMES)
def test_over_the_whole_domain_it_is_scipy_or_nearer_the_exact_value(name):
    """1e5 points of log-uniform magnitude, both signs, and the edges: within 2 ulp (3: digamma) of
    SciPy, or else (SciPy is off there) of the exact value (mpmath); nan where SciPy says nan."""
    limit = 3.0 if name == "digamma" else 2.0
    x = np.concatenate([_whole_domain(100_000), _EDGES])
    got = _LOOPS[name](x)
    with np.errstate(all="ignore"):
        want = getattr(scipy.special, name)(x)
    assert np.array_equal(np.isnan(got), np.isnan(want)), name
    far = np.flatnonzero(_ulps(got, want) > limit)
    if name in ("digamma", "gammaln"):
        far = far[x[far] > 0]  # (the negative axis: the reflection, above)
    if far.size:
        _check_ulps(name, x[far], got[far], _exact(name, x[far]), limit=limit)


def test_special_values():
    inf, nan = math.inf, math.nan
    cases = {
        "ndtr": [(0.0, 0.5), (-0.0, 0.5), (inf, 1.0), (-inf, 0.0), (-40.0, 0.0), (-39.0, 0.0), (40.0, 1.0)],
        "log_ndtr": [(0.0, -math.log(2.0)), (-0.0, -math.log(2.0)), (inf, -0.0), (-inf, -inf), (39.0, -0.0)],
        "i0e": [(0.0, 1.0), (-0.0, 1.0), (inf, 0.0), (-inf, 0.0), (5e-324, 1.0)],
        "i1e": [(0.0, 0.0), (-0.0, -0.0), (inf, 0.0), (-inf, -0.0), (5e-324, 0.0)],
        "digamma": [
            (0.0, -inf),
            (-0.0, inf),
            (inf, inf),
            (-inf, nan),
            (-1.0, nan),
            (-2.0, nan),
            (-1e20, nan),
        ],
        "gammaln": [
            (0.0, inf),
            (-0.0, inf),
            (1.0, 0.0),
            (2.0, 0.0),
            (inf, inf),
            (-inf, -inf),
            (-1.0, inf),
            (-7.0, inf),
            (-1e20, inf),
            (3e305, inf),
        ],
    }
    for name, pairs in cases.items():
        x = np.array([p[0] for p in pairs] + [nan])
        want = np.array([p[1] for p in pairs] + [nan])
        got = _LOOPS[name](x)
        # the zeros, infinities and nan exactly (and their signs), the rest within 1 ulp
        _check_ulps(name, x, got, want, limit=1.0)
        with np.errstate(all="ignore"):
            scipy_says = getattr(scipy.special, name)(x)
        # SciPy's values where it has one of these (its i1e(-0.0) and i1e(-inf) are +0.0: odd here)
        same = np.isnan(scipy_says) | np.isinf(scipy_says) | (scipy_says == 0)
        if name == "i1e":
            same &= ~np.signbit(x)
        np.testing.assert_array_equal(got[same], scipy_says[same], err_msg=name)


def test_their_tile_kernels_round_the_float64_result_to_float32():
    """Kernels call the twins through ``v<op>_tile`` (in place over a tile's buffers); float32
    buffers are computed in float64 and rounded once: within 1 float32 ulp of the exact value."""
    for name in _NAMES:
        x = np.concatenate(_POINTS[name])
        x = x[np.abs(x) < 3e38].astype(np.float32)
        if name in ("digamma", "gammaln"):
            x = x[x > 0]  # (the points below 1e-45 are 0 in float32: the pole)
        got = x.copy()
        getattr(rt, f"v{name}_tile")(got, got.size - 5)  # (the last five untouched)
        with np.errstate(over="ignore"):  # (gammaln beyond float32's range: inf)
            want = _exact(name, x.astype(np.float64)).astype(np.float32)
        _check_ulps(name, x[:-5], got[:-5], want[:-5], limit=1.0)
        assert got[-5:].tobytes() == x[-5:].tobytes()


def test_llvm_vectorises_the_loops_of_them():
    """The loops above (compiled once): LLVM put each on SIMD lanes (vector types in the optimised
    IR), with no libm function left to call."""
    libm = "erf|erfc|exp|log|log1p|lgamma|tan|sin|cos"
    for name, loop in _LOOPS.items():
        loop(np.full(64, 0.25))
        ir = "\n".join(loop.inspect_llvm().values())
        assert re.search(r"fmul [^\n]*<\d+ x double>", ir), f"the loop of {name} was not vectorised"
        assert not re.search(rf"@(llvm\.)?({libm})(\.v\d+f64|\.f64)?\(", ir), name


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_compiled_values_and_gradients_match(backend):
    """One kernel an op computing it and the gradient of its sum: on numba the value's pass calls the
    twin's tile kernel and not the scalar one (but gammaln's: libm's lgamma, as fast), the values
    within 2 ulp of the exact ones (3: digamma, and gammaln's libm lgamma);
    numpy's are SciPy's; the gradients against their formulas in SciPy's functions."""
    import symgrad as sg

    x = sg.tensor("x", ("n",))
    xs = np.concatenate([_rng.uniform(-9, 9, 600), _rng.uniform(0.1, 30, 600), [0.5, -0.5, 1.0, 2.0, 25.0]])
    pos = np.abs(xs) + 0.01
    slope = {
        "ndtr": lambda v: np.exp(-0.5 * v * v) / math.sqrt(2 * math.pi),
        "log_ndtr": lambda v: np.exp(-0.5 * v * v - scipy.special.log_ndtr(v)) / math.sqrt(2 * math.pi),
        "i0e": lambda v: scipy.special.i1e(v) - np.sign(v) * scipy.special.i0e(v),
        "i1e": lambda v: scipy.special.i0e(v) - scipy.special.i1e(v) * (np.sign(v) + 1 / v),
        "digamma": lambda v: scipy.special.polygamma(1, v),
        "gammaln": scipy.special.digamma,
    }
    for name in _NAMES:
        arg = pos if name in ("digamma", "gammaln") else xs
        out = getattr(sg, name)(x)
        f = sg.compile([out] + sg.grad(sg.sum(out), [x]), [x], backend=backend).wait()
        if backend == "numba" and name != "gammaln":  # (gammaln's op keeps libm's lgamma: no faster)
            value_only = sg.compile([out], [x]).wait().source.split("kernel_entry")[0]
            assert f"_rt.v{name}_tile(" in value_only and f"_rt.{name}(" not in value_only, name
        value, grad = f(arg)
        if backend == "numba":
            _check_ulps(
                name, arg, value, _exact(name, arg), limit=3.0 if name in ("digamma", "gammaln") else 2.0
            )
        else:  # SciPy's functions
            _check_ulps(name, arg, value, getattr(scipy.special, name)(arg), limit=0.0)
        want = slope[name](arg)
        # (i0e's and i1e's slopes are differences of terms near 1: to 1e-15 absolute)
        atol = 1e-15 if name in ("i0e", "i1e") else 1e-300
        np.testing.assert_allclose(grad, want, rtol=1e-13, atol=atol, err_msg=name)
