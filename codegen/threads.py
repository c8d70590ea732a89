"""Row blocks on threads (an IR pass on a kernel's fused loops; numba backend).

``block`` gives a second version of a kernel whose fused row loops (``fusion``: the outer
``For`` carrying a ``RowLoop``) are cut into blocks of ``BLOCK`` rows, the blocks run by a
``numba.prange`` loop on the threads ``symgrad.config(threads=...)`` sets. The result has the
same bits whatever the number of threads:

- the partition depends on the row count alone (``BLOCK`` rows a block, the last one shorter),
  never on the threads;
- what a loop accumulates over rows (a running sum, a sum over the row axis, a transposed
  product ``A.T @ r``) is accumulated per block into the block's own scalar or array, stored to
  its slot of a partial buffer, and the partials are added after the blocks, in block order;
- a scatter into rows near the row (``d_x[i + 1] += ...``, the adjoint of a slice) touches the
  next block's first rows: such a loop runs the even blocks, then the odd ones, so each element
  receives its additions in one fixed order;
- the tiles' buffers are each block's own;
- the scalars a row hands to the next rows (``fusion.carry_scatters``: the next elements' slice
  gradients) are each block's own too: they depend on the last few rows alone (the loop's
  ``halo``), so a block starts by running those rows before its first again, their statements
  that compute alone (no store, no sum), and after the blocks the last rows run so for the
  values the loop leaves; the same arithmetic on the same rows gives the same bits.

A loop nest (``RowLoop.per_row``: the extents after its rows) that calls a function is cut into
blocks of about ``BLOCK`` elements instead (``block_rows``: ``BLOCK // row length`` rows, at
least one; its rows are not tiled, its rows' elements are), and runs from ``MIN_ROWS`` elements;
a nest of arithmetic alone, a nest adding into the next rows, a nest summing over its rows into
an array (a partial array of a row's size per block) and every nest of a kernel that multiplies
matrices keep blocks of ``BLOCK`` rows. A kernel with a numpy statement broadcasting
whole arrays has no blocks (``_broadcasts``: numba's parallel compile refuses it).

A loop the pass cannot prove independent across blocks (it writes an array or a local set before
it in another way) stays as it was, in both versions. The generated entry calls this version
(``kernel_blocks``) only when a loop has at least ``MIN_ROWS`` rows (a loop nest cut into blocks
of elements: elements): below, the plain kernel runs, on one thread, as before.
"""

import math
from dataclasses import replace

from symgrad.ops.registry import OPS

from . import ir
from .tiling import TILE, nonnegative

BLOCK = 16384  # rows a block: a multiple of TILE, so a block's tiles are the plain loop's
# rows from which the entry runs the blocked kernel; measured (rosen, logreg, ew value and grad on
# 2 threads): below it a parallel launch costs about what the second core saves
MIN_ROWS = 131072
PARALLEL = (
    "{'prange': True, 'comprehension': False, 'reduction': False, 'inplace_binop': False, "
    "'setitem': False, 'numpy': False, 'stencil': False, 'fusion': False}"
)


def block(kernel):
    """(the blocked kernel's IR, the row counts of its blocked loops), or None when no fused loop
    of ``kernel`` may have ``MIN_ROWS`` rows and be cut into blocks."""
    every = list(ir.walk(kernel))
    if any(isinstance(stmt, ir.For) and stmt.node is not None for stmt in every):
        return None  # a kernel holding a loop of the graph (sg.scan) runs on one thread
    if any(_broadcasts(stmt) for stmt in every):
        return None
    # blocks of elements for loop nests that compute, in a kernel without matrix products
    nests = not any(_multiplies_matrices(stmt) for stmt in every)
    plans = {}
    moved = set()  # ids of the allocations of tile buffers: each block allocates its own
    for stmt in kernel:
        if isinstance(stmt, ir.For) and stmt.fused is not None:
            plan = _plan(stmt, nests)
            if plan is not None and _may_be_long(stmt.stop, plan.per_row):
                plans[id(stmt)] = plan
                moved.update(id(s) for s in plan.buffers)
    if not plans:
        return None
    out, extents = [], []
    for stmt in kernel:
        if id(stmt) in moved:
            continue
        if id(stmt) in plans:
            out.extend(_blocked(stmt, plans[id(stmt)]))
            extents.append((stmt.stop, plans[id(stmt)].per_row))
        else:
            out.append(stmt)
    return out, extents


def _broadcasts(stmt):
    """Is ``stmt`` an elementwise op on whole arrays whose shapes differ in an axis they share
    (numpy broadcasting a size of 1, as ``exp_arr / sum_exp`` over (h, n, n) and (h, n, 1))?
    numba's parallel compile asserts such sizes equal unless it sees the 1 as a literal (it does
    not in an argument's shape, nor in ``runtime.zeros``'s), and the call fails: a kernel holding
    one runs on one thread."""
    if not isinstance(stmt, ir.Instr) or stmt.scalar or not OPS[stmt.node.op].elementwise:
        return False
    shapes = [tuple(i.shape) for i in stmt.node.inputs if i.shape]
    return any(a[-k] != b[-k] for a in shapes for b in shapes for k in range(1, min(len(a), len(b)) + 1))


def _may_be_long(stop, per_row):
    """May a loop of ``stop`` rows of ``per_row`` elements each have ``MIN_ROWS`` elements?"""
    extents = (stop, *per_row)
    return not all(isinstance(d, int) for d in extents) or math.prod(extents) >= MIN_ROWS


def block_rows(per_row):
    """The rows of a block of a loop nest whose rows have ``per_row`` elements: about ``BLOCK``
    elements (at least a row), so a loop of ``MIN_ROWS`` elements has several blocks whatever
    its shape; an int for literal extents, else the template of a ``Formula`` of them."""
    if all(isinstance(d, int) for d in per_row):
        return max(1, BLOCK // max(math.prod(per_row), 1))
    return f"max(1, {BLOCK} // max({' * '.join(f'{{{k}}}' for k in range(len(per_row)))}, 1))"


class _Plan:
    def __init__(self):
        self.buffers = []  # Allocs of the tiles' buffers
        self.sums = []  # scalar Vars the loop accumulates into
        self.partial = []  # arrays the loop adds into at indices that are not the row's
        self.phases = False  # whether some Store adds into a row near the row (i + k)
        self.carried = []  # scalars carried from row to row (fusion.RowLoop.carried)
        self.halo = 0  # the rows before a block's first its carried scalars are computed from
        self.per_row = ()  # a loop nest's extents after the rows: blocks sized in elements


def _plan(loop, nests=True):
    """What blocking ``loop`` takes, or None when its blocks would not be independent; ``nests``:
    a loop nest that computes may be cut into blocks of elements (``_computes``)."""
    row, pre = loop.fused.row, loop.fused.pre
    allocated = {id(s.target): s for s in pre if isinstance(s, ir.Alloc)}
    buffers = {}
    plan = _Plan()
    carried = {id(v): v for v in loop.fused.carried}
    if carried:
        if loop.start is not None or not 0 < loop.fused.halo < BLOCK:
            return None
        if any(isinstance(s, ir.For) and s.far is not None for s in ir.walk(loop.body)):
            return None  # a block's own choice of arithmetic: a halo row would not repeat it
        plan.carried, plan.halo = list(carried.values()), loop.fused.halo
    written_once = {}  # id(array) -> its stores (=) into the row + k: each element by one row
    for stmt in ir.walk(loop.body):
        if carried and not isinstance(stmt, (ir.Assign, ir.Store)):
            if any(id(leaf) in carried for v in ir.reads(stmt) for leaf in ir.leaves(v)):
                return None
        if isinstance(stmt, ir.Accum):
            if id(stmt.target) in allocated:
                if stmt.target.shape or allocated[id(stmt.target)].fill != "zeros":
                    return None
                if stmt.target not in plan.sums:
                    plan.sums.append(stmt.target)
        elif isinstance(stmt, (ir.Assign, ir.Alloc)):
            if id(stmt.target) in carried and stmt in loop.body:
                if _swap(stmt.value, carried) is None:
                    return None
            elif id(stmt.target) in allocated:
                return None
        elif isinstance(stmt, ir.Store):
            target = stmt.array
            if id(target) not in allocated or _swap(stmt.value, carried) is None:
                return None
            kind = _store_kind(stmt, row)
            if kind == "buffer" and target.shape == (TILE,):
                buffers[id(target)] = allocated[id(target)]
            elif kind == "row":
                pass
            elif kind == "near" and not stmt.add:
                written_once.setdefault(id(target), []).append(stmt)
            elif kind == "near" and stmt.add:
                plan.phases = True
            elif kind == "across" and stmt.add and allocated[id(target)].fill == "zeros":
                if target not in plan.partial:
                    plan.partial.append(target)
            else:
                return None
    if any(t in plan.partial for t in buffers):
        return None
    for stores in written_once.values():
        if len(stores) > 1 or any(
            isinstance(s, ir.Store) and s.array is stores[0].array and s not in stores
            for s in ir.walk(loop.body)
        ):
            return None  # the element of another store: two rows would write it
    plan.buffers = list(buffers.values())
    if nests and not (plan.phases or plan.carried or plan.partial) and _computes(loop):
        # a loop nest's rows are not tiled (its rows' elements are), so a block may hold any
        # number of them; a block adding into the next one's rows keeps BLOCK rows (its phases),
        # and so does a sum over the rows into an array: each block has its own partial array
        # of a row's size, as large as the whole array were the blocks a row each
        plan.per_row = loop.fused.per_row
    return plan


def _multiplies_matrices(stmt):
    """Is ``stmt`` a product of arrays that is not elementwise (``@``, BLAS's)? Such a kernel
    spends its time there: mlp/1024's (1024, 128) tanh ran no faster in blocks of elements, and
    its first call compiled them for 9 s (numba's parallel compile of the whole kernel), so its
    loop nests are cut into blocks of BLOCK rows, from MIN_ROWS rows, as loops over rows are."""
    if not isinstance(stmt, ir.Instr) or stmt.scalar:
        return False
    record = OPS[stmt.node.op]
    return record.bilinear and not record.elementwise


def _computes(loop):
    """Does ``loop`` call a function (libm's, or its twin on lanes) rather than only add and
    multiply? A loop nest of arithmetic alone reads memory as fast on one thread: bilinear's
    (4096, 64) products ran 5 % slower in blocks of elements on 2 threads, so such a nest is
    cut into blocks of BLOCK rows, from MIN_ROWS rows, as a loop over rows is."""
    for s in ir.walk(loop.body):
        if isinstance(s, ir.TileCall):
            return True
        if isinstance(s, ir.Instr) and (OPS[s.node.op].calls_libm(s.node) or OPS[s.node.op].on_lanes(s.node)):
            return True
    return False


def _store_kind(stmt, row):
    """ "row" (the index holds the row: no other row writes there), "near" (``row + k``, k a small
    int: the next block's first rows), "buffer" (``row - tile start``: a tile's buffer), "across"
    (the row is not in the index: every row adds there), or None."""
    if any(i is row or (isinstance(i, ir.Row) and i.index is row) for i in stmt.index):
        return "row"
    if len(stmt.index) == 1 and _in_tile(stmt.index[0]):
        return "buffer"  # a tile's buffer of a row's elements (each row's last axis tiled)
    kinds = set()
    for i in stmt.index:
        if isinstance(i, ir.Shift) and isinstance(i.index, ir.Row) and i.index.index is row:
            i = ir.Shift(row, i.start, i.sign)  # a row of a group run at once, in its tile's buffer
        if isinstance(i, ir.Shift) and i.index is row:
            start = i.start
            if isinstance(start, ir.LoopVar) and i.sign < 0:
                kinds.add("buffer")
            elif isinstance(start, ir.WindowStart) and isinstance(start.value, int) and i.sign > 0:
                if not 0 < start.value < BLOCK:
                    return None
                kinds.add("near")
            else:
                return None
        elif any(leaf is row for leaf in _index_leaves(i)):
            return None
    if not kinds:
        return "across"
    return kinds.pop() if len(kinds) == 1 else None


def _in_tile(i):
    """Is the index ``i`` an element's slot in its tile's buffer (``index - tile start``)?"""
    return isinstance(i, ir.Shift) and isinstance(i.start, ir.LoopVar) and i.sign < 0


def _index_leaves(i):
    if isinstance(i, (ir.Shift, ir.Affine, ir.Row)):
        yield from _index_leaves(i.index)
    elif isinstance(i, ir.Span):
        yield from _index_leaves(i.start)
    elif isinstance(i, ir.Value):
        yield from ir.leaves(i)
    else:
        yield i


def _blocked(loop, plan):
    """The statements running ``loop`` block by block (see the module's doc)."""
    rows = loop.stop
    nblocks = ir.Var("nblocks", "int64")
    size = BLOCK if not plan.per_row else block_rows(plan.per_row)
    what = f"{size} rows" if isinstance(size, int) else f"about {BLOCK} elements"
    stmts = [ir.Note(f"in blocks of {what} on the threads (symgrad.config(threads=...)), the partial sums")]
    stmts.append(
        ir.Note(
            "added in block order"
            + (
                "; even blocks, then odd ones (a block adds into the next one's first rows)"
                if plan.phases
                else ""
            )
        )
    )
    if isinstance(size, str):
        count = ir.Var("block_rows", "int64")
        stmts.append(ir.Assign(count, ir.Formula(size, tuple(plan.per_row))))
        size = count
    if isinstance(size, int):
        stmts.append(ir.Assign(nblocks, ir.Formula(f"({{0}} + {size - 1}) // {size}", (rows,))))
    else:
        stmts.append(ir.Assign(nblocks, ir.Formula("({0} + {1} - 1) // {1}", (rows, size))))
    partial_of = {}
    for target in plan.sums + plan.partial:
        p = ir.Var("partial", target.dtype, like=target, suffix="_p")
        partial_of[id(target)] = p
        if target.shape:
            code = f"np.zeros(({{0}},) + {{1}}.shape, dtype=np.{target.dtype})"
            stmts.append(
                ir.Assign(p, ir.Formula(code, (nblocks, target), target.dtype, (None,) + target.shape))
            )
        else:
            stmts.append(ir.Assign(p, ir.Formula(f"np.zeros({{0}}, dtype=np.{target.dtype})", (nblocks,))))
    h = ir.LoopVar("blk")
    if plan.phases:
        phase = ir.LoopVar("phase")
        b = ir.Var("block", "int64")
        inner = [ir.Assign(b, ir.Formula("2 * {0} + {1}", (h, phase)))]
    else:
        b, inner = h, []
    lo = ir.LoopVar("lo", like=loop.fused.row, suffix="_lo")
    hi = ir.LoopVar("hi", like=loop.fused.row, suffix="_hi")
    start = (
        ir.Formula(f"{{0}} * {size}", (b,)) if isinstance(size, int) else ir.Formula("{0} * {1}", (b, size))
    )
    inner += [ir.Assign(lo, start), ir.Bound(hi, lo, size, rows)]
    inner += list(plan.buffers)
    own, carry = {}, {}
    for target in plan.sums:
        own[id(target)] = ir.Var("sum", target.dtype, like=target, suffix="_b")
        inner.append(ir.Alloc(own[id(target)], "zeros"))
    for target in plan.partial:
        # a block's own array (not its row of the partial buffer: the rows of two blocks running
        # at once may share a cache line, each += then taking it from the other core)
        own[id(target)] = ir.Var("partial", target.dtype, target.shape, like=target, suffix="_b")
        inner.append(ir.Alloc(own[id(target)], "zeros"))
    for v in plan.carried:
        carry[id(v)] = ir.Var("carried", v.dtype, like=v, suffix="_b")
        inner.append(ir.Alloc(carry[id(v)], "zeros"))
    if plan.carried:
        # the rows before the block's first once more, for the scalars they hand on
        halo = _rewrite(_quiet(loop.body, plan.sums), own, (rows, loop.var), hi, carry, loop.fused.row)
        inner.append(_halo(loop, halo, lo, plan.halo))
    body = [nonnegative(loop.var)] + _rewrite(loop.body, own, (rows, loop.var), hi, carry, loop.fused.row)
    inner.append(replace(loop, stop=hi, start=lo, body=body, fused=None))
    for target in plan.sums + plan.partial:
        inner.append(ir.Store(partial_of[id(target)], (b,), own[id(target)]))
    if plan.phases:
        half = ir.Formula("({0} + 1 - {1}) // 2", (nblocks, phase))
        stmts.append(ir.For(phase, 2, [ir.For(h, half, inner, parallel=True)]))
    else:
        stmts.append(ir.For(h, nblocks, inner, parallel=True))
    if partial_of:
        c = ir.LoopVar("blk")
        adds = [ir.Accum(t, ir.Elem(partial_of[id(t)], (c,))) for t in plan.sums + plan.partial]
        stmts.append(ir.For(c, nblocks, adds))
    if plan.carried:
        # the last rows once more, for the values the loop leaves in its carried scalars
        stmts.append(_halo(loop, _quiet(loop.body, plan.sums), rows, plan.halo))
    return stmts


def _halo(loop, body, end, rows):
    """``body`` run for the ``rows`` rows before ``end`` (fewer at the loop's start)."""
    start = ir.Formula(f"max({{0}} - {rows}, 0)", (end,))
    return ir.For(loop.var, end, [nonnegative(loop.var)] + body, start=start)


def _quiet(block, sums):
    """``block`` without its stores and its additions into ``sums``: what computes scalars."""
    out = []
    for stmt in block:
        if isinstance(stmt, ir.Store) or (isinstance(stmt, ir.Accum) and stmt.target in sums):
            continue
        if isinstance(stmt, ir.For):
            stmt = replace(stmt, body=_quiet(stmt.body, sums))
        elif isinstance(stmt, ir.If):
            stmt = replace(stmt, blocks=tuple(_quiet(k, sums) for k in stmt.blocks))
        out.append(stmt)
    return out


def _swap(value, own):
    """``value`` reading ``own[id(v)]`` for each carried scalar v it reads (the sums
    ``carry_scatters`` builds: ``Apply`` of ``add``), or None when it reads one another way."""
    if id(value) in own:
        return own[id(value)]
    if isinstance(value, ir.Apply) and any(id(leaf) in own for leaf in ir.leaves(value)):
        operands = tuple(_swap(o, own) for o in value.operands)
        return None if None in operands else replace(value, operands=operands)
    if any(id(leaf) in own for leaf in ir.leaves(value)):
        return None
    return value


def _rewrite(block, own, tiles, hi, carry, row):
    """A copy of ``block`` adding into each block's own accumulators, handing on each block's own
    carried scalars (``carry``), the tiles of the rows ending at ``hi`` (``tiles``: the row count
    and the tile loop's index; a tile of a row's elements keeps its bound), their loops over the
    rows (``row``) telling LLVM the index is >= 0."""
    out = []
    for stmt in block:
        if isinstance(stmt, ir.Accum) and id(stmt.target) in own:
            stmt = replace(stmt, target=own[id(stmt.target)])
        elif isinstance(stmt, ir.Store):
            value = _swap(stmt.value, carry) if carry else stmt.value
            stmt = replace(stmt, array=own.get(id(stmt.array), stmt.array), value=value)
        elif isinstance(stmt, ir.Assign) and id(stmt.target) in carry:
            stmt = replace(stmt, target=carry[id(stmt.target)], value=_swap(stmt.value, carry))
        elif isinstance(stmt, ir.Bound) and stmt.stop is tiles[0] and stmt.start is tiles[1]:
            stmt = replace(stmt, stop=hi)
        elif isinstance(stmt, ir.For):
            stmt = replace(stmt, body=_rewrite(stmt.body, own, tiles, hi, carry, row))
        elif isinstance(stmt, ir.If):
            stmt = replace(stmt, blocks=tuple(_rewrite(k, own, tiles, hi, carry, row) for k in stmt.blocks))
        out.append(stmt)
    return out
