"""Fuzzing: random expressions checked against SymPy (scalars) and across backends (tensors).

A recipe is a list of steps; each step applies one op to entries of a pool of
already-built subexpressions (so subexpressions are shared), and builds the same
expression twice: in symgrad and, independently, in SymPy. Domains are respected
by construction (log(softplus(e) + 0.1), arcsin(0.9 tanh(e)), exp(3 tanh(e)), ...),
and ops that grow get a bounded operand, so values stay finite to depth 8.

The truth is SymPy's ``diff`` evaluated in mpmath at 40 digits; symgrad's value,
gradient and Hessian must match to 1e-9 relative, loosened only by the measured
conditioning of the point. Points near a kink (a tie in maximum/minimum, a where
condition or abs at 0) are skipped: there the two sides may round to different
branches.

``SYMGRAD_FUZZ_EXAMPLES`` sets the number of scalar examples (a long run: 2000).
"""

import math
import os
import warnings

import mpmath
import numpy as np
import pytest
import sympy as sp

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import symgrad as sg  # noqa: E402

EXAMPLES = int(os.environ.get("SYMGRAD_FUZZ_EXAMPLES", "150"))
NUMBA_EXAMPLES = max(3, EXAMPLES // 50)
TENSOR_EXAMPLES = max(8, EXAMPLES // 20)
MAX_DEPTH = 8
RAN = {"scalar": 0, "scalar points": 0, "numba": 0, "tensor": 0}

X, Y = sg.scalars("x y")
SX, SY = sp.symbols("x y", real=True)


# ---------------------------------------------------------------- the scalar recipe
# each entry: (symgrad expr, sympy expr, depth)


def _bounded(kind, e, s):
    """A bounded version of e (so growing ops stay finite), three ways for variety."""
    if kind == 0:
        return 3 * sg.tanh(e), 3 * sp.tanh(s)
    if kind == 1:
        return 2 * sg.sin(e), 2 * sp.sin(s)
    return sg.erf(e) * 2.5, sp.erf(s) * sp.Float(2.5)


def _sympy_where(c, a, b):
    return sp.Piecewise((a, c), (b, True))


# unary ops: name -> (symgrad builder, sympy builder, kink?) on (e, s)
UNARY = {
    "neg": (lambda e: -e, lambda s: -s),
    "abs": (lambda e: sg.abs(e), lambda s: sp.Piecewise((s, s >= 0), (-s, True))),
    "exp": (lambda e: sg.exp(3 * sg.tanh(e)), lambda s: sp.exp(3 * sp.tanh(s))),
    "expm1": (lambda e: sg.expm1(3 * sg.tanh(e)), lambda s: sp.exp(3 * sp.tanh(s)) - 1),
    "log": (lambda e: sg.log(sg.softplus(e) + 0.1), lambda s: sp.log(sp.log(1 + sp.exp(s)) + sp.Float(0.1))),
    "log1p": (lambda e: sg.log1p(sg.softplus(e)), lambda s: sp.log(1 + sp.log(1 + sp.exp(s)))),
    "sqrt": (lambda e: sg.sqrt(sg.square(e) + 0.1), lambda s: sp.sqrt(s**2 + sp.Float(0.1))),
    "square": (lambda e: sg.square(2 * sg.tanh(e)), lambda s: (2 * sp.tanh(s)) ** 2),
    "reciprocal": (lambda e: sg.reciprocal(sg.square(e) + 0.5), lambda s: 1 / (s**2 + sp.Float(0.5))),
    "sin": (sg.sin, sp.sin),
    "cos": (sg.cos, sp.cos),
    "tan": (lambda e: sg.tan(1.2 * sg.tanh(e)), lambda s: sp.tan(sp.Float(1.2) * sp.tanh(s))),
    "arcsin": (lambda e: sg.arcsin(sg.tanh(e) * 0.9), lambda s: sp.asin(sp.tanh(s) * sp.Float(0.9))),
    "arccos": (lambda e: sg.arccos(sg.tanh(e) * 0.9), lambda s: sp.acos(sp.tanh(s) * sp.Float(0.9))),
    "arctan": (sg.arctan, sp.atan),
    "sinh": (lambda e: sg.sinh(3 * sg.tanh(e)), lambda s: sp.sinh(3 * sp.tanh(s))),
    "cosh": (lambda e: sg.cosh(3 * sg.tanh(e)), lambda s: sp.cosh(3 * sp.tanh(s))),
    "tanh": (sg.tanh, sp.tanh),
    "sigmoid": (sg.sigmoid, lambda s: 1 / (1 + sp.exp(-s))),
    "softplus": (sg.softplus, lambda s: sp.log(1 + sp.exp(s))),
    "erf": (sg.erf, sp.erf),
}
BINARY = [
    "add",
    "sub",
    "mul",
    "div",
    "pow_int",
    "pow_float",
    "pow_neg",
    "maximum",
    "minimum",
    "arctan2_a",
    "arctan2_b",
    "where",
    "where_domain",
]


@st.composite
def scalar_recipes(draw):
    pool = [(X, SX, 0), (Y, SY, 0), (sg.sin(X) * Y, sp.sin(SX) * SY, 1)]
    kinks = []  # sympy expressions whose zero is a kink
    steps = draw(st.integers(1, 12))
    for _ in range(steps):
        usable = [p for p in pool if p[2] < MAX_DEPTH]
        pick = lambda: usable[draw(st.integers(0, len(usable) - 1))]  # noqa: E731
        if draw(st.booleans()):
            name = draw(st.sampled_from(sorted(UNARY)))
            e, s, d = pick()
            build, build_sp = UNARY[name]
            if name == "abs":
                kinks.append(s)
            pool.append((build(e), build_sp(s), d + 1))
            continue
        name = draw(st.sampled_from(BINARY))
        (a, sa, da), (b, sb, db) = pick(), pick()
        depth = max(da, db) + 1
        kind = draw(st.integers(0, 2))
        if name == "add":
            new = (a + b, sa + sb)
        elif name == "sub":
            new = (a - b, sa - sb)
        elif name == "mul":
            bb, sbb = _bounded(kind, b, sb)
            new = (a * bb, sa * sbb)
        elif name == "div":
            new = (a / (sg.square(b) + 0.5), sa / (sb**2 + sp.Float(0.5)))
        elif name == "pow_int":
            k = draw(st.integers(0, 4))
            ab, sab = _bounded(kind, a, sa)
            new = (ab**k, sab**k)
        elif name == "pow_float":
            p = draw(st.sampled_from([0.5, 1.5, 2.5, 0.3, 1.0]))
            new = ((sg.square(a) + 0.1) ** p, (sa**2 + sp.Float(0.1)) ** sp.Float(p))
        elif name == "pow_neg":
            k = draw(st.integers(-3, -1))
            new = ((sg.square(a) + 0.5) ** k, (sa**2 + sp.Float(0.5)) ** k)
        elif name in ("maximum", "minimum"):
            kinks.append(sa - sb)
            if name == "maximum":
                new = (sg.maximum(a, b), sp.Piecewise((sa, sa > sb), (sb, True)))
            else:
                new = (sg.minimum(a, b), sp.Piecewise((sa, sa < sb), (sb, True)))
        elif name == "arctan2_a":
            new = (sg.arctan2(a, sg.square(b) + 0.5), sp.atan2(sa, sb**2 + sp.Float(0.5)))
        elif name == "arctan2_b":
            new = (sg.arctan2(1 + sg.square(a), b), sp.atan2(1 + sa**2, sb))
        else:
            (c1, sc1, dc1), (c2, sc2, dc2) = pick(), pick()
            depth = max(depth, dc1 + 1, dc2 + 1)
            kinks.append(sc1 - sc2)
            cmp = draw(st.sampled_from(["<", "<=", ">", ">="]))
            cond = {"<": c1 < c2, "<=": c1 <= c2, ">": c1 > c2, ">=": c1 >= c2}[cmp]
            scond = {"<": sc1 < sc2, "<=": sc1 <= sc2, ">": sc1 > sc2, ">=": sc1 >= sc2}[cmp]
            if name == "where":
                new = (sg.where(cond, a, b), _sympy_where(scond, sa, sb))
            else:
                # the taken branch is finite; the other may be nan/inf (log/sqrt of a negative)
                kinks.append(sc1 - sc2 - 0.25)
                dom = sg.where(c1 > c2 + 0.25, sg.log(c1 - c2) * sg.sqrt(c1 - c2), a)
                sdom = _sympy_where(sc1 > sc2 + sp.Float(0.25), sp.log(sc1 - sc2) * sp.sqrt(sc1 - sc2), sa)
                new = (dom, sdom)
        pool.append((new[0], new[1], depth))
    e, s, _ = pool[-1]
    # sometimes fold a shared subexpression back in
    if len(pool) > 4 and draw(st.booleans()):
        e2, s2, _ = pool[draw(st.integers(3, len(pool) - 1))]
        e, s = e + e2, s + s2
    points = draw(st.lists(st.tuples(st.floats(-2, 2), st.floats(-2, 2)), min_size=3, max_size=3))
    return e, s, kinks, points


def _truth(s):
    """value, gradient (2) and Hessian (3 distinct entries) of the sympy expression, in mpmath."""
    g = [sp.diff(s, v) for v in (SX, SY)]
    h = [sp.diff(g[0], SX), sp.diff(g[0], SY), sp.diff(g[1], SY)]
    return sp.lambdify([SX, SY], [s] + g + h, modules="mpmath", cse=True)


def _evaluate(f, px, py):
    with mpmath.workdps(40):
        try:
            got = f(mpmath.mpf(px), mpmath.mpf(py))
        except (ZeroDivisionError, ValueError, OverflowError):
            return None
        out = []
        for v in got:
            if isinstance(v, mpmath.mpc) or not mpmath.isfinite(v):
                return None
            out.append(float(v))
        return np.array(out)


def _near_kink(kinks, px, py):
    for k in kinks:
        with mpmath.workdps(40):
            try:
                v = sp.lambdify([SX, SY], k, modules="mpmath")(mpmath.mpf(px), mpmath.mpf(py))
            except (ZeroDivisionError, ValueError):
                return True
            if abs(v) < 1e-6:
                return True
    return False


def _symgrad_outputs(e):
    gx, gy = sg.grad(e, [X, Y])
    (hxx, hxy), (_, hyy) = sg.hessian(e, [X, Y])
    return [e, gx, gy, hxx, hxy, hyy]


def _check(e, s, kinks, points, backend):
    truth = _truth(s)
    f = sg.compile(_symgrad_outputs(e), [X, Y], backend=backend)
    checked = 0
    for px, py in points:
        want = _evaluate(truth, px, py)
        if want is None or np.abs(want[3:]).max() > 1e8 or _near_kink(kinks, px, py):
            continue
        # conditioning: how much the truth moves under a 1e-10 relative nudge of the point
        nudged = [_evaluate(truth, px * (1 + d), py * (1 - d)) for d in (1e-10, -1e-10)]
        if any(n is None for n in nudged):
            continue
        moved = np.max([np.abs(n - want) for n in nudged], axis=0)
        got = np.array([float(v) for v in f(px, py)])
        scale = 1 + np.abs(want[1:3]).max() + np.abs(want[3:]).max()
        tol = 1e-9 * np.abs(want) + 1e-3 * moved + 1e-12 * scale
        assert np.all(np.abs(got - want) <= tol), (
            f"symgrad vs sympy at x={px!r}, y={py!r} ({backend}):\n  expr: {e!r:.300}\n"
            f"  sympy: {s}\n  got  {got}\n  want {want}"
        )
        checked += 1
    RAN["scalar points"] += checked
    return checked


@settings(derandomize=True, max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(scalar_recipes())
def test_scalar_fuzz_against_sympy(recipe):
    RAN["scalar"] += 1
    _check(*recipe, backend="numpy")


@settings(
    derandomize=True, max_examples=NUMBA_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(scalar_recipes())
def test_scalar_fuzz_numba(recipe):
    RAN["numba"] += 1
    _check(*recipe, backend="numba")


# ---------------------------------------------------------------- tensors: numba vs numpy vs differences

A = sg.tensor("A", (3, 4))
B = sg.tensor("B", (4,))
C = sg.tensor("C", (4, 2))


@st.composite
def tensor_recipes(draw):
    pool = [A, B, C]
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["unary", "binary", "reduce", "matmul", "slice", "transpose"]))
        e = pool[draw(st.integers(0, len(pool) - 1))]
        if kind == "unary":
            op = draw(st.sampled_from(["tanh", "sin", "softplus", "sigmoid", "square_b", "exp_b"]))
            new = {
                "tanh": sg.tanh,
                "sin": sg.sin,
                "softplus": sg.softplus,
                "sigmoid": sg.sigmoid,
                "square_b": lambda v: sg.square(sg.tanh(v)),
                "exp_b": lambda v: sg.exp(sg.tanh(v)),
            }[op](e)
        elif kind == "binary":
            others = [p for p in pool if _broadcastable(p.shape, e.shape)]
            o = others[draw(st.integers(0, len(others) - 1))]
            op = draw(st.sampled_from(["add", "mul", "sub", "maximum"]))
            new = {"add": e + o, "mul": e * sg.tanh(o), "sub": e - o, "maximum": sg.maximum(e, o)}[op]
        elif kind == "reduce":
            if e.ndim == 0:
                continue
            axis = draw(st.integers(-1, e.ndim - 1))
            op = draw(st.sampled_from(["sum", "mean", "max", "logsumexp"]))
            fn = {"sum": sg.sum, "mean": sg.mean, "max": sg.max, "logsumexp": sg.logsumexp}[op]
            new = fn(e, axis=None if axis < 0 else axis, keepdims=draw(st.booleans()))
        elif kind == "matmul":
            partners = [p for p in pool if p.ndim >= 1 and e.ndim >= 1 and p.shape[0] == e.shape[-1]]
            if not partners:
                continue
            new = sg.matmul(e, partners[draw(st.integers(0, len(partners) - 1))])
        elif kind == "slice":
            if e.ndim == 0 or e.shape[0] < 2:
                continue
            new = e[1:] if draw(st.booleans()) else e[::2]
        else:
            if e.ndim < 2:
                continue
            new = sg.transpose(e)
        pool.append(new)
    return sg.sum(sg.tanh(pool[-1])) + 0.1 * sg.sum(pool[draw(st.integers(0, len(pool) - 1))])


def _broadcastable(s1, s2):
    for a, b in zip(reversed(s1), reversed(s2)):
        if a != b and a != 1 and b != 1:
            return False
    return True


@settings(
    derandomize=True, max_examples=TENSOR_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(tensor_recipes(), st.integers(0, 2**31))
def test_tensor_fuzz_backends_and_differences(loss, seed):
    RAN["tensor"] += 1
    rng = np.random.default_rng(seed)
    args = [rng.uniform(-1.5, 1.5, s.shape) for s in (A, B, C)]
    outputs = [loss] + sg.grad(loss, [A, B, C])
    by_numpy = sg.compile(outputs, [A, B, C], backend="numpy")(*args)
    by_numba = sg.compile(outputs, [A, B, C], backend="numba")(*args)
    for p, q in zip(by_numpy, by_numba):
        np.testing.assert_allclose(q, p, rtol=1e-11, atol=1e-12)
    value = sg.compile([loss], [A, B, C], backend="numpy")
    h = 1e-6
    for k, arg in enumerate(args):
        for index in np.ndindex(arg.shape):
            plus = [a.copy() for a in args]
            minus = [a.copy() for a in args]
            plus[k][index] += h
            minus[k][index] -= h
            fd = (float(value(*plus)[0]) - float(value(*minus)[0])) / (2 * h)
            # max() has kinks; a tie within h of the point makes the difference meaningless
            assert abs(fd - by_numpy[1 + k][index]) <= 1e-5 * (1 + abs(fd)) or _has_kink(loss), (
                f"gradient of {loss!r:.200} wrt {'ABC'[k]}{index}: {by_numpy[1 + k][index]} vs {fd}"
            )


def _has_kink(loss):
    from symgrad.graph import topo_order

    return any(n.op in ("maximum", "max") for n in topo_order([loss]))


def test_zz_report_counts(capsys):
    """Not a check: prints how many examples ran (pytest -s, or the -rP summary)."""
    with capsys.disabled():
        print(
            f"\nfuzz: {RAN['scalar']} scalar examples ({RAN['scalar points']} points checked "
            f"against sympy), {RAN['numba']} numba, {RAN['tensor']} tensor"
        )


# ---------------------------------------------------------------- zero- and one-sized axes
# Every op family on shapes whose axes have length 0, 1 or 2 (concrete, or named dims bound
# to those lengths at the call), on both backends: the value must match numpy's, the gradient
# central differences of the numpy spelling; where numpy itself fails (max of an empty axis),
# or symgrad refuses, the error must be a SymgradError. Nothing else may escape.


def _np_logsumexp(v, axis):
    return np.log(np.sum(np.exp(v), axis=axis))


def _np_softmax(v, axis):
    e = np.exp(v - np.max(v, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _rank2(fn):
    return lambda x: fn(x) if x.ndim == 2 else x


# name -> (symgrad spelling, numpy spelling) of f(x, y); the loss is sum(f(x, y))
EDGE_OPS = {
    "sin": (lambda x, y: sg.sin(x), lambda x, y: np.sin(x)),
    "exp*y": (lambda x, y: sg.exp(x) * y, lambda x, y: np.exp(x) * y),
    "softplus/sigmoid": (
        lambda x, y: sg.softplus(x) + sg.sigmoid(y),
        lambda x, y: np.logaddexp(0, x) + 1 / (1 + np.exp(-y)),
    ),
    "logaddexp": (lambda x, y: sg.logaddexp(x, y), np.logaddexp),
    "maximum": (lambda x, y: sg.maximum(x, y) + sg.abs(y), lambda x, y: np.maximum(x, y) + np.abs(y)),
    "where": (lambda x, y: sg.where(x > 0, x, y), lambda x, y: np.where(x > 0, x, y)),
    "sum axis 0": (lambda x, y: sg.sum(sg.sin(x), axis=0), lambda x, y: np.sum(np.sin(x), axis=0)),
    "sum keepdims*y": (
        lambda x, y: sg.sum(x * x, axis=-1, keepdims=True) * y,
        lambda x, y: np.sum(x * x, axis=-1, keepdims=True) * y,
    ),
    "mean": (lambda x, y: sg.mean(x, axis=-1) * 2, lambda x, y: np.mean(x, axis=-1) * 2),
    "prod": (lambda x, y: sg.prod(x, axis=0), lambda x, y: np.prod(x, axis=0)),
    "max": (lambda x, y: sg.max(x, axis=0), lambda x, y: np.max(x, axis=0)),
    "min": (lambda x, y: sg.min(x, axis=-1), lambda x, y: np.min(x, axis=-1)),
    "logsumexp": (lambda x, y: sg.logsumexp(x, axis=0), lambda x, y: _np_logsumexp(x, 0)),
    "softmax": (lambda x, y: sg.softmax(x, axis=0) * y, lambda x, y: _np_softmax(x, 0) * y),
    "x[1:]": (lambda x, y: sg.sin(x[1:]), lambda x, y: np.sin(x[1:])),
    "x[:-1]": (lambda x, y: x[:-1] * 2, lambda x, y: x[:-1] * 2),
    "x[::2]": (lambda x, y: sg.tanh(x[::2]), lambda x, y: np.tanh(x[::2])),
    "x[:, 1:]": (
        lambda x, y: _rank2(lambda v: sg.cos(v[:, 1:]))(x),
        lambda x, y: _rank2(lambda v: np.cos(v[:, 1:]))(x),
    ),
    "diff": (lambda x, y: sg.square(x[1:] - x[:-1]), lambda x, y: np.square(np.diff(x, axis=0))),
    "x.T @ x": (lambda x, y: sg.transpose(x) @ y if x.ndim == 2 else x @ y, lambda x, y: x.T @ y),
    "x @ y.T": (lambda x, y: x @ sg.transpose(y) if x.ndim == 2 else x @ y, lambda x, y: x @ y.T),
    "concatenate": (
        lambda x, y: sg.concatenate([x, sg.sin(y[1:])]),
        lambda x, y: np.concatenate([x, np.sin(y[1:])]),
    ),
    "reshape": (lambda x, y: sg.reshape(x, (-1,)) ** 2, lambda x, y: np.reshape(x, (-1,)) ** 2),
    "transpose*": (lambda x, y: sg.transpose(x) * sg.transpose(y), lambda x, y: x.T * y.T),
    "broadcast": (
        lambda x, y: x * sg.sum(y, axis=0, keepdims=True),
        lambda x, y: x * np.sum(y, axis=0, keepdims=True),
    ),
    # a product with the rows of x, and its transposed product in the gradient (the fused row loop)
    "softplus(x @ y[0])": (
        lambda x, y: sg.softplus(x @ y[0]) if x.ndim == 2 else sg.softplus(x * y),
        lambda x, y: np.logaddexp(0, x @ y[0]) if x.ndim == 2 else np.logaddexp(0, x * y),
    ),
    "unary zoo": (
        lambda x, y: (
            sg.arcsin(0.5 * sg.tanh(x))
            + sg.arctan2(y, 1.5 + x)
            + sg.erf(y)
            + sg.log1p(sg.square(x))
            + sg.sqrt(1.5 + x)
            + sg.expm1(y) * sg.relu(x)
            + sg.cosh(x) / (2 + sg.sinh(y))
            + sg.pow(1.5 + x, y)
        ),
        lambda x, y: (
            np.arcsin(0.5 * np.tanh(x))
            + np.arctan2(y, 1.5 + x)
            + np.vectorize(math.erf, otypes=[float])(y)
            + np.log1p(np.square(x))
            + np.sqrt(1.5 + x)
            + np.expm1(y) * np.maximum(x, 0)
            + np.cosh(x) / (2 + np.sinh(y))
            + np.power(1.5 + x, y)
        ),
    ),
}


@st.composite
def edge_cases(draw):
    op = draw(st.sampled_from(sorted(EDGE_OPS)))
    shape = tuple(draw(st.lists(st.integers(0, 2), min_size=1, max_size=2)))
    return op, shape, draw(st.booleans()), draw(st.integers(0, 2**31))


def _edge_check(op, shape, named, seed, backend):
    build, reference = EDGE_OPS[op]
    dims = ("n", "m")[: len(shape)] if named else shape
    x, y = sg.tensor("x", dims), sg.tensor("y", dims)
    rng = np.random.default_rng(seed)
    xv, yv = rng.uniform(-1, 1, shape), rng.uniform(-1, 1, shape)

    def loss_np(a, b):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # numpy's mean of an empty slice
            return float(np.sum(reference(a, b)))

    try:
        want = loss_np(xv, yv)
    except (ValueError, IndexError):
        want = None  # numpy has no value (max of an empty axis, y[0] of no rows): symgrad must refuse
    try:
        vg = sg.value_and_grad(sg.sum(build(x, y)), wrt=[x, y], backend=backend)
        value, grads = vg(xv, yv)
    except sg.SymgradError:
        return "refused"
    assert want is not None, f"{op} on {shape}: numpy has no value, symgrad gave {value}"
    np.testing.assert_allclose(value, want, rtol=1e-12, atol=1e-12, err_msg=f"{op} on {shape} ({backend})")
    h = 1e-6
    for k, (g, base) in enumerate(zip(grads, (xv, yv))):
        assert g.shape == shape
        for index in np.ndindex(shape):
            args = [xv.copy(), yv.copy()]
            args[k][index] += h
            plus = loss_np(*args)
            args[k][index] -= 2 * h
            fd = (plus - loss_np(*args)) / (2 * h)
            assert abs(g[index] - fd) <= 1e-5 * (1 + abs(fd)), (op, shape, backend, "xy"[k], index, g, fd)
    return "checked"


@settings(derandomize=True, max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(edge_cases())
def test_zero_and_one_sized_axes_numpy_backend(case):
    _edge_check(*case, backend="numpy")


@settings(derandomize=True, max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(edge_cases())
def test_zero_and_one_sized_axes_numba_backend(case):
    _edge_check(*case, backend="numba")


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_the_audits_empty_slice_next_to_a_size_one_axis(backend):
    x = sg.tensor("x", (1, 1))
    value, grad = sg.value_and_grad(sg.sum(sg.sin(x[1:])), wrt=x, backend=backend)(np.ones((1, 1)))
    assert value == 0.0 and grad.shape == (1, 1) and grad[0, 0] == 0.0
    value, grad = sg.value_and_grad(lambda v: np.sum(np.sin(np.diff(v, axis=0))), backend=backend)(
        np.ones((1, 1))
    )
    assert value == 0.0 and grad.shape == (1, 1) and grad[0, 0] == 0.0


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_max_over_an_empty_axis_is_refused(backend):
    with pytest.raises(sg.ShapeError, match="an axis of length 0 has no maximum or minimum"):
        sg.max(sg.tensor("x", (0, 3)), axis=0)
    x = sg.tensor("x", ("n", 3))
    vg = sg.value_and_grad(sg.sum(sg.max(x, axis=0)), wrt=x, backend=backend)
    with pytest.raises(
        sg.InputError, match=r"dimension n is 0 .*max\(x, axis=\(0,\)\) needs it to be at least 1"
    ):
        vg(np.ones((0, 3)))
