"""expm1, sinh, cosh, arcsin, arccos, logit, arctan2, xlogy and xlog1py as the numba runtime spells
them in arithmetic (vexpm1, ..., vxlog1py: loops of them run on SIMD lanes): within 2 ulp of numpy
(SciPy for logit, xlogy, xlog1py) over the whole domain and its edges, with libm's special values,
and within 1 ulp of the exact value (mpmath) where numpy's own functions are off (cosh near 0:
glibc's is up to 0.7 ulp off; scipy.special.xlog1py: 3 ulp; xlogy and xlog1py, x times a log
within 1 ulp, within 2).

The helpers and the whole-domain points are test_vector_math's; each function is checked in one
numba loop over all its points, and all of them in one compiled kernel per backend.
"""

import math
import re

import numba
import numpy as np
import pytest
import scipy.special

import symgrad.codegen.numba_runtime as rt
from test_vector_math import _EDGES, _check_ulps, _loop_of, _whole_domain

_rng = np.random.default_rng(47)
_NEAR_EDGES = np.array(
    [1.0, -1.0, 0.5, -0.5, 0.975, -0.975, np.nextafter(0.5, 0), np.nextafter(0.975, 1), np.nextafter(1, 0)]
    + [
        22.0,
        -22.0,
        np.nextafter(22.0, 0),
        40.0,
        -40.0,
        np.nextafter(40.0, 99),
        709.78,
        710.47,
        710.48,
        -710.47,
    ]
    + [0.34657359027997264, -0.34657359027997264, 0.25, 0.75, 0.3, 0.65, 1e-8, -1e-8, 2.0**-28, -(2.0**-28)]
)
_UNARY_DATA = np.concatenate(
    [
        _whole_domain(100_000),
        _rng.uniform(-1, 1, 100_000),
        _rng.uniform(-60, 60, 50_000),
        _rng.uniform(-712, 712, 20_000),
        1 - np.exp(_rng.uniform(-36, 0, 20_000)),  # near 1: arcsin, arccos
        _NEAR_EDGES,
        _EDGES,
    ]
)
_P_DATA = np.concatenate(  # logit's operand: [0, 1] and near its ends and its middle
    [
        _rng.uniform(0, 1, 100_000),
        np.exp(_rng.uniform(np.log(5e-324), 0, 50_000)),
        1 - np.exp(_rng.uniform(-37, 0, 50_000)),
        _rng.uniform(0.49, 0.51, 20_000),
        _NEAR_EDGES,
        _EDGES,
    ]
)
_UNARY = {
    "expm1": (rt.vexpm1, np.expm1),
    "sinh": (rt.vsinh, np.sinh),
    "cosh": (rt.vcosh, np.cosh),
    "arcsin": (rt.varcsin, np.arcsin),
    "arccos": (rt.varccos, np.arccos),
    "logit": (rt.vlogit, scipy.special.logit),
}
_UNARY_LOOPS = {name: _loop_of(fn) for name, (fn, _) in _UNARY.items()}


def _pairs():
    """(a, b): whole-domain pairs, ordinary ones, and every pair of edge values."""
    edges = np.concatenate(
        [_EDGES[:: max(1, _EDGES.size // 40)], _NEAR_EDGES, [0.0, -0.0, np.inf, -np.inf, np.nan]]
    )
    grid_a, grid_b = np.meshgrid(edges, edges)
    a = np.concatenate([_whole_domain(60_000), _rng.normal(size=60_000), grid_a.ravel()])
    b = np.concatenate([_whole_domain(60_000), _rng.normal(size=60_000), grid_b.ravel()])
    return a, b


_A, _B = _pairs()


def _loop2(fn):
    @numba.njit(error_model="numpy")
    def loop(a, b):
        out = np.empty_like(a)
        for i in range(a.size):
            out[i] = fn(a[i], b[i])
        return out

    return loop


_BINARY = {
    "arctan2": (rt.varctan2, np.arctan2),
    "xlogy": (rt.vxlogy, scipy.special.xlogy),
    # scipy.special.xlog1py is up to 3 ulp from the exact value: x log1p(y) in numpy's log1p is
    # within 1.5 (and mpmath below checks 1 ulp)
    "xlog1py": (rt.vxlog1py, lambda x, y: np.where((x == 0) & ~np.isnan(y), 0.0, x * np.log1p(y))),
}
_BINARY_LOOPS = {name: _loop2(fn) for name, (fn, _) in _BINARY.items()}


def _unary_points(name):
    return _P_DATA if name == "logit" else _UNARY_DATA


@pytest.mark.parametrize("name", sorted(_UNARY))
def test_a_loop_of_it_is_within_two_ulp_of_numpy_over_the_whole_domain(name):
    x = _unary_points(name)
    with np.errstate(all="ignore"):
        want = _UNARY[name][1](x)
    _check_ulps(name, x, _UNARY_LOOPS[name](x), want)


@pytest.mark.parametrize("name", sorted(_BINARY))
def test_a_loop_of_the_binary_ones_is_within_two_ulp_over_every_pair_of_edges(name):
    a, b = _A, _B
    if name != "arctan2":  # log's domain, and its edge values
        b = np.concatenate([np.abs(b[: b.size // 2]), b[b.size // 2 :]])
    with np.errstate(all="ignore"):
        want = _BINARY[name][1](a, b)
    _check_ulps(name, np.stack([a, b], axis=1).tolist(), _BINARY_LOOPS[name](a, b), want)


def test_their_tile_kernels_round_the_float64_result_to_float32():
    """Kernels call the twins through ``v<op>_tile`` (in place over a tile's buffers); float32
    buffers are computed in float64 and rounded once: within 1 float32 ulp of numpy's float64."""
    for name in _UNARY:
        x = _unary_points(name)
        x = x[~(np.abs(x) >= 3e38)].astype(np.float32)
        got = x.copy()
        getattr(rt, f"v{name}_tile")(got, got.size - 5)  # (the last five untouched)
        with np.errstate(all="ignore"):
            want = _UNARY[name][1](x.astype(np.float64)).astype(np.float32)
        _check_ulps(name, x[:-5], got[:-5], want[:-5], limit=1.0)
        assert got[-5:].tobytes() == x[-5:].tobytes()
    with np.errstate(over="ignore"):  # (beyond float32's range: +-inf, points of their own)
        a, b = _A.astype(np.float32), _B.astype(np.float32)
    got = a.copy()
    rt.varctan2_tile(got, b.copy(), got.size)
    with np.errstate(all="ignore"):
        want = np.arctan2(a.astype(np.float64), b.astype(np.float64)).astype(np.float32)
    _check_ulps("arctan2", a, got, want, limit=1.0)


def test_special_values():
    inf, nan = math.inf, math.nan
    cases = {
        "expm1": [
            (0.0, 0.0),
            (-0.0, -0.0),
            (inf, inf),
            (-inf, -1.0),
            (710.0, inf),
            (-50.0, -1.0),
            (5e-324, 5e-324),
        ],
        "sinh": [(0.0, 0.0), (-0.0, -0.0), (inf, inf), (-inf, -inf), (710.47, np.sinh(710.47)), (711.0, inf)],
        "cosh": [(0.0, 1.0), (-0.0, 1.0), (inf, inf), (-inf, inf), (-710.47, np.cosh(710.47)), (-711.0, inf)],
        "arcsin": [
            (0.0, 0.0),
            (-0.0, -0.0),
            (1.0, math.pi / 2),
            (-1.0, -math.pi / 2),
            (1.0000000000000002, nan),
        ],
        "arccos": [
            (1.0, 0.0),
            (-1.0, math.pi),
            (0.0, math.pi / 2),
            (-0.0, math.pi / 2),
            (-1.0000000000000002, nan),
        ],
        "logit": [
            (0.0, -inf),
            (-0.0, -inf),
            (1.0, inf),
            (0.5, 0.0),
            (-5e-324, nan),
            (1.0000000000000002, nan),
        ],
    }
    for name, pairs in cases.items():
        x = np.array([p[0] for p in pairs] + [nan])
        want = np.array([p[1] for p in pairs] + [nan])
        # the zeros, infinities and nan exactly (and their signs), the rest within 1 ulp
        _check_ulps(name, x, _UNARY_LOOPS[name](x), want, limit=1.0)
    # arctan2: C99's values at signed zeros and infinities; xlogy(0, y) = 0 for any y but nan
    zeros = [0.0, -0.0]
    a = np.array(zeros * 2 + [1.0, -1.0, inf, inf, -inf, -inf, 1.0, 1.0, -1.0, nan])
    b = np.array([0.0, 0.0, -0.0, -0.0, 0.0, -0.0, inf, -inf, inf, -inf, inf, -inf, -inf, 1.0])
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(_BINARY_LOOPS["arctan2"](a, b), np.arctan2(a, b))
        assert np.array_equal(np.signbit(_BINARY_LOOPS["arctan2"](a, b)), np.signbit(np.arctan2(a, b)))
    x = np.array([0.0, -0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 2.0, -2.0, 2.0, inf])
    y = np.array([0.0, 0.0, -1.0, inf, nan, 1.0, 0.0, inf, 0.0, -1.0, 1.0])
    with np.errstate(all="ignore"):
        for name in ("xlogy", "xlog1py"):
            yy = y - 1.0 if name == "xlog1py" else y
            got, want = _BINARY_LOOPS[name](x, yy), getattr(scipy.special, name)(x, yy)
            np.testing.assert_array_equal(got, want, err_msg=name)


def test_they_are_within_one_ulp_of_the_exact_value():
    """Against mpmath rounded to the nearest double (numpy's cosh near 0 and SciPy's xlog1py are
    themselves further off); xlogy and xlog1py within 2."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    rng = np.random.default_rng(5)
    n = 400
    wide = np.concatenate([rng.uniform(-3, 3, n), rng.uniform(-40, 40, n), rng.uniform(0.3, 0.4, n)])
    unit = np.concatenate(
        [rng.uniform(-1, 1, n), rng.uniform(0.45, 0.55, n), 1 - np.exp(rng.uniform(-36, -1, n))]
    )
    p = np.concatenate([unit[unit > 0], np.exp(rng.uniform(-700, -1, n))])
    exact = {
        "expm1": (wide, mpmath.expm1),
        "sinh": (wide, mpmath.sinh),
        "cosh": (wide, mpmath.cosh),
        "arcsin": (unit, mpmath.asin),
        "arccos": (np.concatenate([unit, -unit]), mpmath.acos),
        "logit": (p, lambda v: mpmath.log(v / (1 - v))),
    }
    for name, (x, fn) in exact.items():
        want = np.array([float(fn(mpmath.mpf(v))) for v in x])
        _check_ulps(name, x, _UNARY_LOOPS[name](x), want, limit=1.0)
    a, b = (
        rng.normal(size=n) * 10.0 ** rng.integers(-5, 5, n),
        rng.normal(size=n) * 10.0 ** rng.integers(-5, 5, n),
    )
    y = np.abs(b)
    binary = {
        "arctan2": (b, mpmath.atan2),
        "xlogy": (y, lambda u, v: u * mpmath.log(v)),
        "xlog1py": (np.minimum(y, 1.0) - 0.9, lambda u, v: u * mpmath.log1p(v)),
    }
    for name, (second, fn) in binary.items():
        want = np.array([float(fn(mpmath.mpf(u), mpmath.mpf(v))) for u, v in zip(a, second)])
        # xlogy, xlog1py: x times a log within 1 ulp, rounded
        _check_ulps(name, a, _BINARY_LOOPS[name](a, second), want, limit=1.0 if name == "arctan2" else 2.0)


def test_llvm_vectorises_the_loops_of_them():
    """The loops above (compiled once): LLVM put each on SIMD lanes (vector types in the optimised
    IR), with no libm function left to call (LLVM's vector intrinsics of one become a call per lane)."""
    libm = "expm1|sinh|cosh|asin|acos|atan2|atan|exp|log|log1p"
    for name, loop in [*_UNARY_LOOPS.items(), *_BINARY_LOOPS.items()]:
        args = (np.full(64, 0.25),) * (2 if name in _BINARY_LOOPS else 1)
        loop(*args)
        ir = "\n".join(loop.inspect_llvm().values())
        assert re.search(r"fmul [^\n]*<\d+ x double>", ir), f"the loop of {name} was not vectorised"
        assert not re.search(rf"@(llvm\.)?({libm})(\.v\d+f64|\.f64)?\(", ir), name


_OPS = ["expm1", "sinh", "cosh", "arcsin", "arccos", "logit", "arctan2", "xlogy", "xlog1py"]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_compiled_values_and_gradients_match_numpy(backend):
    """One kernel computing each of them and the gradient of their sum: on numba its loop's passes on
    SIMD lanes call the twins' tile kernels (xlogy, xlog1py and the gradient's log and log1p inline;
    its cosh and sinh are the values') and no libm function; the values within 2 ulp of numpy's (SciPy's), the gradients against their
    formulas."""
    import symgrad as sg

    x, y = sg.tensor("x", ("n",)), sg.tensor("y", ("n",))
    w = x / (1 + sg.abs(x))  # in (-1, 1), computed as numpy computes it
    p = 1 / (1 + x * x)  # in (0, 1]
    terms = [
        sg.expm1(x),
        sg.sinh(x),
        sg.cosh(x),
        sg.arcsin(w),
        sg.arccos(w),
        sg.logit(p),
        sg.arctan2(x, y),
        sg.xlogy(x, y * y),
        sg.xlog1py(x, y * y),
    ]
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    f = sg.compile(terms + sg.grad(sg.sum(total), [x, y]), [x, y], backend=backend).wait()
    if backend == "numba":
        kernel = f.source.split("kernel_entry")[0]
        # (through their tile kernels, compiled once: inlined, each costs a kernel's build seconds)
        assert all(f"_rt.v{op}_tile(" in kernel for op in _OPS[:7])
        assert all(f"_rt.v{op}(" in kernel for op in ["xlogy", "xlog1py", "log", "log1p"])
        libm = r"np\.(expm1|sinh|cosh|arcsin|arccos|arctan2|log|log1p)\(|_rt\.(logit|xlogy|xlog1py)\("
        assert not re.search(libm, kernel)
    rng = np.random.default_rng(8)
    xs = np.concatenate(
        [rng.uniform(-30, 30, 3000), rng.normal(size=3000), [0.0, -0.0, 1e-300, 700.0, -700.0]]
    )
    ys = np.concatenate([rng.uniform(-3, 3, 3000), rng.normal(size=3000), [0.0, 1.0, -0.0, 2.0, -1e-300]])
    got = f(xs, ys)
    with np.errstate(all="ignore"):
        ws, ps = xs / (1 + np.abs(xs)), 1 / (1 + xs * xs)
        wants = [
            np.expm1(xs),
            np.sinh(xs),
            np.cosh(xs),
            np.arcsin(ws),
            np.arccos(ws),
            scipy.special.logit(ps),
            np.arctan2(xs, ys),
            scipy.special.xlogy(xs, ys * ys),
            np.where(xs == 0, 0.0, xs * np.log1p(ys * ys)),
        ]
    for name, value, want in zip(_OPS, got, wants):
        _check_ulps(name, xs, value, want)
    # the gradient where its terms are finite and 1 - p keeps 14 digits (logit's p (1 - p))
    keep = (np.abs(xs) < 5) & (np.abs(xs) > 0.1) & (ys != 0)
    gx, gy = got[-2][keep], got[-1][keep]
    x0, y0 = xs[keep], ys[keep]
    dw = 1 / (1 + np.abs(x0)) ** 2
    r2 = x0**2 + y0**2
    want_x = np.exp(x0) + np.cosh(x0) + np.sinh(x0) - 2 / x0 + y0 / r2 + np.log(y0 * y0) + np.log1p(y0 * y0)
    want_y = -x0 / r2 + 2 * x0 / y0 + x0 * 2 * y0 / (1 + y0 * y0)
    # (arcsin's and arccos's terms cancel: each to 1e-12 of its size)
    scale = (
        np.exp(np.abs(x0))
        + 2 / np.abs(x0)
        + 1 / r2
        + np.abs(np.log(y0 * y0))
        + 2 * dw / np.sqrt(1 - ws[keep] ** 2)
    )
    assert np.all(np.abs(gx - want_x) <= 1e-12 * scale)
    assert np.all(np.abs(gy - want_y) <= 1e-12 * (np.abs(x0) / np.abs(y0) + np.abs(x0) / r2 + 1))
