"""The compiler's passes around and inside a loop's For (sg.scan): scalar branch sinking, and
fusion of the elementwise statements before and after it (numba backend)."""

import numpy as np
import pytest

import symgrad as sg
from symgrad.codegen import branches, ir
from symgrad.codegen.numba_backend import NumbaEmitter
from symgrad.codegen.schedule import schedule
from symgrad.graph import topo_order


def _scan_with_branches():
    x, xs = sg.scalar("x"), sg.tensor("xs", ("T",))
    c, ys = sg.scan(lambda c, v: (sg.where(v > 0, sg.log(v) + c, c - v), c * 2.0), x, xs)
    return sg.where(c > 0, sg.sqrt(c), -c) + sg.sum(ys)


def _branch_of(block, op):
    """The If whose branch computes ``op``, searching ``block`` and its nested blocks."""
    for stmt in ir.walk(block):
        if isinstance(stmt, ir.If) and any(
            isinstance(s, ir.Instr) and s.node.op == op for b in stmt.blocks for s in ir.walk(b)
        ):
            return stmt
    return None


def test_branches_sink_around_and_inside_a_loop():
    out = _scan_with_branches()
    block, _ = ir.build(topo_order([out]))
    block = branches.sink_in_loops(branches.sink(block, [out]))
    ir.verify(block)
    loop = next(s for s in block if isinstance(s, ir.For))
    # the log of the step's x only where x > 0, inside the loop; the sqrt of the final carry after it
    assert _branch_of(loop.body, "log") is not None
    assert _branch_of(block, "sqrt") in block
    # the For, the carry it starts from and what it stacks stay where they were
    assert isinstance(block[0], ir.Assign) and isinstance(block[1], ir.Alloc) and block[2] is loop
    assert not any(isinstance(s, ir.For) for s in ir.walk(loop.body))


def test_a_value_the_loop_reads_stays_outside_every_branch():
    # s is read by one branch of a where and by the loop (as its constant): it is computed unconditionally
    a, xs = sg.scalar("a"), sg.tensor("xs", ("T",))
    s = sg.exp(a) * 2.0
    c, _ = sg.scan(lambda c, v: (c * s + v, None), a, xs)
    out = sg.where(a > 0, s, c)
    block, _ = ir.build(topo_order([out]))
    block = branches.sink_in_loops(branches.sink(block, [out]))
    ir.verify(block)
    top = [st.node.op for st in block if isinstance(st, ir.Instr)]
    assert "exp" in top and "mul" in top


@pytest.mark.slow
def test_numba_kernel_with_a_scan_sinks_branches_with_the_numbers_unchanged():
    def f(a, b, xs):
        s = np.where(a > 0, np.log(a) * b, np.exp(b) - a)

        def step(c, x):
            c = np.where(x > 0, np.sqrt(x) + c * s, np.sin(c) - x)
            return c, c * c

        c, ys = sg.scan(step, b, xs)
        return np.where(c > 0, np.log(c) + np.sum(ys), np.cos(c) * s)

    def truth(a, b, xs):
        s = np.log(a) * b if a > 0 else np.exp(b) - a
        c, total = b, 0.0
        for x in xs:
            c = np.sqrt(x) + c * s if x > 0 else np.sin(c) - x
            total += c * c
        return np.log(c) + total if c > 0 else np.cos(c) * s

    vg = sg.value_and_grad(f, argnums=(0, 1, 2))
    xs = np.array([0.3, -0.2, 0.5, -1.0, 0.7])
    for a, b in [(0.5, 0.2), (-0.5, 0.3), (0.7, -0.9)]:
        value, (ga, gb, gx) = vg(a, b, xs)
        assert float(value) == pytest.approx(truth(a, b, xs), rel=1e-12)
        h = 1e-6
        assert float(ga) == pytest.approx((truth(a + h, b, xs) - truth(a - h, b, xs)) / (2 * h), rel=1e-6)
        assert float(gb) == pytest.approx((truth(a, b + h, xs) - truth(a, b - h, xs)) / (2 * h), rel=1e-6)
        num = [(truth(a, b, xs + h * e) - truth(a, b, xs - h * e)) / (2 * h) for e in np.eye(len(xs))]
        np.testing.assert_allclose(gx, num, rtol=1e-6, atol=1e-8)
    source = vg.source
    loop = source[source.index("for t in range") : source.index("carry = where")]
    assert "if greater" in loop  # the step's branch: sqrt(x) only where x > 0
    assert source.count("\n    if ") >= 2  # before and after the loop, at the kernel's top level


# ---------------------------------------------------------------- fusion around a loop

RNG = np.random.default_rng(7)


def around(W, U, b, h0, X):
    """Elementwise work before a scan (its xs) and after it (on its ys and final carry)."""
    xs = np.tanh(X @ U.T + b) * 0.5 + np.exp(-(X[:, :1] ** 2))

    def step(h, x):
        h = np.tanh(W @ h + x)
        return h, np.sum(h**2)

    h, ys = sg.scan(step, h0, xs)
    return np.sum(np.exp(-ys) * np.log1p(ys * ys) + ys) + np.sum(np.sin(h) * h)


def around_truth(W, U, b, h0, X):
    xs = np.tanh(X @ U.T + b) * 0.5 + np.exp(-(X[:, :1] ** 2))
    h, ys = h0, []
    for x in xs:
        h = np.tanh(W @ h + x)
        ys.append(np.sum(h**2))
    ys = np.array(ys)
    return np.sum(np.exp(-ys) * np.log1p(ys * ys) + ys) + np.sum(np.sin(h) * h)


def _around_graph():
    names = ("W", "U", "b", "h0", "X")
    shapes = [("n", "n"), ("n", "d"), ("n",), ("n",), ("T", "d")]
    inputs = [sg.tensor(k, s) for k, s in zip(names, shapes)]
    loss = around(*inputs)
    return [loss, *sg.grad(loss, inputs)], inputs


def test_the_statements_around_a_scan_fuse_and_the_kernel_binds_every_value_before_reading_it():
    outputs, inputs = _around_graph()
    forward, backward = schedule(outputs, 1)
    block = NumbaEmitter().kernel_ir(
        forward, backward, {id(o): f"out{k}" for k, o in enumerate(outputs)}, outputs
    )
    ir.verify(block, tuple(ir.Given(s) for s in inputs))
    scans = [s for s in block if isinstance(s, ir.For) and s.node is not None]
    fused = [s for s in ir.walk(block) if isinstance(s, ir.For) and s.node is None]
    assert len(scans) == 2 and fused  # the forward and the reverse loop, and fused loops around them
    names = ["value"] + [f"d_{s.name}" for s in inputs]
    source = NumbaEmitter().module(outputs, names, inputs, 1, "call", "around", "out")
    assert source.count("# fused loop") >= 4 and source.count("# scan") == 2


@pytest.mark.slow
def test_numba_fused_statements_around_a_scan_keep_the_numbers():
    vg = sg.value_and_grad(around, argnums=(0, 1, 2, 3, 4))
    for T in (1, 6, 40):
        args = [RNG.normal(size=(4, 4)) * 0.5, RNG.normal(size=(4, 3)), RNG.normal(size=4)]
        args += [RNG.normal(size=4), RNG.normal(size=(T, 3))]
        value, grads = vg(*args)
        assert float(value) == pytest.approx(around_truth(*args), rel=1e-12)
        for k in (0, 4):  # W, and X (through the work before the loop)
            x0 = args[k]
            num = np.zeros_like(x0)
            for i in np.ndindex(*x0.shape):
                e = np.zeros_like(x0)
                e[i] = 1e-6
                up = around_truth(*args[:k], x0 + e, *args[k + 1 :])
                down = around_truth(*args[:k], x0 - e, *args[k + 1 :])
                num[i] = (up - down) / 2e-6
            np.testing.assert_allclose(grads[k], num, rtol=1e-6, atol=1e-7)
    assert "# fused loop" in vg.source and len(vg.compiles) == 1
