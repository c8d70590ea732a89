"""One table of conventions at non-smooth points, checked spelling by spelling.

Every spelling is compiled on both backends with its value, its gradient (reverse
mode) and its tangent (forward mode, along a symbolic tangent ``dx``), and checked
against the documented convention at the kink (written out here, not taken from
symgrad) and against central differences of a numpy reference away from it.
Also here: ``where`` masks the gradient of the branch not taken through
reductions, matmul and reshapes, and the numba kernels compute only the taken branch.
"""

import math

import numpy as np
import pytest

import symgrad as sg

BACKENDS = ["numpy", "numba"]

x = sg.scalar("x")
dx = sg.scalar("dx")


def _value_grad_tangent(e, backend):
    """A compiled f(x, dx) -> (value, d/dx, tangent along dx) of the scalar ``e``."""
    return sg.compile([e, sg.grad(e, x), sg.jvp(e, x, dx)], [x, dx], backend=backend)


# (name, builder, numpy reference, kink, derivative there by the convention)
SPELLINGS = [
    # relu'(0) = 0 in every spelling of relu
    ("relu", sg.relu, lambda v: np.maximum(v, 0), 0.0, 0.0),
    ("maximum(x, 0)", lambda x: sg.maximum(x, 0), lambda v: np.maximum(v, 0), 0.0, 0.0),
    ("maximum(0, x)", lambda x: sg.maximum(0, x), lambda v: np.maximum(v, 0), 0.0, 0.0),
    ("where(x > 0, x, 0)", lambda x: sg.where(x > 0, x, 0), lambda v: np.maximum(v, 0), 0.0, 0.0),
    ("where(x <= 0, 0, x)", lambda x: sg.where(x <= 0, 0, x), lambda v: np.maximum(v, 0), 0.0, 0.0),
    ("np.clip(x, 0, inf)", lambda x: np.clip(x, 0, np.inf), lambda v: np.maximum(v, 0), 0.0, 0.0),
    ("x.clip(0)", lambda x: x.clip(0), lambda v: np.maximum(v, 0), 0.0, 0.0),
    # where follows the branch its condition selects: the user's explicit choice
    ("where(x >= 0, x, 0)", lambda x: sg.where(x >= 0, x, 0), lambda v: np.maximum(v, 0), 0.0, 1.0),
    ("where(x < 0, 0, x)", lambda x: sg.where(x < 0, 0, x), lambda v: np.maximum(v, 0), 0.0, 1.0),
    ("where(x > 0, x, -x)", lambda x: sg.where(x > 0, x, -x), np.abs, 0.0, -1.0),
    ("where(x >= 0, x, -x)", lambda x: sg.where(x >= 0, x, -x), np.abs, 0.0, 1.0),
    # the sum rule, honestly: (1 + sign(0)) / 2
    ("(x + abs(x)) / 2", lambda x: (x + sg.abs(x)) / 2, lambda v: np.maximum(v, 0), 0.0, 0.5),
    # abs'(0) = sign(0) = 0
    ("abs", sg.abs, np.abs, 0.0, 0.0),
    ("builtin abs", lambda x: abs(x), np.abs, 0.0, 0.0),
    ("sign(x) * x", lambda x: sg.sign(x) * x, np.abs, 0.0, 0.0),
    ("relu(x) + relu(-x)", lambda x: sg.relu(x) + sg.relu(-x), np.abs, 0.0, 0.0),
    # a tie with a constant: the constant takes the gradient, so a clamp has slope 0 at its bound
    ("minimum(x, 0)", lambda x: sg.minimum(x, 0), lambda v: np.minimum(v, 0), 0.0, 0.0),
    ("minimum(0, x)", lambda x: sg.minimum(0, x), lambda v: np.minimum(v, 0), 0.0, 0.0),
    ("maximum(x, 1) at 1", lambda x: sg.maximum(x, 1.0), lambda v: np.maximum(v, 1), 1.0, 0.0),
    ("np.clip(x, -1, 1) at 1", lambda x: np.clip(x, -1, 1), lambda v: np.clip(v, -1, 1), 1.0, 0.0),
    ("np.clip(x, -1, 1) at -1", lambda x: np.clip(x, -1, 1), lambda v: np.clip(v, -1, 1), -1.0, 0.0),
    # smooth, though built from the larger operand: a tie is no kink, the slope is sigmoid(0)
    ("logaddexp(x, 0)", lambda x: sg.logaddexp(x, 0), lambda v: np.logaddexp(v, 0), 0.0, 0.5),
    ("logaddexp(0, x)", lambda x: sg.logaddexp(0, x), lambda v: np.logaddexp(0, v), 0.0, 0.5),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", SPELLINGS, ids=[c[0] for c in SPELLINGS])
def test_every_spelling_follows_the_convention_at_its_kink(case, backend):
    name, build, reference, kink, slope = case
    f = _value_grad_tangent(build(x), backend)
    value, d, tangent = f(kink, 0.5)
    assert value == reference(kink)
    assert d == slope
    assert tangent == 0.5 * slope  # forward mode picks the same one-sided slope
    h = 1e-6
    for p in (kink - 0.7, kink - 0.3, kink + 0.3, kink + 0.7):
        value, d, tangent = f(p, -2.0)
        central = (reference(p + h) - reference(p - h)) / (2 * h)
        assert value == pytest.approx(reference(p), rel=1e-15, abs=1e-15)
        assert d == pytest.approx(central, rel=1e-8, abs=1e-8)
        assert tangent == pytest.approx(-2.0 * central, rel=1e-8, abs=1e-8)


# ---------------------------------------------------------------- ties between two operands

# ``later`` sorts after ``earlier`` in canonical order: two symbols are ordered by name
earlier = sg.scalar("conventions_earlier")
later = sg.scalar("conventions_later")
d_earlier, d_later = sg.scalars("conventions_d_earlier conventions_d_later")

# (name, builder, (d/d earlier, d/d later) at a tie)
TIES = [
    # maximum/minimum are one node for both argument orders: the operand that sorts last takes it
    ("maximum(earlier, later)", lambda a, b: sg.maximum(a, b), (0.0, 1.0)),
    ("maximum(later, earlier)", lambda a, b: sg.maximum(b, a), (0.0, 1.0)),
    ("minimum(earlier, later)", lambda a, b: sg.minimum(a, b), (0.0, 1.0)),
    ("minimum(later, earlier)", lambda a, b: sg.minimum(b, a), (0.0, 1.0)),
    # max/min reductions: the first extreme element in C order, as argmax picks it
    ("max(stack([earlier, later]))", lambda a, b: sg.max(sg.stack([a, b])), (1.0, 0.0)),
    ("max(stack([later, earlier]))", lambda a, b: sg.max(sg.stack([b, a])), (0.0, 1.0)),
    ("min(stack([earlier, later]))", lambda a, b: sg.min(sg.stack([a, b])), (1.0, 0.0)),
    ("min(stack([later, earlier]))", lambda a, b: sg.min(sg.stack([b, a])), (0.0, 1.0)),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", TIES, ids=[c[0] for c in TIES])
def test_a_tie_routes_the_whole_gradient_to_one_operand(case, backend):
    assert earlier.name < later.name
    name, build, (ga, gb) = case
    e = build(earlier, later)
    tangent = sg.jvp(e, [earlier, later], [d_earlier, d_later])
    f = sg.compile(
        [e] + sg.grad(e, [earlier, later]) + [tangent], [earlier, later, d_earlier, d_later], backend=backend
    )
    value, da, db, t = f(1.5, 1.5, 3.0, 5.0)
    assert (value, da, db) == (1.5, ga, gb)
    assert t == 3.0 * ga + 5.0 * gb  # the directional derivative the reverse mode's choice implies
    # away from the tie the larger (smaller) operand gets the gradient
    bigger = "max" in name
    for a, b in ((1.0, 2.0), (2.0, 1.0)):
        value, da, db, t = f(a, b, 3.0, 5.0)
        a_wins = (a > b) == bigger
        assert value == (a if a_wins else b)
        assert (da, db) == ((1.0, 0.0) if a_wins else (0.0, 1.0))
        assert t == (3.0 if a_wins else 5.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_logaddexp_splits_a_tie_evenly_and_keeps_its_curvature(backend):
    e = sg.logaddexp(earlier, later)
    tangent = sg.jvp(e, [earlier, later], [d_earlier, d_later])
    (haa, hab), (hba, hbb) = sg.hessian(e, [earlier, later])
    f = sg.compile(
        [e] + sg.grad(e, [earlier, later]) + [tangent, haa, hab, hbb],
        [earlier, later, d_earlier, d_later],
        backend=backend,
    )
    for a, b in ((0.0, 0.0), (3.0, 3.0), (0.0, -40.0), (1000.0, 0.0), (-745.0, -746.0), (-np.inf, 0.0)):
        value, da, db, t, h_aa, h_ab, h_bb = f(a, b, 3.0, 5.0)
        with np.errstate(over="ignore"):  # the two sigmoids; exp(1000) is inf, its share 0
            share_a, share_b = 1 / (1 + np.exp(b - a)), 1 / (1 + np.exp(a - b))
        assert value == np.logaddexp(a, b)
        assert (da, db) == pytest.approx((share_a, share_b), rel=1e-15, abs=1e-300)
        assert t == pytest.approx(3.0 * share_a + 5.0 * share_b, rel=1e-15)
        curvature = share_a * share_b
        assert (h_aa, h_ab, h_bb) == pytest.approx((curvature, -curvature, curvature), rel=1e-12, abs=1e-300)


v = sg.tensor("v", (5,))
dv = sg.tensor("dv", (5,))
M = sg.tensor("M", (2, 3))
dM = sg.tensor("dM", (2, 3))

# (name, builder of a scalar, symbol, its tangent, point, expected gradient by the convention)
TENSOR_TIES = [
    ("max", lambda v: sg.max(v), v, dv, [1.0, 3.0, 3.0, 2.0, 3.0], [0, 1, 0, 0, 0]),
    ("min", lambda v: sg.min(v), v, dv, [1.0, 3.0, 1.0, 2.0, 1.0], [1, 0, 0, 0, 0]),
    (
        "max over axis 1",
        lambda M: sg.sum(sg.max(M, axis=1) * np.array([1.0, 10.0])),
        M,
        dM,
        [[2.0, 2.0, 1.0], [0.0, 4.0, 4.0]],
        [[1, 0, 0], [0, 10, 0]],
    ),
    (
        "min over axis 0",
        lambda M: sg.sum(sg.min(M, axis=0) * np.array([1.0, 10.0, 100.0])),
        M,
        dM,
        [[2.0, 2.0, 1.0], [2.0, 4.0, 1.0]],
        [[1, 10, 100], [0, 0, 0]],
    ),
    (
        "maximum(v, 2)",
        lambda v: sg.sum(sg.maximum(v, 2.0)),
        v,
        dv,
        [2.0, 3.0, 1.0, 2.0, 5.0],
        [0, 1, 0, 0, 1],
    ),
    ("relu", lambda v: sg.sum(sg.relu(v)), v, dv, [0.0, 3.0, -1.0, 0.0, 5.0], [0, 1, 0, 0, 1]),
    (
        "np.clip(v, 0, 1)",
        lambda v: sg.sum(np.clip(v, 0.0, 1.0)),
        v,
        dv,
        [0.0, 0.5, 1.0, 2.0, -1.0],
        [0, 1, 0, 0, 0],
    ),
    ("abs", lambda v: sg.sum(sg.abs(v)), v, dv, [0.0, 0.5, -1.0, 0.0, 2.0], [0, 1, -1, 0, 1]),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", TENSOR_TIES, ids=[c[0] for c in TENSOR_TIES])
def test_tensor_ties_agree_in_reverse_and_forward_mode(case, backend):
    name, build, sym, tangent_sym, point, expected = case
    e = build(sym)
    f = sg.compile([sg.grad(e, sym), sg.jvp(e, sym, tangent_sym)], [sym, tangent_sym], backend=backend)
    point, expected = np.array(point), np.array(expected, dtype=float)
    t = np.arange(1.0, point.size + 1).reshape(point.shape)
    g, tangent = f(point, t)
    np.testing.assert_array_equal(g, expected)
    assert tangent == np.sum(expected * t)


# ---------------------------------------------------------------- where under reductions and matmul

X = sg.tensor("X", (2, 3))
W = sg.tensor("W", (3, 2))
# one non-positive entry in row 0 and column 0; row 1 and columns 1, 2 are positive
X_VALUE = np.array([[-1.0, 4.0, 1.0], [9.0, 16.0, 4.0]])
W_VALUE = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
_SAFE = np.where(X_VALUE > 0, X_VALUE, 1.0)
_DSQRT = 0.5 / np.sqrt(_SAFE)
_POS = X_VALUE > 0
_COLS = np.array([False, True, True])  # columns whose every entry is positive
_ROWS = np.array([False, True])


def _prod_log_grad():
    logs = np.log(_SAFE)
    others = np.stack([logs[1], logs[0]])  # the other row's log, per entry
    return np.where(_COLS, others / _SAFE, 0.0)


# (name, scalar loss of X and W, its gradient with respect to X written out by hand)
MASKED = [
    (
        "sum(where(X > 0, sqrt(X), 0))",
        lambda: sg.sum(sg.where(X > 0, sg.sqrt(X), 0)),
        np.where(_POS, _DSQRT, 0.0),
    ),
    (
        "sum(where(X > 0, sqrt(X), 0) @ W)",
        lambda: sg.sum(sg.where(X > 0, sg.sqrt(X), 0) @ W),
        np.where(_POS, _DSQRT * W_VALUE.sum(1), 0.0),
    ),
    (
        "where with a row condition",
        lambda: sg.sum(sg.where(sg.min(X, axis=0) > 0, sg.sqrt(X), 0)),
        np.where(_COLS, _DSQRT, 0.0),
    ),
    (
        "where with a column condition",
        lambda: sg.sum(sg.where(sg.min(X, axis=1, keepdims=True) > 0, sg.sqrt(X), 0)),
        np.where(_ROWS[:, None], _DSQRT, 0.0),
    ),
    (
        "matmul below the where",
        lambda: sg.sum(sg.where(sg.min(X, axis=1, keepdims=True) > 0, sg.sqrt(X) @ W, 0)),
        np.where(_ROWS[:, None], _DSQRT * W_VALUE.sum(1), 0.0),
    ),
    (
        "sum below the where",
        lambda: sg.sum(sg.where(sg.min(X, axis=0) > 0, sg.sum(sg.sqrt(X), axis=0), 0)),
        np.where(_COLS, _DSQRT, 0.0),
    ),
    (
        "max below the where",
        lambda: sg.sum(sg.where(sg.min(X, axis=0) > 0, sg.max(sg.sqrt(X), axis=0), 0)),
        np.where(_COLS & (X_VALUE == X_VALUE.max(0)), _DSQRT, 0.0),
    ),
    (
        "prod below the where",
        lambda: sg.sum(sg.where(sg.min(X, axis=0) > 0, sg.prod(sg.log(X), axis=0), 0)),
        _prod_log_grad(),
    ),
    (
        "slice below the where",
        lambda: sg.sum(sg.where(X[:, 1:] > 0, sg.sqrt(X)[:, 1:], 0)),
        np.where(_COLS, _DSQRT, 0.0),
    ),
    (
        "transpose below the where",
        lambda: sg.sum(sg.where(X.T > 0, sg.sqrt(X).T, 0)),
        np.where(_POS, _DSQRT, 0.0),
    ),
    (
        "reshape below the where",
        lambda: sg.sum(sg.where(X > 0, sg.reshape(sg.sqrt(sg.reshape(X, (6,))), (2, 3)), 0)),
        np.where(_POS, _DSQRT, 0.0),
    ),
    (
        "concatenate below the where",
        lambda: sg.sum(
            sg.where(sg.concatenate([X, X], 1) > 0, sg.concatenate([sg.sqrt(X), sg.log(X)], 1), 0)
        ),
        np.where(_POS, _DSQRT + 1 / _SAFE, 0.0),
    ),
    (
        "cast below the where",
        lambda: sg.sum(sg.where(X > 0, sg.cast(sg.sqrt(sg.cast(X, "float32")), "float64"), 0)),
        np.where(_POS, _DSQRT, 0.0),
    ),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", MASKED, ids=[c[0] for c in MASKED])
def test_where_masks_the_untaken_branch_through_reductions_and_matmul(case, backend):
    name, build, expected = case
    loss = build()
    f = sg.compile([sg.grad(loss, X)], [X, W], backend=backend)
    (g,) = f(X_VALUE, W_VALUE)
    assert not np.isnan(g).any()
    rtol = 1e-6 if "cast" in name else 1e-13
    np.testing.assert_allclose(g, expected, rtol=rtol, atol=0)


# ---------------------------------------------------------------- only the taken branch is computed

n_vec = sg.tensor("u", ("n",))
U_VALUE = np.array([-2.0, -0.5, 0.0, 0.25, 1.0, 9.0])

# (name, builder, numpy value with masked inputs, its derivative)
BRANCHES = [
    (
        "where(u > 0, sqrt(u), 0)",
        lambda u: sg.where(u > 0, sg.sqrt(u), 0),
        lambda u: np.where(u > 0, np.sqrt(np.where(u > 0, u, 1)), 0.0),
        lambda u: np.where(u > 0, 0.5 / np.sqrt(np.where(u > 0, u, 1)), 0.0),
    ),
    (
        "where(u > 0, log(u), -u)",
        lambda u: sg.where(u > 0, sg.log(u), -u),
        lambda u: np.where(u > 0, np.log(np.where(u > 0, u, 1)), -u),
        lambda u: np.where(u > 0, 1 / np.where(u > 0, u, 1), -1.0),
    ),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", BRANCHES, ids=[c[0] for c in BRANCHES])
def test_where_value_and_gradient_match_masked_numpy(case, backend):
    name, build, value, derivative = case
    e = build(n_vec)
    f = sg.compile([e, sg.grad(sg.sum(e * 3.0), n_vec)], [n_vec], backend=backend)
    got, g = f(U_VALUE)
    assert not np.isnan(got).any() and not np.isnan(g).any()
    np.testing.assert_allclose(got, value(U_VALUE), rtol=1e-15)
    np.testing.assert_allclose(g, 3.0 * derivative(U_VALUE), rtol=1e-15)


def _indent(line):
    return len(line) - len(line.lstrip())


def _line_with(source, text):
    # the kernel's line (not its copy in row blocks for threads, codegen/threads.py)
    source = source.partition("# kernel() with its fused loops cut into row blocks")[0]
    (line,) = [l for l in source.splitlines() if text in l]
    return line


def test_a_fused_where_computes_only_the_taken_branch():
    # (a branch with a function on SIMD lanes computes both branches and selects instead: below)
    e = sg.sum(sg.where(n_vec > 0, sg.gammaln(n_vec), -n_vec))
    f = sg.compile([e], [n_vec], backend="numba")
    lines = f.source.splitlines()
    branch = next(k for k, l in enumerate(lines) if l.strip() == "if greater:")
    gammaln_line = _line_with(f.source, "gammaln(u[i])")
    neg_line = _line_with(f.source, "-u[i]")
    assert lines.index(gammaln_line) == branch + 1 and _indent(gammaln_line) > _indent(lines[branch])
    assert lines[lines.index(neg_line) - 1].strip() == "else:"
    assert "# fused loop" in f.source and _indent(lines[branch]) > 4
    want = math.lgamma(0.25) + math.lgamma(1.0) + math.lgamma(9.0) + 2.0 + 0.5 + 0.0
    assert f(U_VALUE)[0] == pytest.approx(want, rel=1e-14)


def test_a_fused_where_on_simd_lanes_selects_and_drops_the_branch_not_taken():
    # log on lanes: both branches for every element, the select keeps log's nan for u <= 0 out
    e = sg.sum(sg.where(n_vec > 0, sg.log(n_vec), -n_vec))
    f = sg.compile([e], [n_vec], backend="numba")
    kernel = f.source.partition("# kernel() with its fused loops cut into row blocks")[0]
    assert "_rt.vlog(u[i])" in kernel and "if greater:" not in kernel
    assert f(U_VALUE)[0] == pytest.approx(np.log(0.25) + 0 + np.log(9.0) + 2.0 + 0.5 + 0.0, rel=1e-14)
    vg = sg.value_and_grad(e, wrt=[n_vec], backend="numba")
    value, (g,) = vg(U_VALUE)
    assert value == pytest.approx(np.log(0.25) + np.log(9.0) + 2.5, rel=1e-14)
    np.testing.assert_array_equal(g, np.where(U_VALUE > 0, 1.0 / np.where(U_VALUE > 0, U_VALUE, 1.0), -1.0))


def test_a_branch_value_used_elsewhere_is_computed_unconditionally():
    # log(u) is also read outside the where: it is computed for every element, before the if
    e = sg.sum(sg.where(n_vec > 0, sg.log(n_vec), -n_vec)) + sg.sum(sg.log(n_vec) * 0.0)
    src = sg.compile([e], [n_vec], backend="numba").source
    log_line = _line_with(src, "log(u[i])")
    if_line = next(l for l in src.splitlines() if l.strip() == "if greater:")
    assert _indent(log_line) == _indent(if_line)


def test_a_scalar_where_computes_only_the_taken_branch():
    e = sg.where(x > 0, sg.sqrt(x) * 2.0, sg.exp(x))
    f = sg.compile([e], [x], backend="numba")
    src = f.source
    sqrt_line, exp_line = _line_with(src, "sqrt(x)"), _line_with(src, "exp(x)")
    if_line = _line_with(src, "if greater")
    assert _indent(sqrt_line) == _indent(exp_line) == _indent(if_line) + 4
    assert f(4.0) == (4.0,) and f(-1.0) == (np.exp(-1.0),)


def test_branches_of_mixed_int_and_float_dtypes_unify():
    k = sg.tensor("k", ("n",), "int64")
    e = sg.where(n_vec > 0, sg.sqrt(n_vec), k)
    f = sg.compile([e], [n_vec, k], backend="numba")
    ints = np.arange(U_VALUE.size, dtype=np.int64) * 3
    (got,) = f(U_VALUE, ints)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, np.where(U_VALUE > 0, np.sqrt(np.abs(U_VALUE)), ints))
    assert "np.float64(k[i])" in f.source


def test_float32_branches_stay_float32():
    u32 = sg.tensor("u32", ("n",), "float32")
    e = sg.where(u32 > 0, sg.log(u32), -u32)
    f = sg.compile([e, sg.grad(sg.sum(e), u32)], [u32], backend="numba")
    data = U_VALUE.astype(np.float32)
    got, g = f(data)
    assert got.dtype == g.dtype == np.float32
    safe = np.where(data > 0, data, np.float32(1))
    np.testing.assert_allclose(got, np.where(data > 0, np.log(safe), -data), rtol=1e-6)
    np.testing.assert_allclose(g, np.where(data > 0, 1 / safe, -1), rtol=1e-6)


MATMUL_SHAPES = [
    ((2, 3), (3, 4)),
    ((3,), (3, 4)),
    ((2, 3), (3,)),
    ((2, 2, 3), (3, 4)),
    ((2, 3), (2, 3, 4)),
    ((2, 2, 3), (2, 3, 4)),
]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=[f"{a}@{b}" for a, b in MATMUL_SHAPES])
def test_where_over_a_matmul_of_branch_values_keeps_nans_of_both_operands_out(shapes):
    a_shape, b_shape = shapes
    A, B = sg.tensor("mm_A", a_shape), sg.tensor("mm_B", b_shape)
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0.5, 2.0, a_shape), rng.uniform(0.5, 2.0, b_shape)
    out_shape = np.matmul(a, b).shape
    mask = rng.uniform(size=out_shape) > 0.3
    # output row 0 and column 0 are masked out: the matching row of A and column of B are
    # negative, so their square roots are nan and meet only masked-out outputs
    if len(a_shape) > 1:
        mask[(..., 0, slice(None)) if len(b_shape) > 1 else (..., 0)] = False
        a[..., 0, :] *= -1
    if len(b_shape) > 1:
        mask[..., 0] = False
        b[..., 0] *= -1
    loss = sg.sum(sg.where(mask, sg.sqrt(A) @ sg.sqrt(B), 0))
    ga, gb = sg.compile(sg.grad(loss, [A, B]), [A, B], backend="numpy")(a, b)

    def reference(a, b):
        with np.errstate(invalid="ignore"):
            return np.sum(np.where(mask, np.sqrt(a) @ np.sqrt(b), 0))

    h = 1e-6
    for got, arg, shift in ((ga, a, lambda d: (a + d, b)), (gb, b, lambda d: (a, b + d))):
        assert not np.isnan(got).any()
        central = np.zeros_like(arg)
        for idx in np.ndindex(arg.shape):
            step = np.zeros_like(arg)
            step[idx] = h
            central[idx] = (reference(*shift(step)) - reference(*shift(-step))) / (2 * h)
        np.testing.assert_allclose(got, central, rtol=1e-6, atol=1e-8)
