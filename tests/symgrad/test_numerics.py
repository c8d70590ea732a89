"""Numerical safety: NaN-free where, one convention at kinks, stable forms chosen automatically."""

import math

import numpy as np
import pytest

import symgrad as sg


def _eval(outputs, inputs, *args, backend="numpy"):
    """The outputs' values at ``args``: a tuple, or the value itself for one output."""
    got = sg.compile(outputs, inputs, backend=backend)(*args)
    return got[0] if len(outputs) == 1 else got


# ---------------------------------------------------------------- where: the untaken branch

x = sg.scalar("x")

# (expression, point where the untaken branch is nan/inf, expected value, d/dx, d2/dx2)
UNTAKEN = [
    ("sqrt", lambda x: sg.where(x > 0, sg.sqrt(x), 0), -1.0, 0.0, 0.0, 0.0),
    ("sqrt at 0", lambda x: sg.where(x > 0, sg.sqrt(x), 0), 0.0, 0.0, 0.0, 0.0),
    ("log", lambda x: sg.where(x > 0, sg.log(x), 0), 0.0, 0.0, 0.0, 0.0),
    ("log of negative", lambda x: sg.where(x > 0, sg.log(x), 2 * x), -3.0, -6.0, 2.0, 0.0),
    ("reciprocal", lambda x: sg.where(x != 0, sg.reciprocal(x), 1.0), 0.0, 1.0, 0.0, 0.0),
    ("arcsin", lambda x: sg.where(sg.abs(x) < 1, sg.arcsin(x), x), 2.0, 2.0, 1.0, 0.0),
    ("pow", lambda x: sg.where(x > 0, x**0.5, sg.square(x)), -2.0, 4.0, -4.0, 2.0),
    ("pow int", lambda x: sg.where(x > 0, x**-3, 0), 0.0, 0.0, 0.0, 0.0),
    ("else branch", lambda x: sg.where(x <= 0, 0, sg.sqrt(x)), -1.0, 0.0, 0.0, 0.0),
    (
        "nested",
        lambda x: sg.where(x > -5, sg.where(x > 0, sg.log(x) * sg.sqrt(x), x), 0),
        -1.0,
        -1.0,
        1.0,
        0.0,
    ),
    (
        "shared subexpression",
        lambda x: sg.where(x > 0, sg.sqrt(x) + sg.log(x), 0) + sg.exp(x),
        -1.0,
        math.exp(-1),
        math.exp(-1),
        math.exp(-1),
    ),
    ("chain below the branch", lambda x: sg.where(x > 1, sg.sqrt(sg.log(x)), 0), 0.5, 0.0, 0.0, 0.0),
]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("case", UNTAKEN, ids=[c[0] for c in UNTAKEN])
def test_untaken_branch_gives_no_nan(case, backend):
    if backend == "numba" and case[0] not in ("sqrt", "log", "nested"):
        pytest.skip("numba: a few cases are enough")
    _, build, point, value, d1, d2 = case
    e = build(x)
    g = sg.grad(e, x)
    gg = sg.grad(g, x)  # reverse over reverse
    ((h,),) = sg.hessian(e, [x])  # forward over reverse
    got = _eval([e, g, gg, h], [x], point, backend=backend)
    np.testing.assert_allclose(got, [value, d1, d2, d2], rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("point", [0.25, 1.0, 4.0, 9.0])
def test_taken_branch_unchanged(point):
    e = sg.where(x > 0, sg.sqrt(x) * sg.log(x), 0)
    got = _eval([e, sg.grad(e, x), sg.hessian(e, [x])[0][0]], [x], point)
    s, l = math.sqrt(point), math.log(point)
    expected = [s * l, (l + 2) / (2 * s), -l / (4 * s**3)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_where_tensor_untaken_branch():
    v = sg.tensor("v", (4,))
    e = sg.sum(sg.where(v > 0, sg.sqrt(v), -v))
    data = np.array([-1.0, 0.0, 4.0, -2.0])
    value, grad = _eval([e, sg.grad(e, v)], [v], data)
    assert value == pytest.approx(1 + 0 + 2 + 2)
    np.testing.assert_array_equal(grad, [-1.0, -1.0, 0.25, -1.0])


def test_where_scalar_condition_masks_reductions():
    v = sg.tensor("v", (3,))
    e = sg.where(x > 0, sg.sum(sg.log(v)), x)
    value, gx, gv = _eval([e, sg.grad(e, x), sg.grad(e, v)], [x, v], -1.0, np.array([-1.0, 0.0, 2.0]))
    assert (value, gx) == (-1.0, 1.0)
    np.testing.assert_array_equal(gv, [0.0, 0.0, 0.0])


def test_forward_values_unaffected():
    e = sg.where(x > 0, sg.sqrt(x), sg.exp(x))
    for p in (-2.0, 0.0, 3.0):
        assert _eval([e], [x], p) == pytest.approx(math.sqrt(p) if p > 0 else math.exp(p))


# ---------------------------------------------------------------- one convention at kinks


RELU_SPELLINGS = {
    "relu": lambda x: sg.relu(x),
    "maximum(x, 0)": lambda x: sg.maximum(x, 0),
    "maximum(0, x)": lambda x: sg.maximum(0, x),
    "where(x > 0, x, 0)": lambda x: sg.where(x > 0, x, 0),
    "where(x <= 0, 0, x)": lambda x: sg.where(x <= 0, 0, x),
    "(x + abs(x)) / 2": lambda x: (x + sg.abs(x)) / 2,
}


@pytest.mark.parametrize("name", list(RELU_SPELLINGS))
def test_relu_derivative_at_zero_is_zero(name):
    e = RELU_SPELLINGS[name](x)
    if name == "(x + abs(x)) / 2":
        expected = 0.5  # (1 + sign(0)) / 2: the sum rule, honestly
    else:
        expected = 0.0
    got = _eval([e, sg.grad(e, x)], [x], 0.0)
    assert got == (0.0, expected)
    assert _eval([sg.grad(e, x)], [x], 2.0) == 1.0
    assert _eval([sg.grad(e, x)], [x], -2.0) == 0.0


ABS_SPELLINGS = {
    "sg.abs": lambda x: sg.abs(x),
    "builtin abs": lambda x: abs(x),
    "sign(x) * x": lambda x: sg.sign(x) * x,
    "relu(x) + relu(-x)": lambda x: sg.relu(x) + sg.relu(-x),
}


@pytest.mark.parametrize("name", list(ABS_SPELLINGS))
def test_abs_derivative_at_zero_is_zero(name):
    e = ABS_SPELLINGS[name](x)
    assert _eval([e, sg.grad(e, x)], [x], 0.0) == (0.0, 0.0)
    assert _eval([sg.grad(e, x)], [x], -3.0) == -1.0
    assert _eval([sg.grad(e, x)], [x], 3.0) == 1.0


# ---------------------------------------------------------------- stable forms


def test_log_one_plus_exp_is_softplus():
    for e in (sg.log(1 + sg.exp(x)), sg.log(sg.exp(x) + 1.0), sg.log1p(sg.exp(x))):
        assert e.op == "softplus"
        value, grad = _eval([e, sg.grad(e, x)], [x], 100.0)
        assert (value, grad) == (100.0, 1.0)
        value, grad = _eval([e, sg.grad(e, x)], [x], -800.0)
        assert value == 0.0 and grad == 0.0


def test_log_sigmoid_is_minus_softplus():
    e = sg.log(sg.sigmoid(x))
    assert e.op == "neg" and e.inputs[0].op == "softplus"
    value, grad = _eval([e, sg.grad(e, x)], [x], -800.0)
    assert value == -800.0 and grad == 1.0
    value, grad = _eval([e, sg.grad(e, x)], [x], 0.0)
    assert value == pytest.approx(-math.log(2)) and grad == pytest.approx(0.5)


def test_log_sum_exp_is_logsumexp():
    s = sg.tensor("s", (2,))
    e = sg.log(sg.sum(sg.exp(s)))
    assert e.op != "log"
    value, grad = _eval([e, sg.grad(e, s)], [s], np.array([1000.0, 1000.0]))
    assert value == pytest.approx(1000 + math.log(2), rel=1e-15)
    np.testing.assert_allclose(grad, [0.5, 0.5])
    value, grad = _eval([e, sg.grad(e, s)], [s], np.array([-np.inf, -np.inf]))
    assert value == -np.inf
    np.testing.assert_array_equal(grad, [0.0, 0.0])


def test_log_sum_exp_axis_keepdims():
    m = sg.tensor("M", (2, 3))
    data = np.array([[1.0, 2.0, 3.0], [800.0, 801.0, -np.inf]])
    for axis, keepdims in ((1, True), (1, False), (0, False), (None, False)):
        e = sg.log(sg.sum(sg.exp(m), axis=axis, keepdims=keepdims))
        ref = sg.logsumexp(m, axis=axis, keepdims=keepdims)
        assert e is ref
        got = _eval([e], [m], data)
        shifted = data.max(axis=axis, keepdims=True)
        expected = np.log(np.sum(np.exp(data - shifted), axis=axis, keepdims=True)) + shifted
        np.testing.assert_allclose(
            got,
            expected.reshape(got.shape) if keepdims or axis is not None else expected.reshape(()),
            rtol=1e-14,
        )


def test_stable_forms_visible_in_source():
    f = sg.compile([sg.log(1 + sg.exp(x))], [x], backend="numpy")
    assert "softplus" in f.source


def test_where_tensor_condition_scalar_branch():
    v = sg.tensor("v", (3,))
    e = sg.sum(sg.where(v > 0, sg.sqrt(x), v))
    f = sg.compile([e, sg.grad(e, x), sg.grad(e, v)], [x, v], backend="numpy")
    value, gx, gv = f(-1.0, np.array([-1.0, -2.0, 0.0]))
    assert (value, gx) == (-3.0, 0.0)
    np.testing.assert_array_equal(gv, [1.0, 1.0, 1.0])
    value, gx, gv = f(4.0, np.array([-1.0, 2.0, 3.0]))
    assert (value, gx) == (3.0, 0.5)
    np.testing.assert_array_equal(gv, [1.0, 0.0, 0.0])


@pytest.mark.parametrize("point", [0.0, -1.0, 2.0, np.inf])
def test_power_zero_is_one_with_zero_derivative(point):
    # found by the fuzzer: (3 tanh(x)) ** 0 had the derivative 0 * 0 ** -1 = nan at x = 0
    b = sg.scalar("b")
    for e in ((3 * sg.tanh(x)) ** 0, x**0):
        assert e.op == "constant"
    e = x**b
    value, gx = _eval([e, sg.grad(e, x)], [x, b], point, 0.0)
    assert (value, gx) == (1.0, 0.0)
