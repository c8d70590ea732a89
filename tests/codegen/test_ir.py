"""The kernel IR and its passes, each tested on small IR without generating code.

The numbers the compiled kernels compute are tested elsewhere (test_fusion, test_chunking,
test_ops); here: the structure each pass builds, and that every value is bound before it is read.
"""

import pytest

import symgrad as sg
from symgrad.autodiff import grad
from symgrad.codegen import branches, fusion, ir, rolling, tiling
from symgrad.codegen.schedule import find_loops, schedule
from symgrad.codegen.numba_backend import NumbaEmitter
from symgrad.ops.registry import OPS


def _instrs(block):
    return [s for s in ir.walk(block) if isinstance(s, ir.Instr)]


def test_build_gives_one_instruction_per_computed_node_and_binds_inputs_as_given():
    x, y = sg.scalars("x y")
    f = x * y + sg.sin(x)
    forward, _ = schedule([f], 1)
    block, value = ir.build(forward)
    assert [s.node.op for s in block] == [n.op for n in forward if n.op not in ("symbol", "constant")]
    assert isinstance(value[id(x)], ir.Given)
    last = block[-1]
    assert last.node is f and last.operands == [value[id(i)] for i in f.inputs]
    ir.verify(block)


def test_stop_gradient_is_its_operands_value():
    x = sg.scalar("x")
    s = sg.stop_gradient(sg.sin(x))
    block, value = ir.build(schedule([s * x], 1)[0])
    assert value[id(s)] is value[id(s.inputs[0])]
    assert "stop_gradient" not in ir.dump(block)


def test_verify_names_a_value_read_before_it_is_bound():
    x = sg.scalar("x")
    block, _ = ir.build(schedule([sg.sin(sg.exp(x))], 1)[0])
    with pytest.raises(AssertionError, match="reads .* before it is bound"):
        ir.verify(block[::-1])


def test_branch_sinking_moves_what_one_branch_reads_into_it():
    x = sg.scalar("x")
    f = sg.where(x > 0, sg.log(x) * 2.0, -x)
    block, _ = ir.build(schedule([f], 1)[0])
    sunk = branches.sink(block, [f])
    (top_if,) = [s for s in sunk if isinstance(s, ir.If)]
    then_ops = {s.node.op for s in _instrs(top_if.blocks[0])}
    else_ops = {s.node.op for s in _instrs(top_if.blocks[1])}
    assert then_ops == {"log", "mul"} and else_ops == {"neg"}
    # the condition is computed before the if, and nothing is computed twice
    assert [s.node.op for s in sunk if isinstance(s, ir.Instr)] == ["greater"]
    assert len(_instrs(sunk)) + 1 == len(block)
    ir.verify(sunk)


def test_branch_sinking_keeps_a_value_both_branches_read_outside():
    x = sg.scalar("x")
    e = sg.exp(x)
    f = sg.where(x > 0, e * 2.0, e - 1.0)
    sunk = branches.sink(ir.build(schedule([f], 1)[0])[0], [f])
    assert any(s.node is e for s in sunk if isinstance(s, ir.Instr))


def _recurrence(depth):
    x, c = sg.scalars("x c")
    v = x
    for _ in range(depth):
        v = sg.sin(v) * v + c
    return v, [x, c]


def test_rolling_makes_one_loop_whose_last_iteration_is_the_result():
    f, _ = _recurrence(100)
    nodes = schedule([f], 1)[0]
    loops = find_loops(nodes, lambda n: n.ndim == 0 and n.op in ("sin", "mul", "add"))
    assert loops and loops[0].count >= 90
    block, value = ir.build(nodes)
    statement_of = {id(s.node): s for s in block}
    units = rolling.roll(nodes, len(nodes), loops, value, statement_of)
    rolled = ir.sectioned(units, False)
    (loop,) = [s for s in rolled if isinstance(s, ir.For)]
    assert loop.stop == loops[0].count
    assert {s.node.op for s in loop.body if isinstance(s, ir.Instr)} == {"sin", "mul", "add"}
    # the output is read from the loop's body value (its last iteration), not recomputed
    assert value[id(f)] in loop.body or any(s.node is f for s in rolled if isinstance(s, ir.Instr))
    assert len(_instrs(rolled)) < 20
    ir.verify(rolled)


def _fused(outputs, wrt=None):
    em = NumbaEmitter()
    forward, backward = schedule(outputs, 1)
    names = {id(o): f"out{k}" for k, o in enumerate(outputs)}
    return fusion.fuse(em, forward, backward, names, outputs)


def test_fusion_makes_a_loop_of_scalar_instructions_reading_elements():
    x = sg.tensor("x", ("n",))
    f = sg.sum(sg.exp(sg.gammaln(x)) * x)  # gammaln: a libm call, so the loop is not tiled
    block = _fused([f])
    loops = [s for s in block if isinstance(s, ir.For)]
    assert len(loops) == 1
    body = _instrs(loops[0].body)
    assert {s.node.op for s in body} == {"gammaln", "exp", "mul"} and all(s.scalar for s in body)
    reads = [leaf for s in body for o in s.operands for leaf in ir.leaves(o) if isinstance(leaf, ir.Elem)]
    assert reads and all(r.index == (loops[0].var,) for r in reads)
    # the sum is a running total, allocated before the loop, not an array
    assert any(isinstance(s, ir.Accum) for s in loops[0].body)
    ir.verify(block)


def test_fusion_reads_a_broadcast_operand_through_index_zero():
    a = sg.tensor("a", ("n", 1))
    b = sg.tensor("b", ("n", "m"))
    block = _fused([sg.sum(a * b)])
    elems = [
        leaf
        for s in ir.walk(block)
        for v in ir.reads(s)
        for leaf in ir.leaves(v)
        if isinstance(leaf, ir.Elem)
    ]
    assert any(0 in e.index for e in elems)  # a[i, 0]


def test_tiling_splits_vector_and_scalar_work_and_hands_values_on_through_buffers():
    X = sg.tensor("X", ("n",))
    f = sg.sum(sg.log1p(sg.exp(X * 2.0)))
    g = grad(f, [X])[0]
    block = _fused([f, g])
    tiled = [s for s in ir.walk(block) if isinstance(s, ir.For) and s.step == tiling.TILE]
    assert tiled, ir.dump(block)
    passes = [s for s in tiled[0].body if isinstance(s, ir.For)]
    assert len(passes) >= 2
    lanes = [s for p in passes if p.note for s in _instrs(p.body)]
    assert lanes and all(s.lanes for s in lanes)
    assert any(OPS_vector(s) for s in lanes)
    # a value made in one pass and read in a later one goes through a buffer of TILE elements
    buffers = [s for s in block if isinstance(s, ir.Alloc) and s.target.shape == (tiling.TILE,)]
    assert buffers
    # each pass first tells LLVM its row index is >= 0, then reloads what earlier passes made
    assert all(p.body[0].target is p.var and "nonnegative" in p.body[0].value.template for p in passes)
    reloads = [s for p in passes for s in p.body[1:] if isinstance(s, ir.Assign)]
    assert reloads and all(isinstance(s.value, ir.Elem) for s in reloads)
    ir.verify(block)


def test_a_tile_kernel_is_a_call_between_passes_over_its_staged_operands():
    """erf (a "tile" op): its operand is stored into its buffer by the pass before, the call
    computes the tile in place, and the pass after reloads the value from that buffer; a general
    pow stages both operands (its exponent too) into buffers of its dtype."""
    x, p = sg.tensor("x", ("n",)), sg.tensor("p", ("n",))
    block = _fused([sg.sum(sg.exp(x) * sg.erf(x * 2.0)), sg.sum(x**p)])
    ir.verify(block)
    tiles = [s for s in ir.walk(block) if isinstance(s, ir.For) and s.step == tiling.TILE]
    assert len(tiles) == 2, ir.dump(block)
    for tile, (op, count) in zip(tiles, [("erf", 1), ("pow", 2)]):
        (call,) = [s for s in tile.body if isinstance(s, ir.TileCall)]
        assert call.node.op == op and len(call.buffers) == count
        at = tile.body.index(call)
        before, after = tile.body[at - 1], tile.body[at + 1]
        staged = [s for s in before.body if isinstance(s, ir.Store) and s.array in call.buffers]
        assert [s.array for s in staged] == list(call.buffers)
        assert all(b.shape == (tiling.TILE,) and b.dtype == call.node.dtype for b in call.buffers)
        reloads = [s for s in after.body if isinstance(s, ir.Assign) and isinstance(s.value, ir.Elem)]
        (reload,) = [s for s in reloads if s.value.array is call.buffers[0]]
        assert reload.target.node is call.node
        assert call.node.op not in {s.node.op for s in _instrs(tile.body)}  # computed by the call only
    assert "tile erf(" in ir.dump(block)


def OPS_vector(instr):
    return OPS[instr.node.op].vector


def test_chunk_kinds_come_from_the_op_table():
    x = sg.tensor("x", ("n",))
    assert tiling.chunk_kind(sg.exp(x), []) == "vector"
    assert tiling.chunk_kind(sg.sin(x), []) == "vector"
    assert tiling.chunk_kind(sg.arcsin(x), []) == "tile" and tiling.chunk_kind(sg.digamma(x), []) == "libm"
    assert tiling.chunk_kind(x**0.5, []) == "vector" and tiling.chunk_kind(x**0.3, []) == "tile"
    assert tiling.chunk_kind(sg.erf(x), []) == "tile" and tiling.chunk_kind(sg.gammaln(x), []) == "libm"
    assert tiling.chunk_kind(x * 2.0, []) is None
    assert tiling.chunk_kind(sg.sum(x), []) == "sum"


def test_rolling_reads_a_per_step_element_through_an_affine_index():
    x, a = sg.scalars("x a")
    obs = sg.tensor("obs", (100,))
    v, loss = x, 0.0
    for i in range(100):
        v = v + a * sg.sin(v)
        loss = loss + (v - obs[i]) ** 2
    nodes = schedule([loss], 1)[0]
    loops = find_loops(
        nodes, lambda n: n.ndim == 0 and n.op in ("sin", "mul", "add", "sub", "square", "getitem")
    )
    (loop,) = loops
    ((j, index),) = loop.index.items()
    t0 = nodes[loop.start + j].attrs["key"][0][1]
    assert index == ((t0, 1),) and loop.count >= 90
    block, value = ir.build(nodes)
    statement_of = {id(s.node): s for s in block}
    rolled = ir.sectioned(rolling.roll(nodes, len(nodes), loops, value, statement_of), False)
    (for_,) = [s for s in rolled if isinstance(s, ir.For)]
    (read,) = [s for s in for_.body if isinstance(s, ir.Assign) and isinstance(s.value, ir.Elem)]
    assert read.value.array.node is obs
    (affine,) = read.value.index
    assert (affine.t0, affine.direction, affine.index) == (t0, 1, for_.var)
    # the read is an Assign of the element, not a getitem instruction
    assert "getitem" not in {s.node.op for s in _instrs(for_.body)}
    ir.verify(rolled)


def test_the_schedule_is_what_the_primary_outputs_need_then_the_rest_each_in_dependency_order():
    from symgrad.graph import topo_order

    a, b, x = sg.scalar("a"), sg.scalar("b"), sg.tensor("x", ("n",))
    loss = sg.sum(sg.sin(x) * a)
    others = [a * b, sg.exp(a), loss, a]  # shared nodes, an output of the first part, an input
    for primary in range(len(others) + 2):
        outputs = ([loss] + others)[: len(others) + 1]
        forward, backward = schedule(outputs, primary)
        need = {id(n) for n in topo_order(outputs[:primary])}
        assert {id(n) for n in forward} == need and len(forward) == len(need)
        rest = [n for n in topo_order(outputs) if id(n) not in need]
        assert [id(n) for n in backward] == [id(n) for n in rest]
        placed = {id(n): p for p, n in enumerate(forward + backward)}
        assert all(placed[id(i)] < placed[id(n)] for n in forward + backward for i in n.inputs)
