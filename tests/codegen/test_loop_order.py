"""How a kernel's steps split into rolled loops depends on its graph alone.

The numba backend rolls the T copies of a traced loop's step back into loops
(``schedule.find_loops`` over orders of the schedule, ``numba_backend._find_loops``). Nodes
are interned: a node an earlier graph made is the same object in a later one, made earlier
than the rest. The orders tried are the graph's (never the order the process made its nodes
in), so a function's source is the same whatever was built before it in the process, and its
kernel the same text at every trip count. Values are checked against the Python function on
numpy arrays and against central differences.
"""

import gc
import os
import subprocess
import sys

import numpy as np

import symgrad as sg
from symgrad.autodiff import grad
from symgrad.codegen.numba_backend import NumbaEmitter

H, D = 8, 4


def rnn_graph(T, loss_of="sum", wrt_xs=True):
    """The RNN's loss (a running sum of per-step squared errors, or the squared error of the
    stacked states) and its gradients, with the builder API: (outputs, inputs). Every variant
    uses the same symbols, so the variants share their nodes."""
    Wx, Wh, b, w = (
        sg.tensor("Wx", (D, H)),
        sg.tensor("Wh", (H, H)),
        sg.tensor("b", (H,)),
        sg.tensor("w", (H,)),
    )
    xs, ys = sg.tensor("xs", (T, D)), sg.tensor("ys", (T,))
    h = sg.tanh(xs[0] @ Wx + b)
    hs, loss = [h], (h @ w - ys[0]) ** 2
    for t in range(1, T):
        h = sg.tanh(xs[t] @ Wx + h @ Wh + b)
        hs.append(h)
        loss = loss + (h @ w - ys[t]) ** 2
    if loss_of == "stack":
        loss = sg.sum((sg.stack(hs) @ w - ys) ** 2)
    inputs = [Wx, Wh, b, w, xs, ys]
    return [loss, *grad(loss, inputs[: 5 if wrt_xs else 4])], inputs


def source(T, loss_of="sum", wrt_xs=True):
    outputs, inputs = rnn_graph(T, loss_of, wrt_xs)
    names = ["value"] + [f"d_{s.name}" for s in inputs[: len(outputs) - 1]]
    return NumbaEmitter().module(outputs, names, inputs, 1, "call", "rnn", "out")


def kernel(text):
    """The text of the kernel functions (what numba compiles)."""
    return text.split("\ndef kernel(", 1)[1].split("# the entry point of the machine code", 1)[0]


def built_after_other_graphs():
    """The RNN's source (gradient with respect to xs too) built first in this process, then
    again after graphs that share its nodes (made before its own, the older ones): whether the
    two are one text, and how many loops it rolled."""
    first = source(10)
    gc.collect()  # the first build's nodes are gone: the next graphs make them anew
    others = [rnn_graph(10, "stack"), rnn_graph(10, "sum", wrt_xs=False), rnn_graph(7)]
    second = source(10)
    assert others
    return first == second, first.count("rolled into a loop")


def _run(code):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_function_built_after_unrelated_graphs_gets_the_same_source():
    # in a fresh process, so that the first build is the first to make its nodes
    code = (
        f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "import test_loop_order as t\n"
        "print(*t.built_after_other_graphs())\n"
    )
    same, rolled = _run(code).split()
    assert rolled != "0"
    assert same == "True"


def test_the_rnn_kernel_with_the_gradient_of_xs_is_one_text_at_T_10_and_1000():
    # in this process, after whatever other tests built: d_xs's rows are written into one array
    # by a copy loop of the trip count, so the kernel's text is the same at every length
    short, long = kernel(source(10)), kernel(source(1000))
    assert "rolled into a loop" in short
    assert short == long
    assert short.count("\n") < 400
    assert "_rt.zeros((dim_xs_0" not in short  # no array of all the rows per step


def test_the_gradient_of_xs_of_a_traced_rnn_at_T_1000_matches_central_differences():
    T = 1000

    def rnn(Wx, Wh, b, w_out, xs, ys):
        h, loss = np.zeros(Wh.shape[0]), 0.0
        for t in range(xs.shape[0]):
            h = np.tanh(xs[t] @ Wx + h @ Wh + b)
            loss = loss + (h @ w_out - ys[t]) ** 2
        return loss

    rng = np.random.default_rng(0)
    args = [
        rng.normal(size=(D, H)) * 0.5,
        rng.normal(size=(H, H)) * 0.3,
        rng.normal(size=H) * 0.1,
        rng.normal(size=H) * 0.5,
        rng.normal(size=(T, D)),
        np.sin(np.arange(T) / 2.0),
    ]
    value, (d_xs,) = sg.value_and_grad(rnn, argnums=(4,))(*args)
    assert np.isclose(value, rnn(*args), rtol=1e-12)
    eps = 1e-6
    for t, j in [(0, 0), (1, 2), (T // 2, 1), (T - 2, 3), (T - 1, 0)]:
        up, down = args[4].copy(), args[4].copy()
        up[t, j] += eps
        down[t, j] -= eps
        numeric = (rnn(*args[:4], up, args[5]) - rnn(*args[:4], down, args[5])) / (2 * eps)
        assert np.isclose(d_xs[t, j], numeric, rtol=1e-6, atol=1e-8), (t, j)
