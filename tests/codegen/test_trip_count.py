"""A rolled Python loop over an input's rows compiles once for every length.

The trace of ``for t in range(xs.shape[0])`` is specialised to the length T it ran at, and the
numba backend rolls its T copies back into loops (``codegen/rolling.py``). Those loops count in
the input's length read when the kernel runs (``rolling.TripCount``), so the kernel's text is the
same at every T (above the lengths where the loops roll), and the kernel is a module of its own
named by that text (``runtime.load_module``): a build at another T finds numba's machine code,
in this process or in the disk cache. The entry of each build still checks the length it was
traced at. The numbers are checked against the numpy backend (the unrolled graph, never rolled)
and central differences.
"""

import re
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import symgrad as sg
from symgrad import bench_build
from symgrad.codegen import runtime
from symgrad.codegen.numba_backend import NumbaEmitter
from symgrad.errors import InputError


def rnn(Wx, Wh, b, w_out, xs, ys):
    return bench_build.rnn(np, Wx, Wh, b, w_out, xs, ys)


def euler(a, x0, obs):
    return bench_build.euler(np, a, x0, obs)


def _rnn_args(T):
    return bench_build.make_program(f"rnn/{T}").args


def _euler_args(T):
    return bench_build.make_program("euler", size=T).args


def _central(fn, args, k, index=(), h=1e-6):
    up, down = list(args), list(args)
    if np.ndim(args[k]):
        up[k], down[k] = args[k].copy(), args[k].copy()
        up[k][index] += h
        down[k][index] -= h
    else:
        up[k], down[k] = args[k] + h, args[k] - h
    return (fn(*up) - fn(*down)) / (2 * h)


def _kernel(source):
    """The text of the kernel functions (what numba compiles: kernel, and kernel_into when the
    kernel fills output arrays the entry allocates)."""
    return "def kernel(" + source.split("\ndef kernel(", 1)[1].split(runtime.KERNEL_END, 1)[0]


def _check(fn, args, argnums, value, grads):
    want_value, want_grads = sg.value_and_grad(fn, argnums, backend="numpy")(*args)
    assert math.isclose(value, fn(*args), rel_tol=1e-12)
    assert math.isclose(value, want_value, rel_tol=1e-12)
    for k, g, w in zip(argnums, grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-13)
        index = np.unravel_index(np.argmax(np.abs(g)), np.shape(g)) if np.ndim(g) else ()
        assert math.isclose(np.asarray(g)[index], _central(fn, args, k, index), rel_tol=1e-6, abs_tol=1e-8)


def _builds(fn, argnums, make_args, lengths):
    """Build ``fn``'s value and gradient at each length in one process; check each against the
    unrolled graph and central differences; return (the kernel texts, the compile records)."""
    vg = sg.value_and_grad(fn, argnums)
    kernels, records = [], []
    for T in lengths:
        args = make_args(T)
        value, grads = vg(*args)
        _check(fn, args, argnums, value, grads)
        compiled = vg.compiled_for(*args)
        assert "rolled into a loop" in compiled.source
        kernels.append(_kernel(compiled.source))
        records.append(compiled.compiles[-1])
    return vg, kernels, records


def test_a_rolled_rnn_compiles_once_for_every_length():
    vg, kernels, records = _builds(rnn, (0, 1, 2, 3), _rnn_args, (10, 50, 8))
    # one kernel text at every T: its loops count in the length of xs read when it runs
    assert kernels[0] == kernels[1] == kernels[2]
    assert "dim_xs_0 = xs.shape[0]" in kernels[0]
    assert records[0]["cache"] in (
        "compiled, saved to cache",
        "machine code loaded from cache",
    )  # a warm cache
    for record in records[1:]:
        assert record["cache"] == "already compiled in this process"
        assert "numba compile" not in record["phases"] or record["phases"]["numba compile"] < 0.5
    # each build's entry still checks the length it was traced at
    ten, fifty = vg.compiled_for(*_rnn_args(10)), vg.compiled_for(*_rnn_args(50))
    assert ten.source != fifty.source
    with pytest.raises(InputError, match=r"argument 'xs': dimension 0 must be 10, got 11"):
        ten(*_rnn_args(11))
    with pytest.raises(InputError, match=r"argument 'ys': dimension 0 must be 50, got 10"):
        fifty(*_rnn_args(50)[:5], _rnn_args(10)[5])


@pytest.mark.slow
def test_a_rolled_euler_integrator_compiles_once_for_every_length():
    # the scalar loop rolls from 64 statements: 7 a step, so from T = 12
    _, kernels, records = _builds(euler, (0, 1), _euler_args, (20, 12, 50))
    assert kernels[0] == kernels[1] == kernels[2]
    assert "obs[dim_obs_0 - 1]" in kernels[0]  # the last step's observation, outside the loop
    assert [r["cache"] for r in records[1:]] == ["already compiled in this process"] * 2


def rnn_stack(Wx, Wh, b, w_out, xs, ys):
    """The RNN's per-step outputs collected with ``np.stack``, then their squared error."""
    h, outs = np.zeros(Wh.shape[0]), []
    for t in range(xs.shape[0]):
        h = np.tanh(xs[t] @ Wx + h @ Wh + b)
        outs.append(h @ w_out)
    return np.sum((np.stack(outs) - ys) ** 2)


def rnn_states(Wx, Wh, b, w_out, xs, ys):
    """The RNN's hidden states stacked as rows (a (T, 8) array), then a weighted squared error."""
    h, hs = np.zeros(Wh.shape[0]), []
    for t in range(xs.shape[0]):
        h = np.tanh(xs[t] @ Wx + h @ Wh + b)
        hs.append(h)
    return np.sum((np.stack(hs) @ w_out - ys) ** 2)


def euler_stack(a, x0, obs):
    """The Euler integrator's states collected with ``np.stack``, then their squared error."""
    x, xs = x0, []
    for i in range(obs.shape[0]):
        x = x + 0.01 * a * np.sin(x)
        xs.append(x)
    return np.sum((np.stack(xs) - obs) ** 2)


def test_a_gradient_with_respect_to_the_per_step_inputs_compiles_once_for_every_length():
    # d_xs is one array of the trip count's rows, each step's row written into it once
    vg, kernels, records = _builds(rnn, (0, 1, 2, 3, 4), _rnn_args, (10, 50))
    assert kernels[0] == kernels[1]
    assert "d_xs = _rt.empty((dim_xs_0, dim_Wx_0)" in kernels[0]
    assert "_rt.zeros((dim_xs_0" not in kernels[0]  # no zeros of all the rows per step
    # the rolled loop writes its rows (the last step's too) into d_xs itself: no array of them copied
    assert re.search(r"\n +d_xs\[\d+ \+ k\w*, \w+\] = ", kernels[0])
    assert not re.search(r"d_xs\[.*\] = \w+_all\[", kernels[0])
    assert records[1]["cache"] == "already compiled in this process"
    assert "numba compile" not in records[1]["phases"] or records[1]["phases"]["numba compile"] < 0.5
    # each build's entry still checks the length it was traced at
    with pytest.raises(InputError, match=r"argument 'xs': dimension 0 must be 10, got 11"):
        vg.compiled_for(*_rnn_args(10))(*_rnn_args(11))
    with pytest.raises(InputError, match=r"argument 'ys': dimension 0 must be 50, got 10"):
        vg.compiled_for(*_rnn_args(50))(*_rnn_args(50)[:5], _rnn_args(10)[5])


@pytest.mark.parametrize(
    "fn, argnums, make_args, lengths",
    [
        (rnn_stack, (0, 1, 2, 3), _rnn_args, (10, 40)),
        pytest.param(rnn_states, (0, 1, 2, 3, 4), _rnn_args, (12, 30), marks=pytest.mark.slow),
    ],
    ids=["outputs", "states"],
)
def test_a_stack_of_per_step_values_compiles_once_for_every_length(fn, argnums, make_args, lengths):
    # in a fresh process: the first build there is the first to make its nodes (how the steps
    # split into loops depends on the graph alone, tests/codegen/test_loop_order.py)
    code = (
        f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "import test_trip_count as t\n"
        f"t.stack_builds_agree(t.{fn.__name__}, {argnums!r}, t.{make_args.__name__}, {lengths!r})\n"
        "print('agree')\n"
    )
    assert _run(code, os.environ["SYMGRAD_CACHE_DIR"]).endswith("agree")


def stack_builds_agree(fn, argnums, make_args, lengths):
    """``fn``'s builds at ``lengths`` (checked against the unrolled graph and central
    differences) print one kernel, and the second finds the first's machine code."""
    _, kernels, records = _builds(fn, argnums, make_args, lengths)
    assert kernels[0] == kernels[1]
    assert "concatenate = _rt.empty((dim_xs_0," in kernels[0]  # the stack's rows
    assert records[1]["cache"] == "already compiled in this process"


def test_a_stack_of_scalar_states_counts_in_the_trip_count():
    # the scalar recurrence's stack and its adjoint's loop count in the length of obs: one
    # kernel text for every length
    _, kernels, _ = _builds(euler_stack, (0, 1), _euler_args, (16, 20))
    assert kernels[0] == kernels[1]
    for kernel in kernels:
        assert "concatenate = _rt.empty((dim_obs_0,)" in kernel
        # allocated before the rolled loop, which stores each step's value (the last's too) in it
        assert kernel.index("concatenate = _rt.empty(") < kernel.index("for k in range(dim_obs_0 - 1):")
        assert "concatenate[1 + k] = " in kernel and "concatenate[(dim_obs_0 - 1)]" not in kernel


@pytest.mark.slow
def test_the_shortest_loops_that_roll_and_the_longest_that_do_not():
    # the RNN's gradient with d_xs rolls from T = 5 (a loop needs 4 steps); at 4 it stays
    # unrolled; either way the numbers are the unrolled graph's, and a wrong length is refused
    vg = sg.value_and_grad(rnn, (0, 1, 2, 3, 4))
    for T, rolled in ((4, False), (5, True)):
        args = _rnn_args(T)
        value, grads = vg(*args)
        _check(rnn, args, (0, 1, 2, 3, 4), value, grads)
        assert ("rolled into a loop" in vg.compiled_for(*args).source) is rolled
        with pytest.raises(InputError, match=rf"argument 'xs': dimension 0 must be {T}, got {T + 1}"):
            vg.compiled_for(*args)(*_rnn_args(T + 1))
    # the stacked outputs' loss rolls from T = 4
    vg = sg.value_and_grad(rnn_stack, (0, 1, 2, 3))
    for T, rolled in ((3, False), (4, True)):
        args = _rnn_args(T)
        value, grads = vg(*args)
        _check(rnn_stack, args, (0, 1, 2, 3), value, grads)
        assert ("rolled into a loop" in vg.compiled_for(*args).source) is rolled


def _run(code, cache):
    env = dict(os.environ, SYMGRAD_CACHE_DIR=cache, SYMGRAD_COMPILE="sync", PYTHONPATH=os.getcwd())
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.slow
def test_a_second_process_loads_the_machine_code_compiled_at_another_length(tmp_path):
    code = (
        "import numpy as np, symgrad as sg\n"
        "from symgrad import bench_build as bb\n"
        "def euler(a, x0, obs):\n"
        "    return bb.euler(np, a, x0, obs)\n"
        "vg = sg.value_and_grad(euler, (0, 1))\n"
        "args = bb.make_program('euler', size={T}).args\n"
        "value, grads = vg(*args)\n"
        "print(vg.compiles[-1]['cache'], repr(value))\n"
    )
    first = _run(code.format(T=30), str(tmp_path))
    second = _run(code.format(T=40), str(tmp_path))
    assert first.startswith("compiled, saved to cache")
    assert second.startswith("machine code loaded from cache")
    value = float(second.split()[-1])
    assert math.isclose(value, euler(*_euler_args(40)), rel_tol=1e-12)


def _recurrence_source(steps):
    """The source of a scalar recurrence of ``steps`` steps that reads no input per step."""
    a, x0 = sg.scalar("a"), sg.scalar("x0")
    x, loss = x0, 0.0
    for _ in range(steps):
        x = x + 0.01 * a * sg.sin(x)
        loss = loss + x**2
    outputs = [loss, *sg.autodiff.grad(loss, [a, x0])]
    return NumbaEmitter().module(outputs, ["value", "d_a", "d_x0"], [a, x0], 1, "call", "f", "out")


def test_a_loop_whose_count_is_no_input_size_keeps_its_count():
    source = _recurrence_source(40)
    assert "rolled into a loop" in source
    # counts in numbers (how the steps split into loops depends on the schedule, not asserted here)
    assert re.search(r"for k\w* in range\(\d+\):", source)
    assert ".shape[" not in _kernel(source)


def test_modules_differing_after_the_kernel_share_its_module():
    # two modules whose kernels are one text: the second runs on the first's kernel module
    head = (
        "import numpy as np\nimport numba\n\n\n"
        "@numba.njit(cache=True)\ndef kernel(x):\n    return x.sum() + len(x)\n\n\n"
        + runtime.KERNEL_END
        + "kernel_entry = kernel\n\n\n"
    )
    one = head + "def call(x):\n    assert len(x) == 1\n    return kernel_entry(x)\n"
    two = head + "def call(x):\n    assert len(x) == 2\n    return kernel_entry(x)\n"
    assert runtime.kernel_module_name(one) == runtime.kernel_module_name(two)
    assert runtime.module_name(one, "numba") != runtime.module_name(two, "numba")
    first, _ = runtime.load_module(one, "numba")
    second, _ = runtime.load_module(two, "numba")
    assert first is not second and first.kernel is second.kernel
    assert runtime.kernel_module(first).__name__ == runtime.kernel_module_name(one)
    assert second.call(np.array([1.0, 2.0])) == 5.0
    with pytest.raises(AssertionError):
        second.call(np.array([1.0]))
    # a module without the mark is one module, as before
    assert runtime.kernel_module_name("def call(x):\n    return x\n") is None
