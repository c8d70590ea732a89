"""The compiler's passes around and inside a loop's For (sg.scan): scalar branch sinking."""

import numpy as np
import pytest

import symgrad as sg
from symgrad.codegen import branches, ir
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
