"""Every elementwise function with a twin on SIMD lanes (its record's ``vector``: an inlined
``_rt.v<op>`` or a compiled ``_rt.v<op>_tile``) runs on lanes in the value-and-grad kernel as in
the forward one, and so do the twins its derivative calls; the numbers are SciPy's and numpy's.

Loops over a matrix put each row's elements on lanes the same way (fusion's lanes_axis; rows
of a known length under ROW_LANES_MIN and loops under LANES_MIN_ELEMENTS elements excepted),
their rows in order on one thread and in blocks on two, with the same bits.

Two rules keep a gradient's loop on lanes: a short run of elementwise array statements (log_ndtr's
asymptotic series, 9 steps) fuses rather than rolling into one pass over the arrays a step
(numba_backend.kernel_ir), and a where whose branches hold ops with twins selects between both
branches computed on lanes rather than branching (tiling.selected_on_lanes).

The structure is checked on the kernel's IR (no numba compile); the numbers in one numba kernel
covering every function, against SciPy/numpy for the values, mpmath for the derivatives (exact
at the double the kernel got) and central differences of SciPy's values.
"""

import re

import numpy as np
import pytest
import scipy.special

import symgrad as sg
from symgrad.autodiff import grad
from symgrad.codegen import ir, threads, tiling
from symgrad.codegen.fusion import LANES_MIN_ELEMENTS, ROW_LANES_MIN
from symgrad.codegen.numba_backend import NumbaEmitter
from symgrad.codegen.schedule import ROLL_MIN_STATEMENTS, schedule
from symgrad.ops.registry import OPS

mpmath = pytest.importorskip("mpmath")

N = 100_000
_rng = np.random.default_rng(2323)


def _sigmoid(v):
    return 1 / (1 + mpmath.exp(-v))


# name -> (the symgrad function, the op it puts on lanes, SciPy/numpy's, mpmath's, sample points)
FUNCTIONS = {
    "exp": (sg.exp, "exp", np.exp, mpmath.exp, (-700, 700)),
    "expm1": (sg.expm1, "expm1", np.expm1, mpmath.expm1, (-50, 700)),
    "log": (sg.log, "log", np.log, mpmath.log, (1e-300, 1e300)),
    "log1p": (sg.log1p, "log1p", np.log1p, mpmath.log1p, (-0.999, 1e300)),
    "sin": (sg.sin, "sin", np.sin, mpmath.sin, (-1e3, 1e3)),
    "cos": (sg.cos, "cos", np.cos, mpmath.cos, (-1e3, 1e3)),
    "tan": (sg.tan, "tan", np.tan, mpmath.tan, (-1e3, 1e3)),
    "arcsin": (sg.arcsin, "arcsin", np.arcsin, mpmath.asin, (-0.999, 0.999)),
    "arccos": (sg.arccos, "arccos", np.arccos, mpmath.acos, (-0.999, 0.999)),
    "arctan": (sg.arctan, "arctan", np.arctan, mpmath.atan, (-1e150, 1e150)),
    "sinh": (sg.sinh, "sinh", np.sinh, mpmath.sinh, (-700, 700)),
    "cosh": (sg.cosh, "cosh", np.cosh, mpmath.cosh, (-700, 700)),
    "tanh": (sg.tanh, "tanh", np.tanh, mpmath.tanh, (-30, 30)),
    "sigmoid": (sg.sigmoid, "sigmoid", scipy.special.expit, _sigmoid, (-700, 700)),
    "softplus": (
        sg.softplus,
        "softplus",
        lambda v: np.logaddexp(0.0, v),
        lambda v: mpmath.log1p(mpmath.exp(v)),
        (-700, 700),
    ),
    "erf": (sg.erf, "erf", scipy.special.erf, mpmath.erf, (-6, 6)),
    "ndtr": (sg.ndtr, "ndtr", scipy.special.ndtr, mpmath.ncdf, (-38, 38)),
    "log_ndtr": (
        sg.log_ndtr,
        "log_ndtr",
        scipy.special.log_ndtr,
        lambda v: mpmath.log(mpmath.ncdf(v)),
        (-1e5, 38),
    ),
    "logit": (sg.logit, "logit", scipy.special.logit, lambda v: mpmath.log(v / (1 - v)), (1e-300, 0.999)),
    "sqrt_pow": (lambda v: v**0.5, "pow", np.sqrt, mpmath.sqrt, (1e-300, 1e300)),
    "pow_2.5": (lambda v: v**2.5, "pow", lambda v: v**2.5, lambda v: v ** mpmath.mpf(2.5), (1e-100, 1e100)),
    "logaddexp": (
        lambda v: sg.logaddexp(v, 1.0),
        "logaddexp",
        lambda v: np.logaddexp(v, 1.0),
        lambda v: mpmath.log(mpmath.exp(v) + mpmath.e),
        (-700, 700),
    ),
    "arctan2": (
        lambda v: sg.arctan2(v, 1.5),
        "arctan2",
        lambda v: np.arctan2(v, 1.5),
        lambda v: mpmath.atan2(v, 1.5),
        (-1e150, 1e150),
    ),
    "xlogy": (
        lambda v: sg.xlogy(2.0, v),
        "xlogy",
        lambda v: scipy.special.xlogy(2.0, v),
        lambda v: 2 * mpmath.log(v),
        (1e-300, 1e300),
    ),
    "xlog1py": (
        lambda v: sg.xlog1py(2.0, v),
        "xlog1py",
        lambda v: scipy.special.xlog1py(2.0, v),
        lambda v: 2 * mpmath.log1p(v),
        (-0.999, 1e300),
    ),
}


def test_every_op_with_a_twin_on_lanes_is_covered():
    assert {op for _, op, *_ in FUNCTIONS.values()} == {name for name, op in OPS.items() if op.vector}


def _kernel_ir(loss, inputs, backward=True):
    outputs = [loss, *grad(loss, inputs)] if backward else [loss]
    forward, back = schedule(outputs, 1)
    em = NumbaEmitter()
    block = em.kernel_ir(forward, back, {id(o): f"out{k}" for k, o in enumerate(outputs)}, outputs)
    return em, block


def _placement(block):
    """(the ops computed by a tile kernel, the ops computed on lanes, the ops with a twin computed
    one element at a time on the scalar path) in ``block``."""
    tiles = {s.node.op for s in ir.walk(block) if isinstance(s, ir.TileCall)}
    instrs = [s for s in ir.walk(block) if isinstance(s, ir.Instr) and s.scalar]
    lanes = {s.node.op for s in instrs if s.lanes}
    scalar = {s.node.op for s in instrs if not s.lanes and OPS[s.node.op].on_lanes(s.node)}
    return tiles, lanes, scalar


@pytest.mark.parametrize("form", ["sum(f(x))", "sum(f(x) * x)", "forward"])
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_the_function_and_its_derivatives_twins_run_on_lanes(name, form):
    f, op = FUNCTIONS[name][:2]
    x = sg.tensor("x", (N,))
    loss = sg.sum(f(x) * x) if form == "sum(f(x) * x)" else sg.sum(f(x))
    em, block = _kernel_ir(loss, [x], backward=form != "forward")
    tiles, lanes, scalar = _placement(block)
    assert em.rolled is None
    assert op in tiles | lanes, (tiles, lanes)
    # nothing with a twin is left to libm: the derivative's exp (erf, ndtr, log_ndtr), cos (sin),
    # sigmoid (softplus, logaddexp), cosh (sinh) run on lanes too
    assert not scalar, scalar


def _series(z, steps):
    s = z * 0.5
    for k in range(steps):
        s = s * z + (k + 1.0)
    return s


def test_a_short_run_of_elementwise_steps_fuses_and_a_long_one_rolls():
    x = sg.tensor("x", (N,))
    # 2 statements a step: 9 steps (18 statements) fuse with the exp on lanes; from
    # ROLL_MIN_STATEMENTS statements the run rolls into loops over the arrays, as a scalar run does
    em, block = _kernel_ir(sg.sum(sg.exp(_series(1 / (1 + x * x), 9))), [x])
    assert em.rolled is None and "exp" in _placement(block)[1]
    em, _ = _kernel_ir(sg.sum(sg.exp(_series(1 / (1 + x * x), ROLL_MIN_STATEMENTS // 2 + 1))), [x])
    assert em.rolled is not None


def _branched(block):
    """The ops computed inside a branch of an ``If`` in ``block``."""
    return {
        s.node.op
        for stmt in ir.walk(block)
        if isinstance(stmt, ir.If)
        for s in ir.walk([s for b in stmt.blocks for s in b])
        if isinstance(s, ir.Instr)
    }


def test_a_where_selects_between_branches_on_lanes_only_when_they_hold_a_twin():
    x = sg.tensor("x", (N,))
    # log (a twin) in a branch: both computed on lanes, the where a select (the gradient's
    # where(x > 0, g / x, 0), no twin, still branches)
    _, block = _kernel_ir(sg.sum(sg.where(x > 0, sg.log(x), -x) * x), [x])
    assert "log" not in _branched(block) and "log" in _placement(block)[1]
    # nested: the inner where's log on lanes; the outer where, no twin of its own, keeps its branch
    inner = sg.where(x > 1, sg.log(x), x)
    _, block = _kernel_ir(sg.sum(sg.where(x > 0, inner * x, -x)), [x], backward=False)
    assert "log" not in _branched(block) and "log" in _placement(block)[1] and "neg" in _branched(block)
    # no twin in either branch: the branch stays (only the taken one is computed)
    _, block = _kernel_ir(sg.sum(sg.where(x > 0, sg.sqrt(x), -x)), [x], backward=False)
    assert "sqrt" in _branched(block)
    # a libm call without a twin (gammaln) in a branch: it stays, the loop off lanes
    _, block = _kernel_ir(sg.sum(sg.where(x > 0, sg.gammaln(x), sg.exp(x))), [x], backward=False)
    assert {"gammaln", "exp"} <= _branched(block)
    # a loop calling libm outside any branch is not tiled: the where keeps its branches
    _, block = _kernel_ir(sg.sum(sg.gammaln(x) + sg.where(x > 0, sg.log(x), -x)), [x], backward=False)
    assert "log" in _branched(block)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=pytest.mark.slow)])
def test_where_selected_on_lanes_gives_the_taken_branchs_numbers(backend):
    x = sg.tensor("x", ("n",))
    nested = sg.where(x > 0, sg.where(x > 1, sg.log(x), x) * x, -x)
    loss = sg.sum(sg.where(x > 0, sg.log(x) * sg.exp(-x), sg.sin(x) * x)) + sg.sum(nested)
    data = np.array([-1e300, -3.0, -1e-300, -0.0, 0.0, 1e-300, 0.5, 1.0, 2.0, 700.0, 1e300] * 30)
    value, (d_x,) = sg.value_and_grad(loss, wrt=[x], backend=backend)(data)
    with np.errstate(all="ignore"):
        terms = np.where(data > 0, np.log(data) * np.exp(-data), np.sin(data) * data)
        terms += np.where(data > 1, np.log(data) * data, np.where(data > 0, data * data, -data))
        slope = np.where(
            data > 0, np.exp(-data) * (1 / data - np.log(data)), np.sin(data) + data * np.cos(data)
        )
        slope += np.where(data > 1, np.log(data) + 1, np.where(data > 0, 2 * data, -1.0))
    assert np.isclose(value, np.sum(terms), rtol=1e-13)
    np.testing.assert_allclose(d_x, slope, rtol=1e-13, atol=0)


# ---------------------------------------------------------------- the numbers


def _points(name, m):
    """``m`` points over ``FUNCTIONS[name]``'s domain: uniform in its core, log-uniform in
    magnitude over the whole range (the tails), and the range's ends."""
    lo, hi = FUNCTIONS[name][4]
    core = _rng.uniform(max(lo, -5.0), min(hi, 5.0), m // 3)
    if lo > 0:
        tails = np.exp(_rng.uniform(np.log(lo), np.log(hi), m // 3))
    else:
        big = max(-lo, hi)
        tails = np.exp(_rng.uniform(np.log(1e-8), np.log(big), m // 3)) * _rng.choice([-1.0, 1.0], m // 3)
        tails = tails[(tails > lo) & (tails < hi)]
    ends = np.array([lo, hi, np.nextafter(lo, hi), np.nextafter(hi, lo)])
    out = np.concatenate([ends, core, tails, _rng.uniform(lo, hi, m)])[:m]
    return out[np.isfinite(out)]


M = 240  # points a function


def _sech2(v):
    return 1 / mpmath.cosh(v) ** 2


# the derivatives, in mpmath
SLOPES = {
    "exp": mpmath.exp,
    "expm1": mpmath.exp,
    "log": lambda v: 1 / v,
    "log1p": lambda v: 1 / (1 + v),
    "sin": mpmath.cos,
    "cos": lambda v: -mpmath.sin(v),
    "tan": lambda v: 1 / mpmath.cos(v) ** 2,
    "arcsin": lambda v: 1 / mpmath.sqrt(1 - v * v),
    "arccos": lambda v: -1 / mpmath.sqrt(1 - v * v),
    "arctan": lambda v: 1 / (1 + v * v),
    "sinh": mpmath.cosh,
    "cosh": mpmath.sinh,
    "tanh": _sech2,
    "sigmoid": lambda v: _sigmoid(v) * _sigmoid(-v),
    "softplus": _sigmoid,
    "erf": lambda v: 2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-v * v),
    "ndtr": mpmath.npdf,
    "log_ndtr": lambda v: mpmath.npdf(v) / mpmath.ncdf(v),
    "logit": lambda v: 1 / (v * (1 - v)),
    "sqrt_pow": lambda v: 1 / (2 * mpmath.sqrt(v)),
    "pow_2.5": lambda v: mpmath.mpf(2.5) * v ** mpmath.mpf(1.5),
    "logaddexp": lambda v: 1 / (1 + mpmath.exp(1 - v)),
    "arctan2": lambda v: mpmath.mpf(1.5) / (v * v + mpmath.mpf(2.25)),
    "xlogy": lambda v: 2 / v,
    "xlog1py": lambda v: 2 / (1 + v),
}


def test_every_function_has_its_derivative():
    assert set(SLOPES) == set(FUNCTIONS)


def _truth(name, points):
    """mpmath's value and derivative of ``name`` at each double of ``points``, rounded to doubles."""
    fn, slope = FUNCTIONS[name][3], SLOPES[name]
    with mpmath.workdps(60):
        at = [mpmath.mpf(float(v)) for v in points]
        values = [float(fn(v)) for v in at]
        slopes = [float(slope(v)) for v in at]
    return np.array(values), np.array(slopes)


@pytest.fixture(scope="module")
def kernel_and_data():
    """One value-and-grad build for every function: sum over k of sum(f_k(x_k) * w_k), so
    d/dw_k = f_k(x_k) (the values, element by element) and d/dx_k = w_k f_k'(x_k)."""
    xs = {name: sg.tensor("x_" + str(k), (M,)) for k, name in enumerate(FUNCTIONS)}
    ws = {name: sg.tensor("w_" + str(k), (M,)) for k, name in enumerate(FUNCTIONS)}
    loss = sum(sg.sum(FUNCTIONS[name][0](xs[name]) * ws[name]) for name in FUNCTIONS)
    wrt = list(xs.values()) + list(ws.values())
    data = {}
    for name in FUNCTIONS:
        p = _points(name, M)
        data[name] = np.resize(p, M)
    args = [data[name] for name in FUNCTIONS] + [np.ones(M)] * len(FUNCTIONS)
    return loss, wrt, args, data


# derivatives whose rule is accurate to an absolute error only, as autodiff systems write them
# from the value: tanh's 1 - tanh^2 (0 from |x| = 19, where the exact value is 1e-16 and below)
# and expm1's expm1 + 1 (0 below x = -37)
SLOPE_ATOL = {"tanh": 2.5e-16, "expm1": 2.5e-16}


def _check(name, values, slopes, data, exact=True):
    points = data[name]
    want = FUNCTIONS[name][2](points)
    # SciPy's and numpy's values: within 4e-15, but SciPy's ndtr in its left tail (off by up to
    # 1.2e-13 there: the exact value decides, below)
    np.testing.assert_allclose(
        values, want, rtol=4e-15 if name != "ndtr" else 2e-13, atol=1e-300, err_msg=name
    )
    if exact:
        exact_values, exact_slopes = _truth(name, points)
        np.testing.assert_allclose(values, exact_values, rtol=4e-15, atol=1e-300, err_msg=name)
        atol = SLOPE_ATOL.get(name, 1e-300)
        np.testing.assert_allclose(slopes, exact_slopes, rtol=1e-12, atol=atol, err_msg=name)
    # central differences of SciPy's values at points of the core
    core = np.abs(points) < 3
    if name in ("logit", "arcsin", "arccos", "log1p", "xlog1py"):
        core &= np.abs(points) < 0.9
    if name in ("log", "logit", "sqrt_pow", "pow_2.5", "xlogy"):
        core &= points > 0.1
    v = points[core][:20]
    h = 1e-6
    central = (FUNCTIONS[name][2](v + h) - FUNCTIONS[name][2](v - h)) / (2 * h)
    np.testing.assert_allclose(slopes[core][:20], central, rtol=1e-6, atol=1e-8, err_msg=name)


def _check_every(grads, data, exact=True):
    """_check of each function: d/dw_k holds its values, d/dx_k its derivatives (any shape)."""
    k = len(FUNCTIONS)
    for j, name in enumerate(FUNCTIONS):
        _check(name, grads[k + j].ravel(), grads[j].ravel(), data, exact)


# the kernels of the numbers: every function over a vector (a loop over rows), and over a
# matrix times a vector of ones (a loop nest: each row's elements on lanes)
DATA = {"rows": "kernel_and_data", "nest": "nest_kernel_and_data"}


@pytest.mark.slow
@pytest.mark.parametrize("loop", list(DATA))
def test_values_and_gradients_on_the_numba_backend_are_scipys_and_exact(loop, request):
    loss, wrt, args, data = request.getfixturevalue(DATA[loop])
    vg = sg.value_and_grad(loss, wrt=wrt)
    value, grads = vg(*args)
    _check_every(grads, data)
    assert np.isclose(value, sum(np.sum(FUNCTIONS[n][2](data[n])) for n in FUNCTIONS), rtol=1e-12)
    # the kernel the numbers came from computes every function on lanes
    assert "# on SIMD lanes" in vg.source
    assert ("each row in tiles of" in vg.source) is (loop == "nest")
    called = set(re.findall(r"_rt\.v(\w+?)(?:_tile)?\(", vg.source))
    if "sincos" in called:  # sin and cos of one operand: one call
        called |= {"sin", "cos"}
    assert {FUNCTIONS[name][1] for name in FUNCTIONS} <= called, called


@pytest.mark.parametrize("loop", list(DATA))
def test_values_on_the_numpy_backend_are_scipys(loop, request):
    loss, wrt, args, data = request.getfixturevalue(DATA[loop])
    _, grads = sg.value_and_grad(loss, wrt=wrt, backend="numpy")(*args)
    _check_every(grads, data, exact=False)


# ---------------------------------------------------------------- loop nests


@pytest.mark.parametrize("form", ["sum(f(A * c))", "rows", "forward"])
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_a_loop_nests_rows_run_on_lanes(name, form):
    # an (n, m) loop: each row's elements in tiles on lanes, the rows the outer loop; a (m,)
    # operand read along the row, and per-row sums (a softmax's) beside it
    f, op = FUNCTIONS[name][:2]
    A, c = sg.tensor("A", (N // 100, 100)), sg.tensor("c", (100,))
    terms = f(A * c)
    loss = sg.sum(sg.sum(terms, axis=1) ** 2) if form == "rows" else sg.sum(terms)
    em, block = _kernel_ir(loss, [A, c], backward=form != "forward")
    tiles, lanes, scalar = _placement(block)
    assert op in tiles | lanes, (tiles, lanes)
    assert not scalar, scalar
    # the tiles are of a row's elements: a loop over the rows holding the tile loop
    rows = [s for s in block if isinstance(s, ir.For) and s.fused is not None and s.step is None]
    assert any(isinstance(t, ir.For) and t.step == tiling.TILE for s in rows for t in s.body)


def _tiles(block):
    return [s for s in ir.walk(block) if isinstance(s, ir.For) and s.step == tiling.TILE]


def test_a_loop_nest_with_a_column_of_one_element_is_tiled_as_rows_and_short_rows_are_not():
    A = sg.tensor("A", ("n", "m"))
    _, block = _kernel_ir(sg.sum(sg.exp(sg.sum(A, axis=1, keepdims=True))), [A], backward=False)
    assert any(s.fused is not None for s in _tiles(block))
    # rows of a known length below ROW_LANES_MIN: one element at a time, on libm
    for width, tiled in ((ROW_LANES_MIN - 1, False), (ROW_LANES_MIN, True)):
        B = sg.tensor("B", ("n", width))
        _, block = _kernel_ir(sg.sum(sg.tanh(B)), [B], backward=False)
        assert bool(_tiles(block)) is tiled
        assert ("tanh" in _placement(block)[1]) is tiled
    # a loop of known size below LANES_MIN_ELEMENTS elements, whatever its shape: on libm
    for shape, tiled in (((LANES_MIN_ELEMENTS - 1,), False), ((LANES_MIN_ELEMENTS,), True), ((4, 1), False)):
        B = sg.tensor("B", shape)
        _, block = _kernel_ir(sg.sum(sg.sigmoid(B) ** 2), [B])
        assert bool(_tiles(block)) is tiled, shape
        assert ("sigmoid" in _placement(block)[1]) is tiled, shape


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=pytest.mark.slow)])
def test_a_loop_nest_adding_into_gradients_of_slices_gives_numpys_numbers(backend):
    # d_A[i + 1, j] += ... and d_A[i, j] += ... from each element of an (n - 1, m) loop on lanes
    A = sg.tensor("A", ("n", "m"))
    vg = sg.value_and_grad(sg.sum(sg.exp(A[1:] - A[:-1]) * sg.sin(A[1:])), wrt=[A], backend=backend)
    if backend == "numba":
        assert "each row in tiles of" in vg.source
    a = np.random.default_rng(6).normal(size=(7, 300))
    value, (d_a,) = vg(a)
    e, s = np.exp(a[1:] - a[:-1]), np.sin(a[1:])
    g = np.zeros_like(a)
    g[1:] += e * s + e * np.cos(a[1:])
    g[:-1] -= e * s
    assert np.isclose(value, np.sum(e * s), rtol=1e-13)
    np.testing.assert_allclose(d_a, g, rtol=1e-13, atol=1e-15)


def test_a_square_loop_nests_tiles_keep_their_bound_in_row_blocks():
    # rows and row length the same dim: the blocked loop's tiles of a row end at the row's end,
    # not at the block's last row (the bound of a loop over rows' tiles)
    A = sg.tensor("A", ("n", "n"))
    _, block = _kernel_ir(sg.sum(sg.exp(A) * A), [A])
    blocked, _ = threads.block(block)
    tiles = [s for s in ir.walk(blocked) if isinstance(s, ir.Bound) and s.size == tiling.TILE]
    assert tiles and not any(isinstance(s.stop, ir.LoopVar) and s.stop.hint == "hi" for s in tiles)


def _loop_nest():
    """sum over rows of logsumexp(tanh(A * c)) + sum(sin(A) * A): value and gradient in A and c,
    and numpy's."""
    A, c = sg.tensor("A", ("n", "m")), sg.tensor("c", ("m",))
    loss = sg.sum(sg.log(sg.sum(sg.exp(sg.tanh(A * c)), axis=1))) + sg.sum(sg.sin(A) * A)
    vg = sg.value_and_grad(loss, wrt=[A, c])

    def truth(a, cv):
        t = np.tanh(a * cv)
        e = np.exp(t)
        soft = e / e.sum(axis=1, keepdims=True)
        d_pre = soft * (1 - t * t)
        value = np.sum(np.log(e.sum(axis=1))) + np.sum(np.sin(a) * a)
        return value, (d_pre * cv + np.cos(a) * a + np.sin(a), np.sum(d_pre * a, axis=0))

    return vg, truth


@pytest.mark.slow
@pytest.mark.parametrize("m", [3, 100, 300])
def test_loop_nest_values_and_gradient_are_numpys_on_one_and_two_threads(m):
    # rows of 3 elements, of 100 (one short tile) and of 300 (a tile and a short one), enough of
    # them for the row blocks on the threads (MIN_ROWS elements); the same bits on 1 and 2 threads
    vg, truth = _loop_nest()
    assert "each row in tiles of" in vg.source and "_rt.vtanh(" in vg.source
    # the loop nests run in row blocks on the threads too, each block its own tile buffers
    blocks = vg.source[vg.source.index("def kernel_blocks(") :]
    assert blocks.count("numba.prange(") == blocks.count("# fused loop") == 5
    vg.wait()
    rows = threads.MIN_ROWS // m + 7
    rng = np.random.default_rng(m)
    a, cv = rng.normal(size=(rows, m)), rng.normal(size=m)
    with sg.config(threads=1):
        one = vg(a, cv)
    with sg.config(threads=2):
        two = vg(a, cv)
    assert vg._entry.__globals__["kernel_blocks"].signatures  # the calls ran the row blocks
    assert np.float64(one[0]).tobytes() == np.float64(two[0]).tobytes()
    for p, q in zip(one[1], two[1]):
        assert p.tobytes() == q.tobytes()
    value, (d_a, d_c) = truth(a, cv)
    assert np.isclose(one[0], value, rtol=1e-12)
    np.testing.assert_allclose(one[1][0], d_a, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(one[1][1], d_c, rtol=1e-10, atol=1e-10)


def test_loop_nest_gradient_matches_central_differences():
    vg, _ = _loop_nest()
    rng = np.random.default_rng(5)
    a, cv = rng.normal(size=(4, 300)), rng.normal(size=300)
    _, (d_a, d_c) = vg(a, cv)
    h = 1e-5  # the value is near 740: rounding in each difference about 1e-8
    for k in (0, 255, 256, 299):
        up, down = cv.copy(), cv.copy()
        up[k] += h
        down[k] -= h
        assert np.isclose(d_c[k], (vg(a, up)[0] - vg(a, down)[0]) / (2 * h), rtol=1e-6, atol=5e-8)
        up, down = a.copy(), a.copy()
        up[3, k] += h
        down[3, k] -= h
        assert np.isclose(d_a[3, k], (vg(up, cv)[0] - vg(down, cv)[0]) / (2 * h), rtol=1e-6, atol=5e-8)


@pytest.fixture(scope="module")
def nest_kernel_and_data():
    """kernel_and_data's loss with each function over an (R, C) matrix times a (C,) vector of ones,
    its values by row: d/dW_k = f_k(X_k) and d/dX_k = W_k f_k'(X_k) element by element."""
    R, C = 12, M // 12
    xs = {name: sg.tensor("x_" + str(k), (R, C)) for k, name in enumerate(FUNCTIONS)}
    ws = {name: sg.tensor("w_" + str(k), (R, C)) for k, name in enumerate(FUNCTIONS)}
    ones = sg.tensor("ones", (C,))
    loss = sum(sg.sum(FUNCTIONS[name][0](xs[name] * ones) * ws[name]) for name in FUNCTIONS)
    wrt = list(xs.values()) + list(ws.values())
    data = {name: np.resize(_points(name, M), M) for name in FUNCTIONS}
    args = [data[name].reshape(R, C) for name in FUNCTIONS] + [np.ones((R, C))] * len(FUNCTIONS)
    return loss, wrt, [*args, np.ones(C)], data
