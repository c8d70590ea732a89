"""Reverse passes that reuse what the forward computed instead of another pass over memory: a
constant cotangent of square folds ((2 g) x), and softmax/logsumexp of a positively scaled
array shift by the scaled max of the unscaled one (no array of the scaled values). Values
against numpy, derivatives against central differences, and the graph counted."""

import collections

import numpy as np
import pytest

import symgrad as sg
from loop_programs import central
from symgrad.graph import topo_order

RNG = np.random.default_rng(31)


def test_half_a_sum_of_squares_has_the_input_itself_as_gradient():
    x = sg.tensor("x", ("n",))
    assert sg.grad(0.5 * sg.sum(x**2), x) is x
    g = sg.grad(3.0 * sg.sum(x**2), x)  # 6 x, one product
    v = RNG.normal(size=5)
    np.testing.assert_allclose(sg.compile(g, inputs=[x], backend="numpy")(v), 6.0 * v, rtol=1e-15)


def _softmax_np(s, c):
    z = c * s
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("c", [0.125, 3.0, -0.5])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_softmax_of_a_scaled_array_matches_numpy_and_central_differences(c, backend):
    s, w = sg.tensor("s", ("m", "n")), sg.tensor("w", ("m", "n"))
    f = sg.sum(w * sg.softmax(s * c, axis=-1)) + sg.sum(sg.logsumexp(c * s, axis=1))
    vg = sg.value_and_grad(f, [s], inputs=[s, w], backend=backend)
    sv, wv = RNG.normal(size=(4, 7)) * 5, RNG.normal(size=(4, 7))

    def by_hand(sv):
        z = c * sv
        lse = np.log(np.sum(np.exp(z - z.max(axis=1, keepdims=True)), axis=1)) + z.max(axis=1)
        return np.sum(wv * _softmax_np(sv, c)) + np.sum(lse)

    value, (g,) = vg(sv, wv)
    np.testing.assert_allclose(value, by_hand(sv), rtol=1e-12)
    np.testing.assert_allclose(g, central(by_hand, sv), rtol=1e-6, atol=1e-8)


def test_a_scaled_softmax_takes_the_max_of_the_unscaled_array():
    s = sg.tensor("s", ("m", "n"))
    maxima = [n for n in topo_order([sg.softmax(s * 0.125, axis=-1)]) if n.op == "max"]
    assert [m.inputs[0] for m in maxima] == [s]
    negative = [n for n in topo_order([sg.softmax(s * -0.125, axis=-1)]) if n.op == "max"]
    assert [m.inputs[0].op for m in negative] == ["mul"]  # max(-y) is not -max(y): kept


def test_a_scaled_softmax_at_infinities_matches_numpy():
    # the shift is the max where finite, else 0 (softmax's rule, scaled or not)
    s = sg.tensor("s", ("m", "n"))
    f = sg.compile(sg.softmax(s * 0.5, axis=-1), inputs=[s], backend="numpy")
    v = np.array([[np.inf, 1.0, 2.0], [-np.inf, -np.inf, -np.inf], [1.0, 2.0, 3.0], [-np.inf, 0.0, 1e308]])
    with np.errstate(invalid="ignore", over="ignore"):
        z = 0.5 * v
        m = z.max(axis=-1, keepdims=True)
        e = np.exp(z - np.where(np.isfinite(m), m, 0.0))
        np.testing.assert_array_equal(f(v), e / e.sum(axis=-1, keepdims=True))


def test_attention_s_reverse_pass_has_four_products_and_no_scaled_score_array():
    q, k, v = (sg.tensor(name, ("h", "n", "d")) for name in "qkv")
    p = sg.softmax(sg.einsum("hqd,hkd->hqk", q, k) * 0.125, axis=-1)
    loss = 0.5 * sg.sum(sg.einsum("hqk,hkd->hqd", p, v) ** 2)
    grads = sg.grad(loss, [q, k, v])
    ops = collections.Counter(n.op for n in topo_order([loss, *grads]))
    assert ops["matmul"] == 6, ops  # 2 forward, 4 backward
    src = sg.value_and_grad(loss, [q, k, v], inputs=[q, k, v]).source
    assert "mul = matmul * 0.125" not in src  # the scores are scaled inside the exp loop
