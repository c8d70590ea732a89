"""Traced Python loops with tensor state (an RNN) roll back into loops in the numba kernel.

The loop is written the obvious way (``for t in range(T): h = np.tanh(xs[t] @ Wx + h @ Wh + b)``);
the trace unrolls it into T copies of the step, and the numba backend finds the repetition
again: array statements of equal shape, the per-step row ``xs[t]`` and its adjoint, the carried
state, running sums of gradients and stacks of per-step outputs. These tests check the numbers
against the numpy backend (the unrolled graph, straight-line numpy, never rolled), against the
Python function run on numpy arrays and against central differences; and the build-time claim
by structure: the generated source has as many lines at T = 10 as at T = 1000.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import symgrad as sg
from symgrad.autodiff import grad
from symgrad.codegen import ir
from symgrad.codegen.numba_backend import NumbaEmitter
from symgrad.codegen.schedule import schedule

H, D = 8, 4


def rnn(Wx, Wh, b, w_out, xs, ys):
    h = np.zeros(Wh.shape[0])
    loss = 0.0
    for t in range(xs.shape[0]):
        h = np.tanh(xs[t] @ Wx + h @ Wh + b)
        loss = loss + (h @ w_out - ys[t]) ** 2
    return loss


def two_states(Wx, Wh, b, w_out, xs, ys):
    # two carried tensors, h and c, advancing together
    h = np.zeros(Wh.shape[0])
    c = np.zeros(Wh.shape[0])
    loss = 0.0
    for t in range(xs.shape[0]):
        c = 0.9 * c + np.tanh(xs[t] @ Wx + h @ Wh + b)
        h = np.sin(c) * w_out
        loss = loss + (np.sum(h) - ys[t]) ** 2
    return loss


def stacked_rows(Wx, Wh, b, w_out, xs, ys):
    # per-step hidden states collected with np.stack, the loss taken on the stack
    h = np.zeros(Wh.shape[0])
    hs = []
    for t in range(xs.shape[0]):
        h = np.tanh(xs[t] @ Wx + h @ Wh + b)
        hs.append(h)
    return np.sum((np.stack(hs) @ w_out - ys) ** 2)


def stacked_outputs(Wx, Wh, b, w_out, xs, ys):
    # per-step scalar outputs collected with np.stack
    h = np.zeros(Wh.shape[0])
    outs = []
    for t in range(xs.shape[0]):
        h = np.tanh(xs[t] @ Wx + h @ Wh + b)
        outs.append(h @ w_out)
    return np.sum((np.stack(outs) - ys) ** 2)


PRIMES = {2, 3, 5, 7, 11, 13}


def differing_steps(Wx, Wh, b, w_out, xs, ys):
    # the step's activation changes at the primes: no period repeats, nothing may roll wrongly
    h = np.zeros(Wh.shape[0])
    loss = 0.0
    for t in range(xs.shape[0]):
        z = xs[t] @ Wx + h @ Wh + b
        h = np.sin(z) if t in PRIMES else np.tanh(z)
        loss = loss + (h @ w_out - ys[t]) ** 2
    return loss


def _args(T, seed=0):
    rng = np.random.default_rng(seed)
    return [
        rng.normal(size=(D, H)) * 0.5,
        rng.normal(size=(H, H)) * 0.3,
        rng.normal(size=H) * 0.1,
        rng.normal(size=H) * 0.5,
        rng.normal(size=(T, D)),
        np.sin(np.arange(T) / 2.0),
    ]


ARGNUMS = (0, 1, 2, 3, 4)  # the weights and the per-step input xs


def _central(fn, args, k, index, h=1e-6):
    up, down = [a.copy() for a in args], [a.copy() for a in args]
    up[k][index] += h
    down[k][index] -= h
    return (fn(*up) - fn(*down)) / (2 * h)


def _check(fn, T, rolls=True):
    """The numba build of ``fn``'s value and gradient against the unrolled numpy build, the
    function itself and central differences; returns the numba build."""
    args = _args(T)
    vg = sg.value_and_grad(fn, argnums=ARGNUMS)
    value, grads = vg(*args)
    want_value, want_grads = sg.value_and_grad(fn, argnums=ARGNUMS, backend="numpy")(*args)
    assert np.isclose(value, fn(*args), rtol=1e-12, atol=0)
    assert np.isclose(value, want_value, rtol=1e-13, atol=0)
    for g, w in zip(grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13)
    for k in ARGNUMS:
        index = np.unravel_index(np.argmax(np.abs(grads[k])), args[k].shape)
        assert np.isclose(grads[k][index], _central(fn, args, k, index), rtol=1e-6, atol=1e-8), k
    assert ("rolled into a loop" in vg.source) == rolls
    return vg


def _kernel_lines(source):
    head = "def kernel_into(" if "def kernel_into(" in source else "def kernel("  # the machine code
    return source.split(head, 1)[1].split("\n\n\n", 1)[0].count("\n")


def test_rnn_value_and_gradient_match_the_unrolled_graph_and_central_differences():
    vg = _check(rnn, 12)
    # one loop for the forward sweep, others for the reverse sweep and the running sums of the
    # weight gradients: no statement of a step is written T times
    assert "rolled into a loop" in vg.source
    assert len(re.findall(r"(?<!\w)xs\[", vg.source)) <= 3
    # d_xs is written row by row, as a copy loop and the steps outside the loops
    assert vg.source.count("d_xs[") <= 4


def _rnn_graph(T, stack=False):
    """The RNN written with the builder API (no tracing): the loss and its gradients. (Symbols of
    their own for each variant: nodes are interned, and statements an earlier graph made are
    older, which moves them in the creation order the rolling also tries.)"""
    tag = "_s" if stack else ""
    Wx, Wh, b, w, xs, ys = (
        sg.tensor("Wx" + tag, (D, H)),
        sg.tensor("Wh" + tag, (H, H)),
        sg.tensor("b" + tag, (H,)),
        sg.tensor("w" + tag, (H,)),
        sg.tensor("xs" + tag, (T, D)),
        sg.tensor("ys" + tag, (T,)),
    )
    h = sg.tanh(xs[0] @ Wx + b)
    hs, loss = [h], (h @ w - ys[0]) ** 2
    for t in range(1, T):
        h = sg.tanh(xs[t] @ Wx + h @ Wh + b)
        hs.append(h)
        loss = loss + (h @ w - ys[t]) ** 2
    if stack:
        loss = sg.sum((sg.stack(hs) @ w - ys) ** 2)
    inputs = [Wx, Wh, b, w, xs, ys]
    return [loss, *grad(loss, inputs[:5])], inputs


def _source(outputs, inputs):
    names = ["value"] + [f"d_{s.name}" for s in inputs[: len(outputs) - 1]]
    return NumbaEmitter().module(outputs, names, inputs, 1, "call", "rnn", "out")


@pytest.mark.parametrize(
    "stack", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["running sum", "sg.stack"]
)
def test_rnn_source_has_as_many_lines_at_T_10_as_at_T_1000(stack):
    # in a fresh process: how the steps split into loops may still depend on the order in which
    # the process made the graph's nodes (a node an earlier graph made keeps its place)
    code = (
        f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "import test_roll_tensor_loops as t\n"
        f"short, long = t._source(*t._rnn_graph(10, {stack})), t._source(*t._rnn_graph(1000, {stack}))\n"
        "print(short.count('rolled into a loop'), short.count('\\n'), long.count('\\n'), "
        "t._kernel_lines(short), t._kernel_lines(long))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    rolled, short, long, short_kernel, long_kernel = map(int, out.stdout.split())
    assert rolled > 0
    assert short == long
    assert short_kernel == long_kernel < 400


@pytest.mark.slow
def test_two_carried_tensors_roll_and_match():
    _check(two_states, 12)


@pytest.mark.slow
@pytest.mark.parametrize("fn", [stacked_rows, stacked_outputs], ids=["rows", "scalars"])
def test_per_step_outputs_collected_with_np_stack_roll_and_match(fn):
    vg = _check(fn, 12)
    # the stack is filled from the loop's stored rows, not one operand per step
    assert "np.concatenate" not in vg.source


@pytest.mark.slow
def test_a_loop_whose_steps_differ_gives_the_unrolled_numbers():
    vg = _check(differing_steps, 16, rolls=False)
    assert "rolled into a loop" not in vg.source


@pytest.mark.parametrize("stack", [False, True], ids=["running sum", "sg.stack"])
def test_the_rolled_kernel_binds_every_value_before_reading_it(stack):
    outputs, inputs = _rnn_graph(12, stack)
    forward, backward = schedule(outputs, 1)
    block = NumbaEmitter().kernel_ir(
        forward, backward, {id(o): f"out{k}" for k, o in enumerate(outputs)}, outputs
    )
    assert any(isinstance(s, ir.For) and s.stop >= 8 for s in block)
    ir.verify(block, tuple(ir.Given(s) for s in inputs))
