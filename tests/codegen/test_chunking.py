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
    """The lines of the generated kernel's machine code (``kernel_into`` when it fills arrays given)."""
    head = "def kernel_into(" if "def kernel_into(" in source else "def kernel("
    body = source.split(head, 1)[1].split("\n\n\n", 1)[0]
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
        # (forward mode: the rolled loop and a few steps before and after it, where the
        # tangents' work runs one step behind the value's)
        assert len(lines) < 100, vg.source
    assert len(set(lengths.values())) == 1, lengths


def test_source_is_the_compiled_text_and_kernel_is_callable_from_njit_code():
    x0, c, states = _recurrence(300)
    vg = sg.value_and_grad(states[-1], wrt=[x0, c])
    with open(vg.kernel.py_func.__code__.co_filename, encoding="utf-8") as fh:
        kernel_text = fh.read()  # the kernel's module of its own: the source up to its end
    assert vg.source.startswith(kernel_text) and "def kernel(" in kernel_text
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
    kernel = rolled.source[rolled.source.index("def kernel(") : rolled.source.index("kernel_entry = ")]
    assert "for k in range" in kernel and "float64" not in kernel and "np.float32(" in kernel
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


# ---------------------------------------------------------------- per-step reads of an input array


def _euler_with_observations(steps, names, obs_shape=None, index=lambda i: i):
    """x <- x + 0.01 a sin(x); L <- L + (x - obs[i])^2: the Euler integrator fitted to data."""
    a, x0 = sg.scalars(names)
    obs = sg.tensor(f"obs_{names.split()[0]}", obs_shape or (steps,))
    x, loss = x0, 0.0
    for i in range(steps):
        x = x + 0.01 * a * sg.sin(x)
        loss = loss + (x - obs[index(i)]) ** 2
    return loss, a, x0, obs


def _euler_reference(a, x0, obs, steps, index=lambda i: i):
    x, loss = x0, 0.0
    for i in range(steps):
        x = x + 0.01 * a * np.sin(x)
        loss += (x - obs[index(i)]) ** 2
    return loss


def test_per_step_reads_of_an_input_array_roll_and_match_numpy_and_central_differences():
    steps = 200
    loss, a, x0, obs = _euler_with_observations(steps, "a_obs x0_obs")
    rolled = sg.value_and_grad(loss, wrt=[a, x0], inputs=[a, x0, obs])
    straight = sg.value_and_grad(loss, wrt=[a, x0], inputs=[a, x0, obs], backend="numpy")
    # the rows are read in a rolled loop, forward or (the reverse pass's loop) from the end
    assert re.search(r"obs_a_obs\[(1 \+ k\w*|dim_obs_a_obs_0 - 1 - k\w*)\]", rolled.source), rolled.source
    data = np.sin(np.linspace(0.0, 3.0, steps)) + 0.7
    for av, xv in [(1.3, 0.7), (-0.4, 2.1)]:
        value, grads = rolled(av, xv, data)
        want_value, want_grads = straight(av, xv, data)
        assert _close(value, want_value)
        assert all(_close(g, w) for g, w in zip(grads, want_grads))
        assert abs(value - _euler_reference(av, xv, data, steps)) <= 1e-12 * abs(value)
        h = 1e-6
        for g, bump in zip(grads, [(h, 0.0), (0.0, h)]):
            up = _euler_reference(av + bump[0], xv + bump[1], data, steps)
            down = _euler_reference(av - bump[0], xv - bump[1], data, steps)
            assert abs(g - (up - down) / (2 * h)) <= 1e-6 * max(1.0, abs(g))


def test_euler_with_observations_has_the_same_kernel_length_at_every_depth():
    lengths = {}
    for steps in (200, 400):
        loss, a, x0, obs = _euler_with_observations(steps, f"a_{steps} x0_{steps}")
        vg = sg.value_and_grad(loss, wrt=[a, x0], inputs=[a, x0, obs])
        lengths[steps] = len(_kernel_lines(vg.source))
        assert lengths[steps] < 120, vg.source
    assert abs(lengths[200] - lengths[400]) <= 3, lengths


def test_per_step_reads_along_a_named_dim_check_its_length_once():
    # obs has n >= 200 elements: one check of the largest index, not one per step
    steps = 200
    a, x0 = sg.scalars("a_n x0_n")
    obs = sg.tensor("obs_n", ("n",))
    x, loss = x0, 0.0
    for i in range(steps):
        x = x + 0.01 * a * sg.sin(x)
        loss = loss + (x - obs[i]) ** 2
    vg = sg.value_and_grad(loss, wrt=[a, x0], inputs=[a, x0, obs])
    assert len(vg.source.splitlines()) < 200
    data = np.linspace(0.0, 1.0, steps + 5)
    assert _close(vg(1.3, 0.7, data)[0], _euler_reference(1.3, 0.7, data, steps))
    with pytest.raises(
        sg.errors.InputError, match=r"dimension n is 199 .*obs_n\[199\] needs it to be at least 200"
    ):
        vg(1.3, 0.7, np.ones(steps - 1))


@pytest.mark.parametrize(
    "index, shape",
    [
        (lambda i: (7 * i) % 200, (200,)),  # advances by 7, wraps around: no single step
        (lambda i: i * i % 200, (200,)),  # a step that grows
        (lambda i: -1 - i, (200,)),  # negative indices: obs[199 - i]
        (lambda i: (i, i % 2), (200, 2)),  # two axes, one of which alternates
        (lambda i: (199 - i, 1), (200, 2)),  # two axes, one advancing backwards
    ],
)
def test_an_index_without_a_fixed_step_is_not_rolled_into_a_wrong_loop(index, shape):
    steps = 200
    loss, a, x0, obs = _euler_with_observations(steps, "a_ix x0_ix", obs_shape=shape, index=index)
    vg = sg.value_and_grad(loss, wrt=[a, x0], inputs=[a, x0, obs])
    data = np.cos(np.linspace(0.0, 5.0, int(np.prod(shape)))).reshape(shape)
    value, grads = vg(0.9, 0.4, data)
    assert abs(value - _euler_reference(0.9, 0.4, data, steps, index)) <= 1e-12 * abs(value)
    want_value, want_grads = sg.value_and_grad(loss, wrt=[a, x0], inputs=[a, x0, obs], backend="numpy")(
        0.9, 0.4, data
    )
    assert all(_close(g, w) for g, w in zip(grads, want_grads))


# ---------------------------------------------------------------- per-step outputs (a stack of the states)


def _states(steps, names):
    a, x0 = sg.scalars(names)
    x, xs = x0, [x0]
    for _ in range(steps):
        x = x + 0.01 * a * sg.sin(x)
        xs.append(x)
    return a, x0, xs


def _states_reference(a, x0, steps):
    xs = [x0]
    for _ in range(steps):
        xs.append(xs[-1] + 0.01 * a * np.sin(xs[-1]))
    return np.array(xs)


@pytest.mark.parametrize(
    "pick",
    [
        lambda xs: xs,  # every state in order
        lambda xs: xs[::-1],  # backwards
        lambda xs: xs[::2] + xs[5:60] + [xs[3], xs[3], xs[-1]],  # strided, then a run, then repeats
    ],
)
def test_a_stack_of_per_step_values_is_copied_by_a_loop_and_matches(pick):
    steps = 200
    a, x0, xs = _states(steps, "a_st x0_st")
    picked = pick(xs)
    f = sg.compile([sg.stack(picked)], inputs=[a, x0])
    (got,) = f(1.3, 0.7)
    want = pick(list(_states_reference(1.3, 0.7, steps)))
    assert np.allclose(got, want, rtol=1e-13, atol=0)
    (straight,) = sg.compile([sg.stack(picked)], inputs=[a, x0], backend="numpy")(1.3, 0.7)
    assert np.array_equal(got, straight)


def test_a_stack_of_the_states_has_the_same_kernel_length_at_every_depth():
    lengths = {}
    for steps in (100, 400):
        a, x0, xs = _states(steps, f"a_s{steps} x0_s{steps}")
        f = sg.compile([sg.stack(xs), xs[-1] * 2.0], inputs=[a, x0])
        lengths[steps] = len(_kernel_lines(f.source))
        out, last = f(0.4, -1.2)
        assert np.allclose(out, _states_reference(0.4, -1.2, steps), rtol=1e-13, atol=0)
        assert last == 2.0 * out[-1]
    assert lengths[100] == lengths[400] and lengths[100] < 40, lengths


# ---------------------------------------------------------------- per-step constants


def _traced_euler(steps, data):
    def loss(a, x0):
        x, total = x0, 0.0
        for i in range(steps):
            x = x + 0.01 * a * np.sin(x)
            total = total + (x - data[i]) ** 2  # data[i]: a different constant in every step
        return total

    return loss


def test_per_step_constants_of_a_traced_loop_roll_and_match():
    lengths = {}
    for steps in (200, 400):
        data = np.cos(np.linspace(0.0, 2.0, steps))
        loss = _traced_euler(steps, data)
        vg = sg.value_and_grad(loss, (0, 1))
        value, grads = vg(1.3, 0.7)
        assert abs(value - _euler_reference(1.3, 0.7, data, steps)) <= 1e-12 * value
        h = 1e-6
        for g, bump in zip(grads, [(h, 0.0), (0.0, h)]):
            up = _euler_reference(1.3 + bump[0], 0.7 + bump[1], data, steps)
            down = _euler_reference(1.3 - bump[0], 0.7 - bump[1], data, steps)
            assert abs(g - (up - down) / (2 * h)) <= 1e-6 * max(1.0, abs(g))
        lengths[steps] = len(vg.source.splitlines())
    assert abs(lengths[200] - lengths[400]) <= 3 and lengths[200] < 200, lengths


def test_per_step_constants_in_either_operand_order_keep_their_places():
    # x <- c_k + x*w (then x*w + c_k): the constants are read in the order the steps had them
    x0, w = sg.scalars("x0_c w_c")
    x = x0
    rng = np.random.default_rng(3)
    constants = rng.normal(size=150)
    for k, c in enumerate(constants):
        x = sg.tanh(float(c) + x * w) if k % 2 else sg.tanh(x * w + float(c))
    vg = sg.value_and_grad(x, wrt=[x0, w])
    want = sg.value_and_grad(x, wrt=[x0, w], backend="numpy")
    value, grads = vg(0.2, 0.9)
    want_value, want_grads = want(0.2, 0.9)
    assert _close(value, want_value) and all(_close(g, v) for g, v in zip(grads, want_grads))
    ref = 0.2
    for c in constants:
        ref = np.tanh(ref * 0.9 + c)
    assert abs(value - ref) <= 1e-13
    assert " in range(" in vg.source
