"""Construction-time simplification: exact identities only, constant folding, dead code never emitted."""

import numpy as np
import pytest

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
