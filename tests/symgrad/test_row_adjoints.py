"""The adjoint of an array read row by row (a traced loop's ``xs[t]``) is one array of rows.

Each read ``xs[t]`` sends ``xs`` a ``slice_grad``: zeros of the whole array with row t set.
Reverse mode sums the adjoints an input gets with the op table's ``sum_joint`` when the op
has one: slice_grad's stacks each run of at least ``ROWS_STACKED_FROM`` consecutive rows, so
the gradient of ``xs`` costs O(T d), not T arrays of T d zeros added up (O(T^2 d)). Values are
checked against derivatives written by hand in numpy.
"""

import numpy as np
import pytest

import symgrad as sg
from symgrad.autodiff import grad
from symgrad.graph import topo_order
from symgrad.ops.structure import ROWS_STACKED_FROM


def _evaluate(outputs, inputs, args):
    return sg.compile(outputs, inputs, backend="numpy")(*args)


def _ops(expr):
    return [n.op for n in topo_order([expr])]


def _full_arrays(expr, shape):
    """How many computed nodes of ``expr``'s graph are arrays of ``shape`` (the whole of xs)."""
    return sum(1 for n in topo_order([expr]) if n.shape == shape and n.op not in ("symbol", "constant"))


@pytest.mark.parametrize("T", [4, 40])
def test_the_adjoint_of_every_row_read_once_is_one_stack_of_the_rows(T):
    xs, w = sg.tensor("xs", (T, 3)), sg.tensor("w", (3,))
    loss = sum(sg.sum(sg.sin(xs[t]) * w) * (t + 1) for t in range(T))
    (d_xs,) = grad(loss, [xs])
    assert d_xs.op == "concatenate" and len(d_xs.inputs) == T
    assert "slice_grad" not in _ops(d_xs)
    assert _full_arrays(d_xs, (T, 3)) == 1  # the result alone: no zeros of the whole array per row
    rng = np.random.default_rng(1)
    x, wv = rng.normal(size=(T, 3)), rng.normal(size=3)
    steps = np.arange(1, T + 1)[:, None]
    np.testing.assert_allclose(_evaluate(d_xs, [xs, w], [x, wv]), np.cos(x) * wv * steps, rtol=1e-13)


def test_a_run_of_rows_inside_the_array_is_written_into_its_block():
    # rows 2 .. 8 of 12 read: their stack is one block of zeros of the array's shape
    xs = sg.tensor("xs", (12, 2))
    loss = sum(sg.sum(xs[t] ** 2) for t in range(2, 9))
    (d_xs,) = grad(loss, [xs])
    assert d_xs.op == "slice_grad" and d_xs.attrs["key"][0] == ("s", 2, 9, None)
    assert d_xs.inputs[0].op == "concatenate" and len(d_xs.inputs[0].inputs) == 7
    x = np.random.default_rng(2).normal(size=(12, 2))
    want = np.zeros((12, 2))
    want[2:9] = 2 * x[2:9]
    np.testing.assert_allclose(_evaluate(d_xs, [xs], [x]), want, rtol=1e-14)


def test_one_row_read_through_several_keys_gets_the_sum_of_their_adjoints():
    # the last row read as xs[T - 1], xs[-1] and elementwise as xs[T - 1, 0]: one row of the
    # stack adds the whole-row reads; the element's adjoint is added to the stack
    T = 6
    xs = sg.tensor("xs", (T, 3))
    loss = sum(sg.sum(xs[t] ** 2) for t in range(T)) + 3.0 * sg.sum(xs[-1]) + 5.0 * xs[T - 1, 0]
    (d_xs,) = grad(loss, [xs])
    x = np.random.default_rng(3).normal(size=(T, 3))
    want = 2 * x
    want[-1] += 3.0
    want[-1, 0] += 5.0
    np.testing.assert_allclose(_evaluate(d_xs, [xs], [x]), want, rtol=1e-14)
    assert _full_arrays(d_xs, (T, 3)) <= 3  # the stack, the element's block, their sum


def test_scalar_rows_of_a_vector_stack_as_well():
    n = 9
    x = sg.tensor("x", (n,))
    loss = sum(sg.exp(x[k]) * (k - 4) for k in range(n))
    (d_x,) = grad(loss, [x])
    assert d_x.op == "concatenate"
    v = np.random.default_rng(4).normal(size=n)
    np.testing.assert_allclose(_evaluate(d_x, [x], [v]), np.exp(v) * (np.arange(n) - 4), rtol=1e-14)


def test_rows_apart_and_short_runs_stay_rows_written_into_zeros():
    # fewer consecutive rows than ROWS_STACKED_FROM, and rows with gaps between them: as before,
    # each row's zeros with the row set, added (a stack would gain nothing)
    xs = sg.tensor("xs", (20, 2))
    rows = [0, 1, 2][: ROWS_STACKED_FROM - 1] + [5, 7, 9, 11]
    loss = sum(sg.sum(xs[t] ** 3) for t in rows)
    (d_xs,) = grad(loss, [xs])
    assert "concatenate" not in _ops(d_xs)
    assert _ops(d_xs).count("slice_grad") == len(rows)
    x = np.random.default_rng(5).normal(size=(20, 2))
    want = np.zeros((20, 2))
    want[rows] = 3 * x[rows] ** 2
    np.testing.assert_allclose(_evaluate(d_xs, [xs], [x]), want, rtol=1e-14)


def test_a_traced_rnn_gradient_wrt_its_inputs_matches_the_backward_pass_by_hand():
    # the numpy backend (the graph as it is, straight-line) against the RNN's reverse pass
    # written out in numpy
    T, D, H = 30, 4, 8

    def rnn(Wx, Wh, b, w_out, xs, ys):
        h, loss = np.zeros(Wh.shape[0]), 0.0
        for t in range(xs.shape[0]):
            h = np.tanh(xs[t] @ Wx + h @ Wh + b)
            loss = loss + (h @ w_out - ys[t]) ** 2
        return loss

    rng = np.random.default_rng(6)
    Wx, Wh = rng.normal(size=(D, H)) * 0.5, rng.normal(size=(H, H)) * 0.3
    b, w_out = rng.normal(size=H) * 0.1, rng.normal(size=H) * 0.5
    xs, ys = rng.normal(size=(T, D)), np.sin(np.arange(T) / 2.0)
    _, (d_Wx, d_xs) = sg.value_and_grad(rnn, argnums=(0, 4), backend="numpy")(Wx, Wh, b, w_out, xs, ys)
    hs = [np.zeros(H)]
    for t in range(T):
        hs.append(np.tanh(xs[t] @ Wx + hs[-1] @ Wh + b))
    want_xs, want_Wx, dh = np.zeros((T, D)), np.zeros((D, H)), np.zeros(H)
    for t in reversed(range(T)):
        h = hs[t + 1]
        dh = dh + 2 * (h @ w_out - ys[t]) * w_out
        dz = dh * (1 - h**2)
        want_xs[t] = Wx @ dz
        want_Wx += np.outer(xs[t], dz)
        dh = Wh @ dz
    np.testing.assert_allclose(d_xs, want_xs, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(d_Wx, want_Wx, rtol=1e-11, atol=1e-13)
