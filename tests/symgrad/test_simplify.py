"""Construction-time simplification: exact identities only, constant folding, dead code never emitted."""

import numpy as np
import pytest
import sympy

import symgrad as sg


def test_exact_identities_are_folded():
    x = sg.scalar("x")
    assert x * 1 is x and 1 * x is x
    assert x / 1 is x
    assert x - 0 is x
    assert -(-x) is x
    assert x**1 is x
    assert x**2 is sg.square(x)
    assert (x * -1) is -x


def test_inexact_identities_are_not_folded():
    x = sg.scalar("x")
    f = sg.compile([x * 0, x + 0, x - x, x / x], inputs=[x])
    zero_times_inf, plus_zero, minus_self, div_self = f(np.inf)
    assert np.isnan(zero_times_inf)
    assert np.isnan(minus_self) and np.isnan(div_self)
    assert np.copysign(1.0, f(-0.0)[1]) == 1.0  # -0.0 + 0 is +0.0


def test_constant_subexpressions_are_folded():
    x = sg.scalar("x")
    e = x * (sg.constant(2.0) * 3.0 + sg.exp(sg.constant(0.0)))
    assert e.op == "mul"
    const = [i for i in e.inputs if i.op == "constant"][0]
    assert const.value == 7.0


def test_dead_code_is_not_emitted():
    x, y = sg.scalars("x y")
    unused = sg.tanh(y) * 3  # built but not part of the output
    f = sg.compile(sg.sin(x), inputs=[x, y])
    assert "tanh" not in f.source
    assert f(0.5, 2.0) == pytest.approx(np.sin(0.5))
    del unused


def test_folding_reads_no_constant_above_the_bound(monkeypatch):
    from symgrad.ops import registry

    monkeypatch.setattr(registry, "MAX_CONSTANT_ELEMENTS", 10)
    small, large = np.arange(5.0), np.arange(20.0)
    assert sg.sum(sg.constant(small)).op == "constant"
    total = sg.sum(sg.constant(large))
    assert total.op == "sum"  # left to the compiled function, which computes numpy's value
    assert sg.compile(total, backend="numpy")() == np.sum(large)


def test_a_constant_times_a_power_of_two_times_x_is_one_multiply_with_numpys_bits():
    # (x * 2**k) * c == x * (c * 2**k) in IEEE arithmetic when k >= 0 and |c| >= 1: x * 2**k is
    # exact or overflows exactly when the folded product does (rosen's gradient 100 * (2 * s))
    s = sg.scalar("s")
    folded = [(s * 2.0) * 100.0, 100.0 * (2.0 * s), (s * -4.0) * 3.0, (s * 1.0 * 8.0) * -1.5]
    assert [str(e) for e in folded] == ["s * 200.0", "s * 200.0", "s * -12.0", "s * -12.0"]
    kept = {"(s*3)*100": (s * 3.0) * 100.0, "(s*2)*0.5": (s * 2.0) * 0.5, "(s*0.5)*100": (s * 0.5) * 100.0}
    assert [str(e) for e in kept.values()] == ["s * 3.0 * 100.0", "s * 2.0 * 0.5", "s * 0.5 * 100.0"]
    f = sg.compile(folded + list(kept.values()), backend="numpy")
    literal = [
        lambda v: (v * 2.0) * 100.0,
        lambda v: 100.0 * (2.0 * v),
        lambda v: (v * -4.0) * 3.0,
        lambda v: (v * 1.0 * 8.0) * -1.5,
        lambda v: (v * 3.0) * 100.0,
        lambda v: (v * 2.0) * 0.5,
        lambda v: (v * 0.5) * 100.0,
    ]
    values = [0.1, -0.0, 5e-324, 2.2250738585072014e-308, 1.7e306, 1e308, -np.inf, np.nan, 0.7 / 3]
    with np.errstate(all="ignore"):
        for v in values:
            got = f(v)
            for g, fn in zip(got, literal):
                want = fn(np.float64(v))
                assert np.float64(g).tobytes() == np.float64(want).tobytes(), (v, g, want)


def _bits(a):
    return np.asarray(a, dtype=np.float64).tobytes()


def test_a_constant_array_of_one_value_is_that_value_broadcast_in_elementwise_ops():
    # a scalar broadcast over a concrete shape is folded into a constant array (the seed of a
    # sum's gradient); one of a single value, bit for bit, is used as the scalar it is
    x = sg.tensor("x", (4, 1))
    half = x * sg.constant(np.full((4, 1), 0.5))
    assert half.op == "mul" and [i.ndim for i in half.inputs if i.op == "constant"] == [0]
    assert x * sg.constant(np.ones((4, 1))) is x  # then x * 1 -> x applies
    neg_zero = x * sg.constant(np.full((4, 1), -0.0))
    assert [i.ndim for i in neg_zero.inputs if i.op == "constant"] == [0]
    # not one value: signed zeros differ, as do two numbers; a nan array is one value
    mixed = x * sg.constant(np.array([[0.0], [-0.0], [0.0], [0.0]]))
    assert [i.ndim for i in mixed.inputs if i.op == "constant"] == [2]
    two = x + sg.constant(np.array([[1.0], [1.0], [1.0], [2.0]]))
    assert [i.ndim for i in two.inputs if i.op == "constant"] == [2]
    nan = x + sg.constant(np.full((4, 1), np.nan))
    assert [i.ndim for i in nan.inputs if i.op == "constant"] == [0]
    # a constant that broadcasts the other operand keeps its shape (the result's)
    wide = sg.tensor("w", (3,)) * sg.constant(np.full((2, 3), 3.0))
    assert wide.shape == (2, 3) and [i.ndim for i in wide.inputs if i.op == "constant"] == [2]
    w = wide.inputs[0] if wide.inputs[0].op == "symbol" else wide.inputs[1]
    f = sg.compile([half, neg_zero, mixed, two, nan, wide], inputs=[x, w], backend="numpy")
    xv = np.array([[1.5], [-2.0], [np.inf], [0.0]])
    wv = np.array([1.0, -0.0, 7.0])
    with np.errstate(all="ignore"):
        want = [
            xv * np.full((4, 1), 0.5),
            xv * np.full((4, 1), -0.0),
            xv * np.array([[0.0], [-0.0], [0.0], [0.0]]),
            xv + np.array([[1.0], [1.0], [1.0], [2.0]]),
            xv + np.full((4, 1), np.nan),
            wv * np.full((2, 3), 3.0),
        ]
    for g, w in zip(f(xv, wv), want):
        assert _bits(g) == _bits(w)


def test_half_the_sum_of_squares_differentiates_to_x_itself():
    # d/dx 0.5 * sum(x^2): the seed 0.5 (folded over the concrete shape) meets the rule's 2 first
    x = sg.tensor("x", (4, 1))
    assert sg.grad(0.5 * sg.sum(x**2), x) is x
    y = sg.tensor("y", ("n",))
    assert sg.grad(0.5 * sg.sum(y**2), y) is y


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_square_rule_gives_the_correctly_rounded_derivative_at_ordinary_points_and_the_tails(backend):
    # d/dx c x^2 for a constant c is (2 c) x: 2 c is exact, so the gradient is 2 c x rounded
    # once (sympy's derivative evaluated exactly, then rounded); at x = 1e308 with c = 0.5 it is
    # x, where c (2 x) overflowed to inf. For a c known when called it is c (2 x): the same float,
    # but inf where 2 x overflows (|x| > 8.98e307)
    x, c = sg.tensor("x", (9,)), sg.scalar("c")
    points = np.array([0.3, -2.0, 1e-300, 5e-324, -0.0, 1e154, 8e307, 1e308, -1.7e308])
    sx, sc = sympy.symbols("x c")
    derivative = sympy.diff(sc * sx**2, sx)
    seeds = {0.5: sg.constant(0.5), 3.0: sg.constant(3.0), 1e-300: sg.constant(1e-300)}
    for value, seed in seeds.items():
        for scale, inputs in ((seed, [x]), (c, [x, c])):
            g = sg.compile(sg.grad(sg.sum(scale * x**2), x), inputs=inputs, backend=backend)
            got = g(points) if len(inputs) == 1 else g(points, value)
            for p, v in zip(points, got):
                exact = derivative.subs({sx: sympy.Float(float(p), 30), sc: sympy.Float(value, 30)})
                want = (
                    float(sympy.Float(exact, 40)) if abs(exact) < 1.8e308 else float(np.sign(exact) * np.inf)
                )
                if scale is c and abs(p) > np.finfo(np.float64).max / 2:
                    want = float(np.sign(exact) * np.inf)
                assert _bits(v) == _bits(want) or (v == want == 0.0), (value, p, v, want)
