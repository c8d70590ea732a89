"""Long runs of repeated scalar statements (a recurrence written out) become loops in the numba kernel.

numba's compile time grows with the statements it sees, so the numba backend rolls a run that
repeats one body back into a ``for`` loop over stacked intermediates. These tests check what
the rolled kernel computes against the numpy backend (straight-line numpy, never rolled), and
check the compile-time claim by structure: the kernel's length does not grow with the depth.
"""

import importlib.util
import inspect
import re

import numba
import numpy as np
import pytest

import symgrad as sg


def _recurrence(depth, step=lambda x, c: sg.sin(x) * x + c, names="x0 c"):
    x0, c = sg.scalars(names)
    x = x0
    states = [x]
    for _ in range(depth):
        x = step(x, c)
        states.append(x)
    return x0, c, states


def _kernel_lines(source):
    """The lines of the generated ``kernel`` function."""
    body = source.split("def kernel(", 1)[1].split("\n\n\n", 1)[0]
    return body.split("\n")


def _close(a, b, rtol=1e-12):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.allclose(a, b, rtol=rtol, atol=1e-300)


@pytest.mark.parametrize("depth", [150, 1000])
def test_deep_recurrence_value_and_grad_match_the_numpy_backend(depth):
    # the benchmark's recurrence; at depth 1000 the x0 gradient underflows to 0 in both
    x0, c, states = _recurrence(depth)
    rolled = sg.value_and_grad(states[-1], wrt=[x0, c])
    straight = sg.value_and_grad(states[-1], wrt=[x0, c], backend="numpy")
    for args in [(0.3, 0.1), (1.1, -0.4), (-2.0, 0.05)]:
        value, grads = rolled(*args)
        want_value, want_grads = straight(*args)
        assert _close(value, want_value)
        assert all(_close(g, w) for g, w in zip(grads, want_grads))
    assert " in range(" in rolled.source


def test_rolled_gradient_agrees_with_a_hand_written_backward():
    # x_{k+1} = x_k + 0.01 c sin(x_k): gradients stay of order one over 400 steps
    depth = 400
    x0, c, states = _recurrence(depth, lambda x, c: x + 0.01 * c * sg.sin(x))
    vg = sg.value_and_grad(states[-1], wrt=[x0, c])
    x0v, cv = 0.7, 1.3
    xs = [x0v]
    for _ in range(depth):
        xs.append(xs[-1] + 0.01 * cv * np.sin(xs[-1]))
    dx, dc = 1.0, 0.0
    for xk in reversed(xs[:-1]):
        dc += dx * 0.01 * np.sin(xk)
        dx *= 1 + 0.01 * cv * np.cos(xk)
    value, (gx, gc) = vg(x0v, cv)
    assert abs(value - xs[-1]) <= 1e-12 * abs(xs[-1])
    assert abs(gx - dx) <= 1e-10 * abs(dx) and abs(gc - dc) <= 1e-10 * abs(dc)
    assert 1e-3 < abs(gx) < 10 and 1e-3 < abs(gc) < 100


def test_kernel_length_does_not_grow_with_the_depth():
    # what makes the build time independent of the depth: numba compiles the same few lines
    lengths = {}
    for depth in (200, 1000, 3000):
        # symbols of their own: no node shared with another depth's graph (or its gradient)
        x0, c, states = _recurrence(depth, names=f"x0_{depth} c_{depth}")
        vg = sg.value_and_grad(states[-1], wrt=[x0, c])
        lines = _kernel_lines(vg.source)
        lengths[depth] = len(lines)
        assert len(lines) < 80, vg.source
    assert len(set(lengths.values())) == 1, lengths


def test_source_is_the_compiled_text_and_kernel_is_callable_from_njit_code():
    x0, c, states = _recurrence(300)
    vg = sg.value_and_grad(states[-1], wrt=[x0, c])
    with open(vg.kernel.py_func.__code__.co_filename, encoding="utf-8") as fh:
        assert fh.read() == vg.source
    assert inspect.getsource(vg.kernel.py_func) in vg.source
    kernel = vg.kernel

    @numba.njit
    def user_code(a, b):
        total = 0.0
        for k in range(3):
            value, d_x0, d_c = kernel(a + 0.1 * k, b)
            total += value + d_c
        return total

    want = sum(vg(0.3 + 0.1 * k, 0.1)[0] + vg(0.3 + 0.1 * k, 0.1)[1][1] for k in range(3))
    assert _close(user_code(0.3, 0.1), want)


def test_values_from_inside_a_loop_are_read_back_after_it():
    # outputs at depths inside the run: the loop keeps every value the rest of the kernel reads
    x0, c, states = _recurrence(600)
    outputs = [states[100], states[333], states[599], states[600]]
    rolled = sg.compile(outputs, inputs=[x0, c])
    straight = sg.compile(outputs, inputs=[x0, c], backend="numpy")
    got, want = rolled(0.4, 0.2), straight(0.4, 0.2)
    assert all(_close(g, w) for g, w in zip(got, want))
    assert len(_kernel_lines(rolled.source)) < 80


def test_a_step_that_changes_every_iteration_is_not_rolled_into_a_wrong_loop():
    # each step adds a different constant, and a state two steps back: numbers must not change
    x0, c = sg.scalars("x0 c")
    a, b = x0, c
    for k in range(120):
        a, b = b, 0.5 * sg.sin(a) + 0.5 * b + 0.001 * k
    loss = a * b
    rolled = sg.value_and_grad(loss, wrt=[x0, c])
    straight = sg.value_and_grad(loss, wrt=[x0, c], backend="numpy")
    value, grads = rolled(0.9, -0.3)
    want_value, want_grads = straight(0.9, -0.3)
    assert _close(value, want_value)
    assert all(_close(g, w) for g, w in zip(grads, want_grads))


def test_two_states_advancing_together_roll_and_match():
    x0, c = sg.scalars("x0 c")
    a, b = x0, c
    for _ in range(300):
        a, b = b, 0.5 * sg.sin(a) + 0.5 * b
    rolled = sg.value_and_grad(a * b, wrt=[x0, c])
    straight = sg.value_and_grad(a * b, wrt=[x0, c], backend="numpy")
    value, grads = rolled(0.9, -0.3)
    want_value, want_grads = straight(0.9, -0.3)
    assert _close(value, want_value)
    assert all(_close(g, w) for g, w in zip(grads, want_grads))
    assert len(_kernel_lines(rolled.source)) < 100


def test_float32_recurrence_keeps_its_dtype_in_the_loop():
    x0, c = sg.scalars("x0 c", dtype="float32")
    x = x0
    for _ in range(300):
        x = sg.tanh(x) * 0.9 + c
    rolled = sg.value_and_grad(x, wrt=[x0, c])
    straight = sg.value_and_grad(x, wrt=[x0, c], backend="numpy")
    assert "dtype=np.float32" in rolled.source
    value, grads = rolled(np.float32(0.3), np.float32(0.1))
    want_value, want_grads = straight(np.float32(0.3), np.float32(0.1))
    assert np.asarray(value).dtype == np.float32
    assert _close(value, want_value, rtol=1e-6)
    assert all(_close(g, w, rtol=1e-5) for g, w in zip(grads, want_grads))


def test_short_graphs_stay_straight_line():
    x0, c, states = _recurrence(5)
    vg = sg.value_and_grad(states[-1], wrt=[x0, c])
    assert not re.search(r"\bfor \w+ in range\(", vg.source)


def test_saved_rolled_module_computes_the_same(tmp_path):
    x0, c, states = _recurrence(400)
    vg = sg.value_and_grad(states[-1], wrt=[x0, c])
    path = vg.save(tmp_path / "recur_grad.py")
    spec = importlib.util.spec_from_file_location("recur_grad_saved", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    value, grads = module.call(0.3, 0.1)
    want_value, want_grads = vg(0.3, 0.1)
    assert value == want_value and tuple(grads) == tuple(want_grads)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_recurrences_roll_to_the_same_numbers(seed):
    # one or two states updated by a random step rule that cycles with period three; one step
    # breaks the cycle, and some add a constant that changes with the iteration
    rng = np.random.default_rng(seed)
    x0, c = sg.scalars("x0 c")
    width = int(rng.integers(1, 3))
    states = [x0 * (k + 1) for k in range(width)]
    ops = [
        lambda a, b: a + b,
        lambda a, b: a * b,
        lambda a, b: a - 0.5 * b,
        lambda a, b: sg.sin(a) * b,
        lambda a, b: sg.tanh(a + b),
        lambda a, b: sg.cos(a) + c,
    ]
    plan = [
        [
            (int(rng.integers(len(ops))), int(rng.integers(width)), int(rng.integers(width)))
            for _ in range(width)
        ]
        for _ in range(3)
    ]
    varying = rng.random() < 0.5
    irregular = {int(rng.integers(0, 60))}
    for step in range(60):
        rule = plan[0 if step in irregular else step % 3]
        new = [sg.tanh(ops[o](states[a], states[b]) * 0.9 + c) for o, a, b in rule]
        if varying and step % 30 == 0:
            new[0] = new[0] + 0.001 * step
        states = new
    loss = sum(states[1:], states[0])
    rolled = sg.value_and_grad(loss, wrt=[x0, c])
    straight = sg.value_and_grad(loss, wrt=[x0, c], backend="numpy")
    assert " in range(" in rolled.source
    for args in [(0.3, 0.2), (-0.8, 0.6)]:
        value, grads = rolled(*args)
        want_value, want_grads = straight(*args)
        assert np.allclose(value, want_value, rtol=1e-12, atol=1e-14)
        assert all(np.allclose(g, w, rtol=1e-12, atol=1e-14) for g, w in zip(grads, want_grads))
