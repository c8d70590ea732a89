"""Loop lengths: one compile for every trip count (T = 1 included), checkpointed reverse mode
over a symbolic length, and the loops of the string parser.

Values are checked against the computation written as a plain Python loop over numpy,
derivatives against central differences of that loop."""

import numpy as np
import pytest

import symgrad as sg
from symgrad.errors import ShapeError
from loop_programs import central, rnn_numpy, rnn_scan

RNG = np.random.default_rng(21)


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


# ---------------------------------------------------------------- item 2: checkpoint= over a symbolic length


def _checkpoint_loss(W, h0, xs, checkpoint, reverse):
    def step(h, x):
        h = sg.tanh(W @ h + x)
        return h, sg.sum(h * h)

    h, ys = sg.scan(step, h0, xs, reverse=reverse, checkpoint=checkpoint)
    return sg.sum(h) + sg.sum(ys * ys)


@pytest.mark.parametrize("k, reverse", [(3, False), (3, True), (1, False), (4, True)])
def test_checkpointed_reverse_mode_over_a_symbolic_length_agrees_with_storing_every_carry(k, reverse):
    W, h0, xs = sg.tensor("W", (3, 3)), sg.tensor("h0", (3,)), sg.tensor("xs", ("T", 3))
    plain = sg.value_and_grad(_checkpoint_loss(W, h0, xs, None, reverse), wrt=[W, h0, xs], backend="numpy")
    blocked = sg.value_and_grad(_checkpoint_loss(W, h0, xs, k, reverse), wrt=[W, h0, xs], backend="numpy")
    for T in (0, 1, 2, 3, 4, 5, 11):  # empty, shorter than a block, whole blocks, a partial last block
        args = [RNG.normal(size=(3, 3)) * 0.5, RNG.normal(size=3), RNG.normal(size=(T, 3))]
        (v1, g1), (v2, g2) = plain(*args), blocked(*args)
        assert v2 == pytest.approx(v1, abs=1e-12)
        for a, b in zip(g1, g2):
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)


def test_checkpointed_scan_of_symbolic_length_stores_one_carry_per_block():
    W, h0, xs = sg.tensor("W", (3, 3)), sg.tensor("h0", (3,)), sg.tensor("xs", ("T", 3))
    source = sg.value_and_grad(_checkpoint_loss(W, h0, xs, 4, False), wrt=[W], backend="numpy").source
    # the carries kept: one per block of 4 steps, the number of blocks computed from T when it runs
    assert "np.empty((((dim_T + 3)//4), 3)" in source
    assert "np.empty((dim_T, 3)" not in source


def test_traced_checkpointed_scan_matches_the_python_loop_with_one_compile():
    def f(W, U, h0, xs):
        def step(h, x):
            h = np.tanh(W @ h + U @ x)
            return h, np.sum(h**2)

        h, ys = sg.scan(step, h0, xs, checkpoint=4)
        return np.sum(h) + np.sum(ys)

    vg = sg.value_and_grad(f, argnums=(0, 3), backend="numpy")
    for T in (1, 7, 50):
        args = _rnn_args(T)
        value, (gW, gx) = vg(*args)
        assert value == pytest.approx(rnn_numpy(*args), rel=1e-12)
        np.testing.assert_allclose(
            gW, central(lambda w: rnn_numpy(w, *args[1:]), args[0]), rtol=1e-6, atol=1e-7
        )
        np.testing.assert_allclose(
            gx, central(lambda x: rnn_numpy(*args[:3], x), args[3]), rtol=1e-6, atol=1e-7
        )
    assert vg.compile_count == 1


def test_second_derivatives_through_a_checkpointed_scan_of_symbolic_length():
    W, h0, xs = sg.tensor("W", (3, 3)), sg.tensor("h0", (3,)), sg.tensor("xs", ("T", 3))
    plain, blocked = (
        sg.compile(
            sg.hessian(_checkpoint_loss(W, h0, xs, k, False), [h0])[0][0], inputs=[W, h0, xs], backend="numpy"
        )
        for k in (None, 3)
    )
    for T in (1, 7):
        args = [RNG.normal(size=(3, 3)) * 0.5, RNG.normal(size=3), RNG.normal(size=(T, 3))]
        np.testing.assert_allclose(blocked(*args), plain(*args), rtol=0, atol=1e-12)


def test_checkpoint_of_a_symbolic_length_refuses_a_bad_block_size():
    c0, xs = sg.scalar("c0"), sg.tensor("xs", ("T",))
    for bad in (0, -2, 2.5, True):
        with pytest.raises(
            sg.UnsupportedError, match=r"scan: checkpoint must be a positive int \(steps per block\)"
        ):
            sg.scan(lambda c, x: (c * x, None), c0, xs, checkpoint=bad)


@pytest.mark.slow
def test_numba_checkpointed_scan_over_a_symbolic_length():
    W, h0, xs = sg.tensor("W", (3, 3)), sg.tensor("h0", (3,)), sg.tensor("xs", ("T", 3))
    plain = sg.value_and_grad(
        _checkpoint_loss(W, h0, xs, None, False), wrt=[W, xs], inputs=[W, h0, xs], backend="numpy"
    )
    blocked = sg.value_and_grad(_checkpoint_loss(W, h0, xs, 3, False), wrt=[W, xs], inputs=[W, h0, xs])
    for T in (0, 1, 7):
        args = [RNG.normal(size=(3, 3)) * 0.5, RNG.normal(size=3), RNG.normal(size=(T, 3))]
        (v1, g1), (v2, g2) = plain(*args), blocked(*args)
        assert float(v2) == pytest.approx(v1, abs=1e-12)
        for a, b in zip(g1, g2):
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)
    assert len(blocked.compiles) == 1


# ---------------------------------------------------------------- item 4: the parser's loop, fold(...)

_SHAPES = {"W": (3, 3), "h": (3,), "h0": (3,), "x": (3,), "xs": ("T", 3)}


def _fold_truth(W, h0, xs):
    h, hs = h0, []
    for x in xs:
        h = np.tanh(W @ h + x)
        hs.append(h)
    return h, hs


def test_parsed_fold_is_the_python_loop_with_its_gradient_for_every_length():
    loss = sg.parse("sum(fold(tanh(W @ h + x), h, h0, x, xs) ** 2)", shapes=_SHAPES)
    W = sg.tensor("W", (3, 3))
    vg = sg.value_and_grad(
        loss, wrt=[W], inputs=[W, sg.tensor("h0", (3,)), sg.tensor("xs", ("T", 3))], backend="numpy"
    )

    def truth(W0, h00, X):
        return np.sum(_fold_truth(W0, h00, X)[0] ** 2)

    for T in (0, 1, 7, 50):
        W0, h00, X = RNG.normal(size=(3, 3)) * 0.5, RNG.normal(size=3), RNG.normal(size=(T, 3))
        value, (gW,) = vg(W0, h00, X)
        assert value == pytest.approx(truth(W0, h00, X), rel=1e-12)
        np.testing.assert_allclose(gW, central(lambda w: truth(w, h00, X), W0), rtol=1e-6, atol=1e-7)
    assert vg.source.count("for t") == 2  # one loop forward, one reverse: the same text for every T


def test_parsed_fold_with_history_and_a_fixed_length():
    hs = sg.parse("fold(tanh(W @ h + x), h, h0, x, xs, history=True)", shapes=_SHAPES)
    run = sg.compile(hs, inputs=[sg.tensor(n, _SHAPES[n]) for n in ("W", "h0", "xs")], backend="numpy")
    W0, h00, X = RNG.normal(size=(3, 3)) * 0.5, RNG.normal(size=3), RNG.normal(size=(4, 3))
    np.testing.assert_allclose(run(W0, h00, X), np.array(_fold_truth(W0, h00, X)[1]), rtol=1e-13)
    # no rows: length= steps of c = c / 2 + a
    c = sg.parse("fold(c / 2 + a, c, c0, length=5)")
    f = sg.compile(c, inputs=[sg.scalar("a"), sg.scalar("c0")], backend="numpy")
    expected = 1.0
    for _ in range(5):
        expected = expected / 2 + 0.3
    assert float(f(0.3, 1.0)) == pytest.approx(expected, rel=1e-15)


def test_parsed_fold_errors_name_what_is_wrong():
    with pytest.raises(sg.UnsupportedError, match=r"fold: carry must be a name \(the symbol the body reads"):
        sg.parse("fold(h + 1, h * 2, h0, length=3)")
    with pytest.raises(sg.UnsupportedError, match=r"fold: x must be a name"):
        sg.parse("fold(h + x, h, h0, x + 1, xs)", shapes={"xs": ("T",)})
    with pytest.raises(sg.UnsupportedError, match="fold: give x and xs together"):
        sg.parse("fold(h + x, h, h0, x)")
    with pytest.raises(ShapeError, match=r"fold: init has shape \(\) but the carry h has \(3,\)"):
        sg.parse("fold(h + x, h, h0, x, xs)", shapes={"h": (3,), "x": (3,), "xs": ("T", 3)})
    with pytest.raises(ShapeError, match=r"fold: a row of xs has shape \(2,\) but x \(x\) has \(3,\)"):
        sg.parse("fold(h + x, h, h0, x, xs)", shapes={"h": (3,), "h0": (3,), "x": (3,), "xs": ("T", 2)})
    with pytest.raises(ShapeError, match=r"changes the shape of carry leaf 0 from \(\) to \(3,\)"):
        sg.parse("fold(h * v, h, h0, length=3)", shapes={"v": (3,)})
    with pytest.raises(sg.UnsupportedError, match="fold: history must be True or False"):
        sg.parse("fold(h, h, h0, length=3, history=2)")
    with pytest.raises(sg.ParseError, match="lambda"):
        sg.parse("fold(lambda h: h, h, h0, length=3)")
