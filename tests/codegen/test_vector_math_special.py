"""ndtr and log_ndtr as the numba runtime spells them in arithmetic (vndtr, vlog_ndtr: loops of
them run on SIMD lanes), against the exact values (mpmath, rounded to the nearest double; where
SciPy's own values differ by more than 2 ulp, the exact ones decide) and SciPy's special values:
within 2 ulp over their domains and edges.

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

_NAMES = ["ndtr", "log_ndtr"]
_LOOPS = {name: _loop_of(getattr(rt, f"v{name}")) for name in _NAMES}
_rng = np.random.default_rng(23)


def _log_ndtr_exact(v):
    return mpmath.log1p(-mpmath.ncdf(-v)) if v > 0 else mpmath.log(mpmath.ncdf(v))


_EXACT = {
    "ndtr": mpmath.ncdf,
    "log_ndtr": _log_ndtr_exact,
}


def _exact(name, x):
    """mpmath's value rounded to the nearest double (and its zeros signed: log_ndtr <= 0)."""
    with mpmath.workdps(40):
        out = np.array([float(_EXACT[name](mpmath.mpf(float(v)))) for v in x])
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
}


@pytest.mark.parametrize("name", _NAMES)
def test_a_loop_of_it_is_within_two_ulp_of_the_exact_value(name):
    x = np.concatenate(_POINTS[name])
    _check_ulps(name, x, _LOOPS[name](x), _exact(name, x), limit=2.0)


@pytest.mark.parametrize("name", _NAMES)
def test_over_the_whole_domain_it_is_scipy_or_nearer_the_exact_value(name):
    """1e5 points of log-uniform magnitude, both signs, and the edges: within 2 ulp of SciPy, or else
    (SciPy is off there) of the exact value (mpmath); nan where SciPy says nan."""
    limit = 2.0
    x = np.concatenate([_whole_domain(100_000), _EDGES])
    got = _LOOPS[name](x)
    with np.errstate(all="ignore"):
        want = getattr(scipy.special, name)(x)
    assert np.array_equal(np.isnan(got), np.isnan(want)), name
    far = np.flatnonzero(_ulps(got, want) > limit)
    if far.size:
        _check_ulps(name, x[far], got[far], _exact(name, x[far]), limit=limit)


def test_special_values():
    inf, nan = math.inf, math.nan
    cases = {
        "ndtr": [(0.0, 0.5), (-0.0, 0.5), (inf, 1.0), (-inf, 0.0), (-40.0, 0.0), (-39.0, 0.0), (40.0, 1.0)],
        "log_ndtr": [(0.0, -math.log(2.0)), (-0.0, -math.log(2.0)), (inf, -0.0), (-inf, -inf), (39.0, -0.0)],
    }
    for name, pairs in cases.items():
        x = np.array([p[0] for p in pairs] + [nan])
        want = np.array([p[1] for p in pairs] + [nan])
        got = _LOOPS[name](x)
        # the zeros, infinities and nan exactly (and their signs), the rest within 1 ulp
        _check_ulps(name, x, got, want, limit=1.0)
        with np.errstate(all="ignore"):
            scipy_says = getattr(scipy.special, name)(x)
        # SciPy's values where it has one of these
        same = np.isnan(scipy_says) | np.isinf(scipy_says) | (scipy_says == 0)
        np.testing.assert_array_equal(got[same], scipy_says[same], err_msg=name)


def test_their_tile_kernels_round_the_float64_result_to_float32():
    """Kernels call the twins through ``v<op>_tile`` (in place over a tile's buffers); float32
    buffers are computed in float64 and rounded once: within 1 float32 ulp of the exact value."""
    for name in _NAMES:
        x = np.concatenate(_POINTS[name])
        x = x[np.abs(x) < 3e38].astype(np.float32)
        got = x.copy()
        getattr(rt, f"v{name}_tile")(got, got.size - 5)  # (the last five untouched)
        with np.errstate(over="ignore"):  # (log_ndtr below -2.6e19: beyond float32's range, -inf)
            want = _exact(name, x.astype(np.float64)).astype(np.float32)
        _check_ulps(name, x[:-5], got[:-5], want[:-5], limit=1.0)
        assert got[-5:].tobytes() == x[-5:].tobytes()


def test_llvm_vectorises_the_loops_of_them():
    """The loops above (compiled once): LLVM put each on SIMD lanes (vector types in the optimised
    IR), with no libm function left to call."""
    libm = "erf|erfc|exp|log|log1p"
    for name, loop in _LOOPS.items():
        loop(np.full(64, 0.25))
        ir = "\n".join(loop.inspect_llvm().values())
        assert re.search(r"fmul [^\n]*<\d+ x double>", ir), f"the loop of {name} was not vectorised"
        assert not re.search(rf"@(llvm\.)?({libm})(\.v\d+f64|\.f64)?\(", ir), name


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_compiled_values_and_gradients_match(backend):
    """One kernel an op computing it and the gradient of its sum: on numba a kernel of the value alone
    calls the twin's tile kernel and not the scalar one, its values within 2 ulp of the exact ones
    (the kernel with the gradient computes the value on the scalar kernel, as main does: within 4 ulp,
    test_special's bound against SciPy); numpy's are SciPy's; the gradients against their formulas in
    SciPy's functions."""
    import symgrad as sg

    x = sg.tensor("x", ("n",))
    xs = np.concatenate([_rng.uniform(-9, 9, 600), _rng.uniform(0.1, 30, 600), [0.5, -0.5, 1.0, 2.0, 25.0]])
    slope = {
        "ndtr": lambda v: np.exp(-0.5 * v * v) / math.sqrt(2 * math.pi),
        "log_ndtr": lambda v: np.exp(-0.5 * v * v - scipy.special.log_ndtr(v)) / math.sqrt(2 * math.pi),
    }
    for name in _NAMES:
        out = getattr(sg, name)(x)
        f = sg.compile([out] + sg.grad(sg.sum(out), [x]), [x], backend=backend).wait()
        value, grad = f(xs)
        if backend == "numba":
            alone = sg.compile([out], [x]).wait()
            value_only = alone.source.split("kernel_entry")[0]
            assert f"_rt.v{name}_tile(" in value_only and f"_rt.{name}(" not in value_only, name
            (twin,) = alone(xs)
            _check_ulps(name, xs, twin, _exact(name, xs), limit=2.0)
            _check_ulps(name, xs, value, _exact(name, xs), limit=4.0)
        else:  # SciPy's functions
            _check_ulps(name, xs, value, getattr(scipy.special, name)(xs), limit=0.0)
        want = slope[name](xs)
        np.testing.assert_allclose(grad, want, rtol=1e-13, atol=1e-300, err_msg=name)
