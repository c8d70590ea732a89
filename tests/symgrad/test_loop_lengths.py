"""Loop lengths: one compile for every trip count (T = 1 included), checkpointed reverse mode
over a symbolic length, and the loops of the string parser.

Values are checked against the computation written as a plain Python loop over numpy,
derivatives against central differences of that loop."""

import numpy as np
import pytest

import symgrad as sg

RNG = np.random.default_rng(21)


def central(f, x, h=1e-6):
    x = np.asarray(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def rnn_numpy(W, U, h0, xs):
    h, total = h0, 0.0
    for x in xs:
        h = np.tanh(W @ h + U @ x)
        total += np.sum(h**2)
    return np.sum(h) + total


def rnn_scan(W, U, h0, xs):
    def step(h, x):
        h = np.tanh(W @ h + U @ x)
        return h, np.sum(h**2)

    h, ys = sg.scan(step, h0, xs)
    return np.sum(h) + np.sum(ys)


def _rnn_args(T):
    return [
        RNG.normal(size=(3, 3)) * 0.5,
        RNG.normal(size=(3, 2)),
        RNG.normal(size=3),
        RNG.normal(size=(T, 2)),
    ]


# ---------------------------------------------------------------- item 1: T = 1 is no special case


@pytest.mark.parametrize("lengths", [(1, 7, 50), (7, 1, 50, 1)])
def test_a_traced_scan_compiles_once_for_every_length_one_included(lengths):
    vg = sg.value_and_grad(rnn_scan, argnums=(0, 1, 2, 3), backend="numpy")
    for T in lengths:
        args = _rnn_args(T)
        value, grads = vg(*args)
        assert value == pytest.approx(rnn_numpy(*args), rel=1e-12)
        for k, g in enumerate(grads):
            num = central(lambda a: rnn_numpy(*args[:k], a, *args[k + 1 :]), args[k])
            np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-7)
    assert vg.compile_count == 1
    traces = vg.trace_count
    vg(*_rnn_args(1))  # the dispatcher lets a loop length of 1 through: no new trace
    vg(*_rnn_args(4))
    assert vg.trace_count == traces


def test_a_size_one_axis_that_also_broadcasts_keeps_numpy_semantics():
    # xs (1, 2) + B (5, 2) broadcasts at T = 1 only: that call traces with T = 1, as numpy runs it
    def f(h0, xs, B):
        h, _ = sg.scan(lambda h, x: (np.sin(h) * x[0] + x[1], None), h0, xs)
        return np.sum(h) + np.sum(xs * B)

    def truth(h0, xs, B):
        h = h0
        for x in xs:
            h = np.sin(h) * x[0] + x[1]
        return np.sum(h) + np.sum(xs * B)

    vg = sg.value_and_grad(f, argnums=(0, 1), backend="numpy")
    B = RNG.normal(size=(5, 2))
    args1 = [0.3, RNG.normal(size=(1, 2)), B]
    value, (g0, g1) = vg(*args1)
    assert value == pytest.approx(truth(*args1), rel=1e-12)
    np.testing.assert_allclose(g1, central(lambda a: truth(args1[0], a, B), args1[1]), rtol=1e-6, atol=1e-7)
    args5 = [0.3, RNG.normal(size=(5, 2)), B]
    assert vg(*args5)[0] == pytest.approx(truth(*args5), rel=1e-12)
    assert vg.compile_count == 2


def test_a_size_one_loop_axis_an_output_squeezes_stays_concrete():
    def f(h0, xs):
        h, ys = sg.scan(lambda h, x: (h + x, h * x), h0, xs)
        return h, np.squeeze(ys)

    run = sg.compile(f, backend="numpy")
    h, ys = run(np.ones(1), np.full((1, 1), 2.0))
    assert ys.shape == np.squeeze(np.full((1, 1), 2.0)).shape == ()
    np.testing.assert_allclose(h, [3.0])
    h, ys = run(np.ones(1), np.full((4, 1), 2.0))
    assert ys.shape == (4,)
    np.testing.assert_allclose(ys, [2.0, 6.0, 10.0, 14.0])


@pytest.mark.slow
def test_numba_scan_at_length_one_reuses_the_machine_code_of_every_length():
    vg = sg.value_and_grad(rnn_scan, argnums=0)
    for T in (1, 7, 50):
        args = _rnn_args(T)
        value, g = vg(*args)
        assert float(value) == pytest.approx(rnn_numpy(*args), rel=1e-12)
        np.testing.assert_allclose(
            g, central(lambda W: rnn_numpy(W, *args[1:]), args[0]), rtol=1e-6, atol=1e-7
        )
    assert len(vg.compiles) == 1
