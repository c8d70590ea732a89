"""A rolled loop writes the rows it computes straight into the stack holding them.

The rows of the gradient with respect to a traced loop's per-step input (``d_xs``), and any
``np.stack`` of per-step values, are one array. A rolled loop stores its per-step rows in an
array of its own (``<name>_all``, read after the loop); when a stack holds every row of that
array in order (and the loop's value after it as the last row), the loop stores into the stack
instead (``rolling._rows_in_place``): no second array, no copy of its rows. An array of rows
nothing reads is not stored at all (``rolling._drop_unread_rows``). Values are checked
against backpropagation through time written by hand in numpy and central differences.
"""

import re

import numpy as np
import pytest

import symgrad as sg
from symgrad.autodiff import grad

D = 8


def rnn(W, U, b, xs):
    h = np.zeros(W.shape[0])
    for t in range(xs.shape[0]):
        h = np.tanh(W @ h + U @ xs[t] + b)
    return np.sum(h)


def rnn_by_hand(W, U, b, xs):
    """rnn's value and gradients, backpropagation through time by hand."""
    hs = [np.zeros(W.shape[0])]
    for x in xs:
        hs.append(np.tanh(W @ hs[-1] + U @ x + b))
    g = np.ones(W.shape[0])
    dW, dU, db, dxs = np.zeros_like(W), np.zeros_like(U), np.zeros_like(b), np.zeros_like(xs)
    for t in reversed(range(len(xs))):
        a = g * (1 - hs[t + 1] ** 2)
        dW += np.outer(a, hs[t])
        dU += np.outer(a, xs[t])
        db += a
        dxs[t] = U.T @ a
        g = W.T @ a
    return np.sum(hs[-1]), (dW, dU, db, dxs)


def _kernel(source):
    """The text of the kernel functions (what numba compiles)."""
    return source.split("# the entry point of the machine code", 1)[0]


def _copies_of_rows(kernel, name):
    """The lines copying a loop's stored rows (``<x>_all[...]``) into ``name``."""
    return re.findall(rf"\b{name}\[[^\]]*\] = \w+_all\[", kernel)


def _no_shared_memory(arrays, inputs):
    arrays = [a for a in arrays if isinstance(a, np.ndarray)]
    for k, a in enumerate(arrays):
        for b in arrays[k + 1 :] + list(inputs):
            assert not np.shares_memory(a, b)


@pytest.mark.parametrize("T", [12, 200])
def test_the_rnn_loop_writes_the_rows_of_d_xs_into_d_xs(T):
    rng = np.random.default_rng(T)
    args = [
        rng.normal(size=(D, D)) * 0.3,
        rng.normal(size=(D, D)) * 0.3,
        rng.normal(size=D) * 0.1,
        rng.normal(size=(T, D)),
    ]
    vg = sg.value_and_grad(rnn, argnums=(0, 1, 2, 3))
    value, grads = vg(*args)
    kernel = _kernel(vg.compiled_for(*args).source)
    assert "rolled into a loop" in kernel
    # the loop over the steps stores each row of d_xs into d_xs (from row 1 on; row 0 is the
    # first step's, outside the loop) and nothing copies rows of another array into it
    assert re.search(r"\n +d_xs\[1 \+ k\w*, \w+\] = ", kernel)
    assert not _copies_of_rows(kernel, "d_xs")
    want_value, want = rnn_by_hand(*args)
    assert np.isclose(value, want_value, rtol=1e-12)
    for got, expected in zip(grads, want):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13)
    _no_shared_memory(grads, args)


def scalar_rnn(a, xs):
    h = 0.0
    for t in range(xs.shape[0]):
        h = np.tanh(a * h + xs[t])
    return h


def test_the_reverse_sweep_writes_d_xs_from_its_last_row_back():
    # d_xs[t] is computed by the reverse sweep, the last step first: the loop stores row
    # T - 2 - k; the rows the gradient of ``a`` reads are read from d_xs
    T = 40
    rng = np.random.default_rng(5)
    a, xs = 0.7, rng.normal(size=T)
    vg = sg.value_and_grad(scalar_rnn, argnums=(0, 1))
    value, (d_a, d_xs) = vg(a, xs)
    kernel = _kernel(vg.compiled_for(a, xs).source)
    assert re.search(r"\n +d_xs\[dim_xs_0 - 2 - k\w*\] = ", kernel)
    assert not _copies_of_rows(kernel, "d_xs")
    assert "_all = " not in kernel.split("# backward", 1)[1]  # the sweep stores no array of its own
    assert np.isclose(value, scalar_rnn(a, xs), rtol=1e-14)
    h = 1e-6
    want_a = (scalar_rnn(a + h, xs) - scalar_rnn(a - h, xs)) / (2 * h)
    assert np.isclose(d_a, want_a, rtol=1e-7, atol=1e-10)
    eye = np.eye(T)
    want_xs = [(scalar_rnn(a, xs + h * eye[t]) - scalar_rnn(a, xs - h * eye[t])) / (2 * h) for t in range(T)]
    np.testing.assert_allclose(d_xs, want_xs, rtol=1e-7, atol=1e-10)
    _no_shared_memory([d_xs], [xs])


def test_a_stack_output_a_row_of_it_and_the_gradients_are_separate_arrays():
    # the states stacked, one state (a row the loop computes), the loss and its gradients, all
    # outputs: each returned array is its own
    T = 30
    xs, W = sg.tensor("xs", (T, 3)), sg.tensor("W", (3, 3))
    h = sg.tanh(xs[0])
    hs = [h]
    for t in range(1, T):
        h = sg.tanh(W @ h + xs[t])
        hs.append(h)
    stacked = sg.stack(hs)
    loss = sg.sum(stacked**2)
    f = sg.compile([stacked, hs[T // 2], loss, *grad(loss, [W, xs])], [W, xs])
    rng = np.random.default_rng(6)
    Wv, xv = rng.normal(size=(3, 3)) * 0.5, rng.normal(size=(T, 3))
    got_stack, got_row, got_loss, d_W, d_xs = f(Wv, xv)
    assert not _copies_of_rows(_kernel(f.source), "out4")  # d_xs, the fifth output

    def states(W, xs):
        out = [np.tanh(xs[0])]
        for t in range(1, len(xs)):
            out.append(np.tanh(W @ out[-1] + xs[t]))
        return np.array(out)

    want = states(Wv, xv)
    np.testing.assert_allclose(got_stack, want, rtol=1e-14)
    np.testing.assert_allclose(got_row, want[T // 2], rtol=1e-14)
    assert np.isclose(got_loss, np.sum(want**2), rtol=1e-13)
    step = 1e-6
    for arg, got in ((0, d_W), (1, d_xs)):
        for index in (
            [(0, 0), (1, 2), (2, 1)] if arg == 0 else [(0, 0), (1, 2), (T // 2, 1), (T - 2, 0), (T - 1, 2)]
        ):
            up, down = [Wv.copy(), xv.copy()], [Wv.copy(), xv.copy()]
            up[arg][index] += step
            down[arg][index] -= step
            numeric = (np.sum(states(*up) ** 2) - np.sum(states(*down) ** 2)) / (2 * step)
            assert np.isclose(got[index], numeric, rtol=1e-6, atol=1e-9), (arg, index)
    _no_shared_memory([got_stack, got_row, d_W, d_xs], [Wv, xv])


@pytest.mark.parametrize(
    "fn, argnums, make_args",
    [
        (
            rnn,
            (0, 1, 2, 3),
            lambda rng: [
                rng.normal(size=(D, D)) * 0.3,
                rng.normal(size=(D, D)) * 0.3,
                rng.normal(size=D) * 0.1,
                rng.normal(size=(20, D)),
            ],
        ),
        (scalar_rnn, (0, 1), lambda rng: [0.7, rng.normal(size=20)]),
    ],
    ids=["rnn", "scalar"],
)
def test_every_array_of_rows_a_loop_stores_is_read(fn, argnums, make_args):
    # tanh's square, stored by the forward loop for a backward loop that reads the square's
    # derivative (1 - square) instead, is not stored: each loop's array of rows is read later
    args = make_args(np.random.default_rng(7))
    vg = sg.value_and_grad(fn, argnums=argnums)
    vg(*args)
    kernel = _kernel(vg.compiled_for(*args).source)
    stored = re.findall(r"\n +(\w+_all) = _rt\.empty\(", kernel)
    assert stored
    for name in stored:
        assert re.search(rf"\n[^\n]* = [^\n]*\b{name}\[", kernel), name
    # and each row a loop reads of an earlier loop's array is used
    for name in re.findall(r"\n +(\w+) = \w+_all\[[^\n]*# computed in an earlier loop", kernel):
        assert re.search(rf"\n[^\n]* = [^\n]*(?<![\w.]){name}\b", kernel), name
