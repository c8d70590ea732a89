"""A compiled kernel writes the output arrays its fused loops fill into arrays the entry allocates
and passes (``kernel_into``), instead of returning them: numba boxes every array a kernel returns
through a Python call. ``.kernel`` still takes the inputs alone and returns every output.

Each case checks values and gradients against numpy by hand and central differences, and the
generated source for where the arrays are allocated (no timing)."""

import numba
import numpy as np
import pytest

import symgrad as sg
from symgrad import settings
from symgrad.autodiff import grad
from symgrad.codegen import ir
from symgrad.codegen.emit import OutputPlan, write_into
from symgrad.codegen.numba_backend import NumbaEmitter
from symgrad.codegen.numpy_backend import NumpyEmitter
from symgrad.codegen.schedule import schedule


def _central(f, x, h=1e-6):
    g = np.empty_like(x)
    for k in range(x.size):
        up, down = x.copy(), x.copy()
        up.flat[k] += h
        down.flat[k] -= h
        g.flat[k] = (f(up) - f(down)) / (2 * h)
    return g


def _rosen():
    x = sg.tensor("x", ("n",))
    return x, sg.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def _rosen_np(x):
    return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def _rosen_grad(x):
    a = x[1:] - x[:-1] ** 2
    g = np.zeros_like(x)
    g[1:] += 200 * a
    g[:-1] += -400 * a * x[:-1] - 2 * (1 - x[:-1])
    return g


def _section(source, start, end):
    return source[source.index(start) : source.index(end, source.index(start))]


def test_a_loop_filled_gradient_is_allocated_by_the_entry_and_passed_to_the_machine_code():
    x, loss = _rosen()
    vg = sg.value_and_grad(loss, wrt=[x], backend="numba")
    data = np.random.default_rng(0).uniform(-1, 1, 9)
    value, (g,) = vg(data)
    assert value == pytest.approx(_rosen_np(data), rel=1e-14)
    np.testing.assert_allclose(g, _rosen_grad(data), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(g, _central(_rosen_np, data), rtol=1e-6, atol=1e-6)
    src = vg.source
    machine = _section(src, "def kernel_into(x, d_x):", "kernel_entry = kernel_into")
    assert "d_x = " not in machine and "d_x[" in machine  # written, never allocated, there
    assert "    return value\n" in machine  # the array is not returned, the value not in a tuple
    entry = src[src.index("def call(") :]
    # numpy's empty as a global, the length for the shape, float64 its default dtype (no type to convert)
    assert "d_x = _empty(dim_n)" in entry
    assert "kernel_entry(x, d_x)" in entry


def test_each_call_returns_fresh_arrays_and_a_summed_gradient_starts_from_zero_each_call():
    # d_b is a sum over rows into a zero-filled array: a second call must not add to the first's
    W, b, X = sg.tensor("W", ("d", "h")), sg.tensor("b", ("h",)), sg.tensor("X", ("n", "d"))
    loss = sg.sum(sg.tanh(X @ W + b) ** 2)
    vg = sg.value_and_grad(loss, wrt=[W, b], inputs=[W, b, X], backend="numba")
    rng = np.random.default_rng(1)
    args = rng.normal(size=(3, 4)) * 0.5, rng.normal(size=4) * 0.5, rng.normal(size=(5, 3))

    def f(W, b, X):
        return np.sum(np.tanh(X @ W + b) ** 2)

    t = np.tanh(args[2] @ args[0] + args[1])
    dz = 2 * t * (1 - t * t)
    first = vg(*args)
    second = vg(*args)
    for value, (dW, db) in (first, second):
        assert value == pytest.approx(f(*args), rel=1e-13)
        np.testing.assert_allclose(dW, args[2].T @ dz, rtol=1e-12)
        np.testing.assert_allclose(db, dz.sum(axis=0), rtol=1e-12)
        np.testing.assert_allclose(db, _central(lambda b: f(args[0], b, args[2]), args[1]), rtol=1e-6)
    assert first[1][1] is not second[1][1]
    first[1][1][:] = 0.0  # the caller owns the array: the next call does not see it
    np.testing.assert_allclose(vg(*args)[1][1], dz.sum(axis=0), rtol=1e-12)
    entry = vg.source[vg.source.index("def call(") :]
    assert "d_b = _zeros(dim_h)" in entry


def test_the_kernel_still_takes_the_inputs_and_returns_every_output_from_numba_code():
    x, loss = _rosen()
    vg = sg.value_and_grad(loss, wrt=[x], backend="numba")
    kernel = vg.kernel
    assert kernel.signatures  # compiled for the built types when asked for

    @numba.njit
    def descend(x, steps, rate):
        for _ in range(steps):
            out = kernel(x)
            x = x - rate * out[1]
        return x

    data = np.array([0.5, 0.2, -0.3])
    want = data.copy()
    for _ in range(3):
        want = want - 1e-3 * _rosen_grad(want)
    np.testing.assert_allclose(descend(data, 3, 1e-3), want, rtol=1e-13)
    value, g = vg.kernel_checked(data)
    assert value == pytest.approx(_rosen_np(data), rel=1e-14)
    np.testing.assert_allclose(g, _rosen_grad(data), rtol=1e-13)


def test_an_output_given_twice_is_two_arrays_and_a_saved_module_returns_its_arrays():
    x = sg.tensor("x", ("n",))
    y = sg.exp(x) * x
    f = sg.compile([y, y], backend="numba")
    data = np.linspace(-1, 1, 5)
    a, b = f(data)
    np.testing.assert_allclose(a, np.exp(data) * data, rtol=1e-15)
    np.testing.assert_allclose(b, np.exp(data) * data, rtol=1e-15)
    assert a is not b and not np.shares_memory(a, b)


def test_the_first_tier_fills_the_passed_arrays_until_numba_is_ready(monkeypatch, gate):
    monkeypatch.setattr(settings, "_explicit", {})
    monkeypatch.delenv("SYMGRAD_COMPILE", raising=False)
    try:
        with sg.config(compile="background", verbose=0):
            x, loss = _rosen()
            vg = sg.value_and_grad(loss * 1.5, wrt=[x], backend="numba")
        data = np.random.default_rng(2).uniform(-1, 1, 7)
        assert vg.tier == "numpy"
        value, (g,) = vg(data)
        assert value == pytest.approx(1.5 * _rosen_np(data), rel=1e-14)
        np.testing.assert_allclose(g, 1.5 * _rosen_grad(data), rtol=1e-13)
    finally:
        gate.set()
    vg.wait()
    assert vg.tier == "numba"
    value, (g,) = vg(data)
    np.testing.assert_allclose(g, 1.5 * _rosen_grad(data), rtol=1e-13)


def test_a_small_fixed_size_product_gradient_is_copied_into_a_passed_array_not_returned():
    # xor's network: the weight gradients are small products (an instruction, not a loop): the
    # kernel copies them into arrays the entry passes, and returns the loss alone
    W1, b1 = sg.tensor("W1", (2, 2)), sg.tensor("b1", (2,))
    W2, X = sg.tensor("W2", (2, 1)), sg.tensor("X", (4, 2))
    loss = 0.5 * sg.sum(sg.sigmoid(sg.sigmoid(X @ W1 + b1) @ W2) ** 2)
    vg = sg.value_and_grad(loss, wrt=[W1, b1, W2], inputs=[W1, b1, W2, X], backend="numba")
    rng = np.random.default_rng(3)
    args = rng.normal(size=(2, 2)), rng.normal(size=2), rng.normal(size=(2, 1)), rng.normal(size=(4, 2))

    def sig(z):
        return 1 / (1 + np.exp(-z))

    def f(W1, b1, W2, X):
        return 0.5 * np.sum(sig(sig(X @ W1 + b1) @ W2) ** 2)

    h = sig(args[3] @ args[0] + args[1])
    o = sig(h @ args[2])
    do = o * o * (1 - o)
    dh = do @ args[2].T * h * (1 - h)
    value, (dW1, db1, dW2) = vg(*args)
    assert value == pytest.approx(f(*args), rel=1e-13)
    np.testing.assert_allclose(dW1, args[3].T @ dh, rtol=1e-12)
    np.testing.assert_allclose(db1, dh.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(dW2, h.T @ do, rtol=1e-12)
    np.testing.assert_allclose(dW1, _central(lambda W: f(W, *args[1:]), args[0]), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dW2, _central(lambda W: f(args[0], args[1], W, args[3]), args[2]), rtol=1e-6)
    assert dW1.flags.c_contiguous and dW1.flags.owndata and dW2.shape == (2, 1)
    machine = _section(vg.source, "def kernel_into(", "kernel_entry = kernel_into")
    assert "    return value\n" in machine  # no array leaves the machine code by its return
    # the two products are written into the passed arrays by the product itself: no copy
    assert machine.count("_rt.small_matmul_into(") == 2 and "_rt.put(" not in machine
    again = vg(*args)[1]
    assert again[0] is not dW1 and again[2] is not dW2  # fresh arrays each call
    np.testing.assert_array_equal(again[0], dW1)
    np.testing.assert_array_equal(again[2], dW2)


def test_a_passed_array_of_another_dtype_and_rank_has_that_dtype_and_shape_each_call():
    # the entry allocates with numpy's empty given the dtype (float64 is its default, so a
    # float32 array must name its own) and the whole shape of a 2-d output
    x = sg.tensor("x", ("n", 3), dtype="float32")
    vg = sg.value_and_grad(sg.sum(sg.sin(x) * x), wrt=[x], backend="numba")
    entry = vg.source[vg.source.index("def call(") :]
    assert "d_x = _empty((dim_n, 3), _float32)" in entry
    data = np.random.default_rng(4).uniform(-2, 2, (5, 3)).astype(np.float32)
    for _ in range(2):
        value, (g,) = vg(data)
        assert g.dtype == np.float32 and g.shape == (5, 3) and g.flags.c_contiguous
        wide = data.astype(np.float64)
        assert value == pytest.approx(np.sum(np.sin(wide) * wide), rel=1e-5)
        np.testing.assert_allclose(g, np.sin(wide) + wide * np.cos(wide), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(g, _central(lambda v: np.sum(np.sin(v) * v), wide), rtol=1e-5, atol=1e-5)


def test_small_matmul_into_writes_each_form_of_product_into_the_array_given():
    from symgrad.codegen import numba_runtime as rt

    @numba.njit
    def into(out, a, b):
        return rt.small_matmul_into(out, a, b)

    rng = np.random.default_rng(5)
    for dtype in (np.float64, np.float32):
        m, v, w = (rng.normal(size=s).astype(dtype) for s in ((3, 4), (4,), (3,)))
        for a, b in ((m, m.T.copy()), (m, v), (w, m), (m.T.copy(), w)):
            out = np.full((a @ b).shape, np.nan, dtype)
            got = into(out, a, b)
            assert got is out or np.shares_memory(got, out)
            assert out.dtype == dtype
            np.testing.assert_allclose(
                out, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-6 if dtype == np.float32 else 1e-14
            )
        # in plain Python, numpy's product
        out = np.empty((3, 3), dtype)
        rt.small_matmul_into(out, m, m.T)
        np.testing.assert_allclose(out, m @ m.T, rtol=1e-6)


def _xor_net():
    W1, b1 = sg.tensor("W1", (2, 2)), sg.tensor("b1", (2,))
    W2, X = sg.tensor("W2", (2, 1)), sg.tensor("X", (4, 2))
    return [W1, b1, W2, X], 0.5 * sg.sum(sg.sigmoid(sg.sigmoid(X @ W1 + b1) @ W2) ** 2)


def _into(block):
    return [s for s in ir.walk(block) if isinstance(s, ir.Instr) and s.into is not None]


def test_a_small_product_output_s_instruction_carries_the_passed_array_it_writes_into():
    # decided on the kernel's IR before it is printed: the product's Instr names its destination
    (W1, b1, W2, X), loss = _xor_net()
    outputs = [loss] + grad(loss, [W1, b1, W2])
    names, inputs = ["value", "d_W1", "d_b1", "d_W2"], [W1, b1, W2, X]
    em = NumbaEmitter()
    source = em.module(outputs, names, inputs, 1, "call", "xor", "out")
    passed = {k: alloc.target for k, alloc in em.passed}
    products = [em.value[id(outputs[k])] for k in (1, 3)]
    for k, instr in zip((1, 3), products):
        assert isinstance(instr, ir.Instr) and instr.node.op == "matmul"
        assert any(s is instr for s in em.kernel_ir_full)  # at the kernel's top level
        assert instr.into is passed[k]
    assert _into(em.kernel_ir_full) == products  # nothing else writes into an array
    assert ir.dump(em.kernel_ir_full).count(" into ") == 2
    # the printer spells the destination; the passed arrays are neither allocated nor copied
    machine = _section(source, "def kernel_into(", "kernel_entry = kernel_into")
    for instr in products:
        target = em.name_of(instr.into)
        assert f"{em.name_of(instr)} = _rt.small_matmul_into({target}, " in machine
        assert f"{target} = " not in machine
    assert "_rt.put(" not in machine and ".copy()" not in machine
    # the numpy backend's kernel returns every output: no destination
    ref = NumpyEmitter()
    ref.module(outputs, names, inputs, 1, "call", "xor", "out")
    assert ref.passed == [] and _into(ref.kernel_ir_full) == []
    # the values, against numpy by hand
    vg = sg.value_and_grad(loss, wrt=[W1, b1, W2], inputs=inputs, backend="numba")
    rng = np.random.default_rng(7)
    w1, c1, w2, x = (rng.normal(size=s) for s in ((2, 2), 2, (2, 1), (4, 2)))
    h = 1 / (1 + np.exp(-(x @ w1 + c1)))
    o = 1 / (1 + np.exp(-(h @ w2)))
    do = o * o * (1 - o)
    value, (dw1, dc1, dw2) = vg(w1, c1, w2, x)
    assert value == pytest.approx(0.5 * np.sum(o**2), rel=1e-13)
    np.testing.assert_allclose(dw1, x.T @ (do @ w2.T * h * (1 - h)), rtol=1e-12)
    np.testing.assert_allclose(dw2, h.T @ do, rtol=1e-12)


def test_a_small_product_given_twice_is_written_into_one_array_and_copied_into_the_other():
    # compile([p, p]) returns two arrays: the product writes the first, the second is its copy
    A, B = sg.tensor("A", (3, 4)), sg.tensor("B", (4, 2))
    p = A @ B
    em = NumbaEmitter()
    source = em.module([p, p, p.T], ["p", "q", "r"], [A, B], 3, "call", "twice", "out")
    instr = em.value[id(p)]
    passed = {k: alloc.target for k, alloc in em.passed}
    assert sorted(passed) == [0, 1, 2]
    assert instr.into is passed[0] and _into(em.kernel_ir_full) == [instr]
    machine = _section(source, "def kernel_into(", "kernel_entry = kernel_into")
    assert machine.count("_rt.small_matmul_into(") == 1 and machine.count("_rt.put(") == 2
    f = sg.compile([p, p, p.T], inputs=[A, B], backend="numba")
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    first, second, third = f(a, b)
    for got in (first, second, third.T):
        np.testing.assert_allclose(got, a @ b, rtol=1e-14)
    assert not np.shares_memory(first, second) and not np.shares_memory(first, third)
    assert not np.shares_memory(second, third)
    again = f(a, b)
    assert not any(np.shares_memory(x, y) for x in again for y in (first, second, third))


def test_write_into_gives_a_destination_only_to_a_top_level_instruction_nothing_rebinds():
    A, B = sg.tensor("A", (2, 3)), sg.tensor("B", (3, 2))
    p = A @ B
    block, value = ir.build(schedule([p], 1)[0])
    instr = value[id(p)]

    def plan(copied=False):
        return OutputPlan(p, "out", instr, copied, ir.Alloc(ir.Var("out", p.dtype, p.shape)), put=True)

    def written(block, plan, writes=lambda v: True):
        instr.into = None
        write_into(block, [plan], writes)
        return instr.into

    ok = plan()
    assert written(block, ok) is ok.passed.target and not ok.put
    # a later statement binds the product's name again: the passed array would miss that value
    rebound = plan()
    assert written(block + [ir.Assign(instr, value[id(A)])], rebound) is None and rebound.put
    # inside a loop, an output copied (a view, another output's array), a backend that cannot
    cases = [
        ([ir.For(ir.LoopVar("i"), 2, list(block))], plan(), lambda v: True),
        (block, plan(copied=True), lambda v: True),
        (block, plan(), lambda v: False),
    ]
    for b, pl, writes in cases:
        assert written(b, pl, writes) is None and pl.put


def test_a_backend_without_destinations_refuses_to_print_one():
    A, B = sg.tensor("A", (2, 3)), sg.tensor("B", (3, 2))
    with pytest.raises(TypeError, match="the numpy backend writes no matmul into a given array"):
        NumpyEmitter().lower_into(A @ B, ["a", "b"], "out")
    assert not NumpyEmitter().writes_into(ir.Instr(A @ B, []))
