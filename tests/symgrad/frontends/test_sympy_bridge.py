"""SymPy in and out: round trips, gradients against sympy.diff, hash-consing, errors, LaTeX."""

import math

import numpy as np
import pytest
import sympy

import symgrad as sg
from symgrad.graph import topo_order

X, Y, Z = sympy.symbols("x y z")

ROUND_TRIPS = [
    X * Y + sympy.sin(X),
    X - Y,
    X / Y,
    1 / X,
    X**2,
    X**-3,
    sympy.sqrt(X),
    1 / sympy.sqrt(X + Y),
    X ** sympy.Rational(1, 3),
    2 * X / 3 - Y / 5,
    -X - Y * Z,
    sympy.exp(X) * sympy.log(Y),
    sympy.log(X, 2),
    sympy.tan(X) + sympy.asin(Y) - sympy.acos(Z) + sympy.atan(X),
    sympy.atan2(Y, X),
    sympy.sinh(X) * sympy.cosh(Y) / (1 + sympy.tanh(Z) ** 2),
    sympy.Abs(X) * sympy.sign(Y),
    sympy.Max(X, Y, 0) + sympy.Min(X, 1),
    sympy.erf(X) + sympy.erfc(Y),
    2**X + X**Y,
    sympy.sec(X) + sympy.cot(Y),
    (X + Y) ** 2 * sympy.exp(-((X + Y) ** 2)),
]


@pytest.mark.parametrize("e", ROUND_TRIPS, ids=str)
def test_round_trip_equals_original_up_to_simplify(e):
    back = sg.to_sympy(sg.from_sympy(e))
    assert sympy.simplify((back - e).rewrite(sympy.erf)) == 0


POINTS = np.random.default_rng(7).uniform(0.2, 0.9, size=(6, 3))


def _numeric_equal(a, b, symbols=(X, Y, Z), points=POINTS):
    fa, fb = sympy.lambdify(symbols, a, "numpy"), sympy.lambdify(symbols, b, "numpy")
    for p in points:
        assert float(fa(*p)) == pytest.approx(float(fb(*p)), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(
    "e",
    [
        sympy.Piecewise((X, X > Y), (Y**2, sympy.And(Y < 0.5, sympy.Not(Z > 0.7))), (Z, True)),
        sympy.Piecewise((1, sympy.Or(X < 0.3, sympy.Eq(Y, Z))), (0, True)),
        sympy.asinh(X) + sympy.acosh(1 + Y) + sympy.atanh(Z),
        sympy.Heaviside(X - 0.5),
    ],
    ids=str,
)
def test_round_trip_of_constructs_written_with_where_and_log_is_numerically_equal(e):
    _numeric_equal(sg.to_sympy(sg.from_sympy(e)), e)


# real symbols, so that sympy.diff of Abs, Max and Min is in terms of sign and Heaviside
XR, YR, ZR = sympy.symbols("x y z", real=True)
GRADIENT_CASES = [
    XR * YR + sympy.sin(XR),
    sympy.exp(XR * YR) / (1 + ZR**2),
    sympy.log(1 + sympy.exp(XR)) - sympy.sqrt(YR * ZR),
    sympy.atan2(YR, XR) * sympy.tanh(ZR),
    XR ** sympy.Rational(3, 2) * YR**-2 + sympy.erf(ZR),
    sympy.Max(XR, YR) * sympy.Min(YR, ZR) + sympy.Abs(XR - ZR),
    sympy.asinh(XR) * sympy.atanh(YR / 2) + sympy.acosh(1 + ZR),
    sympy.Piecewise((XR**2, XR > YR), (YR * ZR, True)),
]


@pytest.mark.parametrize("e", GRADIENT_CASES, ids=str)
def test_grad_of_imported_expression_equals_sympy_diff(e):
    x, y, z = sg.scalars("x y z")
    grads = sg.grad(sg.from_sympy(e), [x, y, z])
    f = sg.compile(grads, inputs=[x, y, z], backend="numpy")
    exact = [sympy.lambdify((XR, YR, ZR), sympy.diff(e, s), "numpy") for s in (XR, YR, ZR)]
    for p in POINTS:
        got = f(*p)
        for g, d in zip(got, exact):
            assert float(g) == pytest.approx(float(d(*p)), rel=1e-11, abs=1e-12)


def test_grad_of_imported_expression_compiled_by_numba_equals_sympy_diff():
    e = X * sympy.exp(-(Y**2)) + sympy.cos(X * Y)
    x, y = sg.scalars("x y")
    f = sg.compile(sg.grad(sg.from_sympy(e), [x, y]), inputs=[x, y])
    for p in POINTS[:, :2]:
        gx, gy = f(*p)
        assert gx == pytest.approx(float(sympy.diff(e, X).subs({X: p[0], Y: p[1]})), rel=1e-13)
        assert gy == pytest.approx(float(sympy.diff(e, Y).subs({X: p[0], Y: p[1]})), rel=1e-13)


def test_from_sympy_returns_the_builders_own_node():
    x, y = sg.scalars("x y")
    assert sg.from_sympy(X * Y + sympy.sin(X)) is x * y + sg.sin(x)
    assert sg.from_sympy(X - Y) is x - y
    assert sg.from_sympy(X / Y) is x / y
    assert sg.from_sympy(X**2) is x**2
    assert sg.from_sympy(X**-1) is sg.reciprocal(x)
    assert sg.from_sympy(sympy.sqrt(X)) is sg.sqrt(x)


def test_shared_subexpression_becomes_one_node():
    s = sympy.sin(X * Y)
    e = sg.from_sympy(s**2 + s * X + sympy.exp(s))
    nodes = topo_order([e])
    assert sum(1 for n in nodes if n.op == "sin") == 1
    assert sum(1 for n in nodes if n.op == "mul" and {i.name for i in n.inputs} == {"x", "y"}) == 1


def test_symbols_become_tensors_of_the_given_shape():
    e = sg.from_sympy(X**2 + Y, shapes={"x": ("n",)})
    assert e.shape == (sg.graph.dim_symbol("n"),)
    f = sg.compile(e, inputs=[sg.tensor("x", ("n",)), sg.scalar("y")], backend="numpy")
    np.testing.assert_allclose(f(np.array([1.0, 2.0, 3.0]), 0.5), [1.5, 4.5, 9.5])


@pytest.mark.parametrize(
    "number, expected",
    [
        (sympy.pi, math.pi),
        (sympy.E, math.e),
        (sympy.Rational(3, 4), 0.75),
        (sympy.Float(2.5), 2.5),
        (sympy.Integer(7), 7.0),
        (sympy.oo, math.inf),
        (-sympy.oo, -math.inf),
        (sympy.zoo, math.inf),
        (sympy.EulerGamma, 0.5772156649015329),
    ],
)
def test_numbers_become_float_constants(number, expected):
    c = sg.from_sympy(number)
    assert c.op == "constant" and c.dtype == "float64"
    assert float(c.value) == expected


def test_nan_becomes_a_nan_constant():
    assert math.isnan(float(sg.from_sympy(sympy.nan).value))


@pytest.mark.parametrize(
    "construct, name",
    [
        (sympy.Integral(X**2, X), "Integral"),
        (sympy.Derivative(sympy.Function("f")(X), X), "Derivative"),
        (sympy.Sum(X**Y, (Y, 1, 3)), "Sum"),
        (sympy.Function("f")(X) + 1, "undefined function f"),
        (sympy.Matrix([[X, Y]]), "matrix"),
        (sympy.ImmutableMatrix([[X, Y]]), "matrix"),
        (X + sympy.I * Y, "imaginary unit"),
        (sympy.gamma(X), "gamma"),
        ("x + 1", "str"),
    ],
)
def test_unsupported_construct_raises_naming_it(construct, name):
    with pytest.raises(sg.UnsupportedError, match=name):
        sg.from_sympy(construct)


def test_latex_of_the_seed_derivative_shows_cos():
    x, y = sg.scalars("x y")
    text = sg.latex(sg.grad(x * y + sg.sin(x), x))
    assert r"\cos" in text and "y" in text


def test_to_sympy_of_gradient_graph_with_where_max_sigmoid_relu_softplus_matches_sympy_diff():
    x, y = sg.scalars("x y")
    e = (
        sg.where(x > y, sg.sigmoid(x * y), sg.relu(y - 0.5 * x))
        + sg.maximum(x, y) ** 2
        + sg.softplus(x - y) * sg.minimum(x, 2 * y)
        + sg.stop_gradient(x) * 0
        + sg.square(sg.tanh(y))
    )
    forward = sg.to_sympy(e)
    for wrt, s in ((x, X), (y, Y)):
        _numeric_equal(
            sg.to_sympy(sg.grad(e, wrt)),
            sympy.diff(forward, s),
            symbols=(X, Y),
            points=POINTS[:, :2] * [1, 1.3],
        )


def test_to_sympy_maps_mean_of_a_single_element_and_casts():
    x = sg.scalar("x")
    n = sg.scalar("n", dtype="int64")
    e = sg.mean(sg.reshape(x, (1, 1))) + sg.cast(x > 0, "float64") * sg.cast(n, "float64")
    assert (
        sympy.simplify(
            sg.to_sympy(e) - (X + sympy.Piecewise((1, X > 0), (0, True)) * sympy.Symbol("n", integer=True))
        )
        == 0
    )


def test_to_sympy_rejects_a_vector_graph_naming_the_op_and_shape():
    v = sg.tensor("v", ("n",))
    with pytest.raises(sg.UnsupportedError, match=r"'v' has shape \(n,\)"):
        sg.to_sympy(sg.sum(v))


def test_deep_expressions_convert_without_recursion_errors():
    deep = X
    for _ in range(4000):
        deep = sympy.Add(sympy.sin(deep, evaluate=False), X, evaluate=False)
    e = sg.from_sympy(deep)
    f = sg.compile(e, backend="numpy")
    value = 0.3
    for _ in range(4000):
        value = math.sin(value) + 0.3
    assert f(0.3) == pytest.approx(value, rel=1e-12)

    x = sg.scalar("x")
    h = x
    for _ in range(2000):
        h = sg.sin(h) * x + 1.0
    back = sg.to_sympy(sg.grad(h, x))
    assert isinstance(back, sympy.Add)


def test_floor_ceiling_and_mod_come_in_as_the_ops():
    a, b = sympy.symbols("a b")
    x, y = sg.scalars("a b")
    assert sg.from_sympy(sympy.floor(a) + sympy.ceiling(b)) is sg.floor(x) + sg.ceil(y)
    assert sg.from_sympy(sympy.Mod(a, b)) is sg.mod(x, y)


def test_rounding_and_remainders_go_out_with_numpy_semantics():
    # SymPy's Mod takes the divisor's sign (as np.mod); fmod and trunc are written with floor/ceiling
    x, y = sg.scalars("x y")
    outputs = [sg.floor(x), sg.ceil(x), sg.trunc(x), x % y, sg.fmod(x, y)]
    truths = [np.floor, np.ceil, lambda a, b: np.trunc(a), np.mod, np.fmod]
    X_, Y_ = sympy.symbols("x y")
    for out, truth in zip(outputs, truths):
        expr = sg.to_sympy(out)
        for a, b in [(-7.25, 2.0), (7.25, -2.0), (-2.5, -0.75), (3.0, 1.5)]:
            got = float(expr.subs({X_: a, Y_: b}))
            assert got == (truth(a) if out.op in ("floor", "ceil") else truth(a, b)), (out, a, b)
    with pytest.raises(sg.UnsupportedError, match="the op 'round' has no SymPy form"):
        sg.to_sympy(sg.round(x))
