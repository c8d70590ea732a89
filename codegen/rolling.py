"""Loop rolling (an IR pass): runs of repeated scalar statements (a recurrence written out, and
its reverse sweep) become ``For`` loops over one body. numba's compile time grows with the
statements it sees, so a loop body compiled once replaces thousands of straight-line lines.

``schedule.find_loops`` finds the runs (``Loop``: period, count, where each operand comes from);
this module writes each as IR: arrays for the values read after the loop at an iteration other
than the last, the carried values' initial values, the body, and the copies of carried values
the body overwrites before it reads them. After the loop a node is its body value (last
iteration) or an element of its array.
"""

import numpy as np
import sympy

from symgrad.ops.registry import OPS, constant

from . import ir
from .schedule import dim_text, key_index, keyed

# the note of a rolled loop's read of a row an earlier loop stored (``_loop``)
_EARLIER = "computed in an earlier loop"


class TripCount:
    """The trip count of a traced loop over an input's rows (``for t in range(xs.shape[0])``)
    read from that input's shape when the kernel runs: ``symbol`` (printed ``dim_<name>``,
    bound to ``param.shape[axis]`` in the kernel's prelude) stands for ``size``, the length
    this build was traced at. The rolled loops it drives (``tied``: their indices in the loop
    list) count their iterations, allocate their arrays and index from the end in terms of it,
    so their text is the same for every length and one numba compile serves them all. Every
    number written so is equal to the one it replaces at ``size``, which the entry still checks
    (the graph is the trace of this length)."""

    def __init__(self, name, param, axis, size, tied, arrays):
        self.name, self.param, self.axis, self.size = name, param, axis, size
        self.symbol = sympy.Symbol(name, integer=True, nonnegative=True)
        self.tied = tied
        self.arrays = arrays  # (id(array), axis): the arrays the loops read rows of, per step
        self.stored = {}  # id(Var) -> rows: a tied loop's array of per-step values (see count_from_end)
        self.axes, self.dims = {}, {}  # see time_axes

    def at_end(self, v):
        """``v`` (an int position or count) counted from the end: ``symbol - (size - v)``."""
        return self.symbol + (v - self.size)

    def timed(self, dim):
        """Is ``dim`` (of a shape) the trip count?"""
        return isinstance(dim, sympy.Basic) and dim == self.symbol

    def near_end(self, v, length):
        """Position ``v`` of a run of ``length`` steps: from the end in its second half."""
        return self.at_end(v) if 2 * v >= length else v


def trip_count(nodes, loops, inputs, names):
    """The ``TripCount`` of ``loops`` (``schedule.Loop`` over ``nodes``), or None: the length of
    the axis the loops read per step (``xs[t]``, ``obs[i]``), when they all read one length and
    an input (``inputs``, named in the kernel by ``names``: id -> parameter) has an axis of it.
    A loop is tied to it when it reads along that axis, reads an array a tied loop stored, or
    computes values a stack of that length collects."""
    sizes, sources = set(), []
    # the statements whose values a stack of per-step values collects (``np.stack``): its length
    collected = {}
    for node in nodes:
        if (
            node.op == "concatenate"
            and node.attrs.get("axis") == 0
            and all(stack_row(i) for i in node.inputs)
        ):
            collected.update((id(i.inputs[0]), len(node.inputs)) for i in node.inputs)
    reads = []  # per loop: whether it reads along an axis per step
    for loop in loops:
        members = loop.body(nodes) + [nodes[reader.start + j] for reader, j, _ in loop.extra]
        found = False
        for j, axes in loop.index.items():
            node = members[j]
            shape = keyed(node)
            for p, (_, step) in enumerate(axes):
                if step and isinstance(shape[p], int):
                    sizes.add(shape[p])
                    found = True
                    if node.shape != shape:  # a read of the array's rows (not the adjoint writing one)
                        sources.append((node.inputs[0], p))
        reads.append(found)
        sizes.update(
            collected[id(nodes[p])] for p in range(loop.start, loop.stop) if id(nodes[p]) in collected
        )
    if len(sizes) != 1:
        return None
    (size,) = sizes
    # the first input (in call order) the loops read rows of, else the first with an axis that long
    read = {(id(s), p) for s, p in sources}
    axes = [(s, p) for s in inputs if id(s) in names for p, d in enumerate(s.shape) if d == size]
    candidates = [(s, p) for s, p in axes if (id(s), p) in read] + axes
    if not candidates:
        return None
    given, axis = candidates[0]
    taken = {sym.name for s in inputs for d in s.shape if not isinstance(d, int) for sym in d.free_symbols}
    name = f"{names[id(given)]}_{axis}"
    while name in taken:
        name += "_steps"
    tied = set()
    for k, loop in enumerate(loops):
        specs = [spec for specs in loop.operands for spec in specs]
        specs += [spec for _, _, more in loop.extra for spec in more] + list(loop.hoisted.values())
        stacked = any(spec[0] == "stacked" and spec[1] in tied for spec in specs)
        stacks = any(collected.get(id(nodes[p])) == size for p in range(loop.start, loop.stop))
        if (reads[k] or stacked or stacks) and loop.count <= size:
            tied.add(k)
    if not tied:
        return None
    arrays = {(id(s), p) for s, p in sources if s.shape[p] == size}
    return TripCount(name, names[id(given)], axis, size, tied, arrays)


def time_axes(nodes, loops, trip):
    """Set ``trip.axes`` (id(node) -> its axes that run over the steps, each ``trip.size`` long)
    and ``trip.dims`` (id(node) -> its shape with those axes ``trip.symbol``): the axes of the
    arrays a tied loop reads rows of (``xs``), of the adjoints writing one row a step (the
    gradient with respect to ``xs``: ``slice_grad``) and of the stacks of per-step values
    (``np.stack``), and every axis an op ties to one of them (elementwise ops, broadcasts,
    reductions, rows, reshapes adding or dropping a leading 1, concatenations, products). The
    kernel prints those axes' lengths (and the indices near their end) in the trip count, so its
    text is the same for every length. Marking an axis wrongly costs a compile, never a number:
    the entry checks that the trip count is ``size``."""
    size = trip.size
    parent = {}

    def find(key):
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    def link(a, p, b, q):
        if a.shape[p] == size and b.shape[q] == size:
            parent[find((id(a), p))] = find((id(b), q))

    seeds = [key for key in trip.arrays]
    for k in trip.tied:
        loop = loops[k]
        for j, axes in loop.index.items():
            for t in range(loop.count):
                node = nodes[loop.start + t * loop.period + j]
                if node.op == "slice_grad":
                    seeds += [(id(node), p) for p, (_, step) in enumerate(axes) if step]
    for node in nodes:
        record, ins = OPS[node.op], node.inputs
        if record.elementwise or node.op in ("where", "cast", "broadcast_to"):
            for i in ins:
                lead = node.ndim - i.ndim
                for a in range(i.ndim):
                    link(i, a, node, lead + a)
        elif record.along_axes and "keepdims" in node.attrs:
            axes = node.attrs["axes"]
            kept = [a for a in range(ins[0].ndim) if node.attrs["keepdims"] or a not in axes]
            for q, a in enumerate(kept):
                if a not in axes:
                    link(ins[0], a, node, q)
        elif node.op in ("getitem", "slice_grad") and all(k[0] in "is" for k in node.attrs["key"]):
            whole, piece = (ins[0], node) if node.op == "getitem" else (node, ins[0])
            key = node.attrs["key"]
            q = 0
            for p in range(whole.ndim):
                k = key[p] if p < len(key) else ("s", None, None, None)
                if k[0] == "s":
                    if k == ("s", None, None, None):
                        link(whole, p, piece, q)
                    q += 1
        elif node.op == "reshape" and ins[0].ndim == node.ndim - 1 and node.shape == (1, *ins[0].shape):
            for a in range(ins[0].ndim):
                link(ins[0], a, node, a + 1)
        elif node.op == "reshape" and ins[0].ndim == node.ndim + 1 and ins[0].shape == (1, *node.shape):
            for a in range(node.ndim):
                link(ins[0], a + 1, node, a)
        elif node.op == "concatenate":
            axis = node.attrs["axis"]
            for i in ins:
                for a in range(node.ndim):
                    if a != axis:
                        link(i, a, node, a)
            if axis == 0 and len(ins) == size and all(stack_row(i) for i in ins):
                seeds.append((id(node), 0))
        elif node.op == "matmul" and ins[0].ndim <= 2 and ins[1].ndim <= 2 and ins[0].ndim + ins[1].ndim > 2:
            a, b = ins
            if a.ndim == 2:
                link(a, 0, node, 0)
            if b.ndim == 2:
                link(b, 1, node, node.ndim - 1)
            link(a, a.ndim - 1, b, 0)
        elif node.op == "transpose":
            for q, a in enumerate(node.attrs["axes"]):
                link(ins[0], a, node, q)
    timed = {find(key) for key in seeds}
    trip.axes, trip.dims = {}, {}
    for node in nodes:
        axes = tuple(p for p, d in enumerate(node.shape) if d == size and find((id(node), p)) in timed)
        if axes:
            trip.axes[id(node)] = axes
            trip.dims[id(node)] = tuple(trip.symbol if p in axes else d for p, d in enumerate(node.shape))


def print_dims(block, trip):
    """Give the statements of ``block`` computing arrays with axes of ``trip``'s steps
    (``time_axes``) their shapes in its symbol (``ir.Instr.dims``)."""
    for stmt in ir.walk(block):
        for v in (stmt, getattr(stmt, "instr", None), getattr(stmt, "target", None)):
            if isinstance(v, ir.Instr) and not v.scalar and id(v.node) in trip.dims:
                v.dims = trip.dims[id(v.node)]


def roll(nodes, n_forward, loops, value, statement_of, trip=None):
    """(part, statements) units of the kernel: ``nodes`` (a schedule) with ``loops`` rolled.
    ``value``: id(node) -> IR value, updated for the nodes the loops compute; ``statement_of``:
    id(node) -> the statement computing it outside loops (absent: none, e.g. moved into a branch);
    ``trip``: the ``TripCount`` the loops it ties count in (None: they count in ints)."""
    units, arrays, p = [], {}, 0
    starts = {loop.start: k for k, loop in enumerate(loops)}
    outside = []
    while p < len(nodes):
        part = 1 if p >= n_forward else 0
        if p in starts:
            units.append((part, _loop(nodes, loops, starts[p], value, arrays, trip)))
            p = loops[starts[p]].stop
            continue
        stmt = statement_of.get(id(nodes[p]))
        units.append((part, [stmt] if stmt is not None else []))
        if stmt is not None:
            outside.append(stmt)
        p += 1
    # statements outside the loops read what the loops left (their last values, stored arrays)
    ir.rebind(outside, value)
    return units


def _loop(nodes, loops, k, value, arrays, trip=None):
    loop = loops[k]
    tied = trip is not None and k in trip.tied
    count = trip.at_end(loop.count) if tied else loop.count

    def stacked(spec):
        # an earlier loop's array read backwards: from its end when that loop is tied too
        if spec[4] < 0 and trip is not None and spec[1] in trip.tied:
            spec = (*spec[:3], trip.at_end(spec[3]), spec[4])
        return _stacked(arrays, spec, step)

    members = loop.body(nodes) + [nodes[reader.start + j] for reader, j, _ in loop.extra]
    operands = loop.operands + [specs for _, _, specs in loop.extra]
    body = [ir.Instr(node, []) for node in members]
    for j, specs in enumerate(operands):
        # names from the values before this one in the body (never from itself: it is carried)
        body[j].naming = [
            body[s[1]]
            if s[0] in ("slot", "carried") and s[1] < j
            else ir.current(value, s[1])
            if s[0] == "fixed"
            else None
            for s in specs
        ]
    prev = {}
    for j, specs in enumerate(operands):
        for spec in specs:
            # read after this iteration overwrote it: keep the previous value aside
            if spec[0] == "carried" and spec[1] < j and spec[1] not in prev:
                prev[spec[1]] = ir.Var("prev", members[spec[1]].dtype, like=body[spec[1]], suffix="_prev")
    step = ir.LoopVar("k")
    times = f"{dim_text(count).strip('()')} times" if tied else f"{loop.count} times"
    stmts = [
        ir.Note(
            f"{loop.period} statement{'s' if loop.period > 1 else ''} repeated {times}, rolled into a loop"
        )
    ]
    for j in sorted(loop.stored):
        # an array statement's values as the rows of one array
        shape = (count, *members[j].shape)
        array = arrays[(k, j)] = ir.Var("all", members[j].dtype, shape, like=body[j], suffix="_all")
        stmts.append(ir.Alloc(array, "empty"))
    initial = {}
    for specs in operands:
        for spec in specs:
            if spec[0] == "carried":
                initial[spec[1]] = ir.current(value, spec[2])
    for j2, init in sorted(initial.items()):
        if members[j2].ndim and (isinstance(init, ir.Given) or OPS[init.node.op].aliases):
            # a carried array starts as a fresh one of the type the body makes (a constant is
            # a read-only global to numba, a view may have another layout)
            init = ir.AsType(init, members[j2].dtype, members[j2].shape)
        stmts.append(ir.Assign(prev.get(j2, body[j2]), init))
    inner = []
    for j, node in enumerate(members):
        if j in loop.hoisted:
            inner.append(ir.Assign(body[j], stacked(loop.hoisted[j]), note=_EARLIER))
        else:
            args = []
            for spec in operands[j]:
                if spec[0] == "fixed":
                    args.append(ir.current(value, spec[1]))
                elif spec[0] == "slot":
                    args.append(body[spec[1]])
                elif spec[0] == "carried":
                    args.append(prev.get(spec[1], body[spec[1]]))
                elif spec[0] == "varying":
                    values = np.array([c.value for c in spec[1]], dtype=spec[1][0].dtype)
                    args.append(ir.Elem(ir.Given(constant(values)), (step,)))
                else:
                    args.append(stacked(spec))
            if j in loop.index:
                # a row read backwards (an adjoint's rows of xs) counts from the end of the rows
                index = tuple(
                    ir.Affine(trip.at_end(t0) if tied and d < 0 else t0, d, step) if d else t0
                    for t0, d in loop.index[j]
                )
                if keyed(node) == node.shape:
                    # the adjoint of a per-step read: zeros, the step's row written
                    inner += [ir.Alloc(body[j], "zeros"), ir.Store(body[j], index, args[0])]
                else:
                    # a per-step read of an array: the element (row, block) this iteration's
                    # statement read
                    key = node.attrs["key"]
                    index = tuple(ir.Span(i) if key[p][0] == "s" else i for p, i in enumerate(index))
                    inner.append(ir.Assign(body[j], ir.Elem(args[0], index)))
            else:
                body[j].operands = args
                body[j].serial = not node.ndim  # a scalar body statement: the op's scalar twin, if any
                inner.append(body[j])
        if j in loop.stored:
            inner.append(ir.Store(arrays[(k, j)], (step,), body[j]))
    inner += [ir.Assign(target, body[j2]) for j2, target in sorted(prev.items())]
    stmts.append(ir.For(step, count, inner))
    for p in range(loop.start, loop.stop):
        t, j = loop.place(p)
        if t == loop.count - 1:
            value[id(nodes[p])] = body[j]
        elif j in loop.stored:
            value[id(nodes[p])] = ir.Elem(arrays[(k, j)], (t,))
            if tied:
                trip.stored[id(arrays[(k, j)])] = loop.count
    return stmts


def count_from_end(block, trip):
    """Point the reads of a tied loop's stored rows after it (``all[t]``) in the second half of
    the rows at ``trip``'s count from the end (after ``stack_scalars`` has found its runs of
    consecutive rows, which it reads as ints), and so the int indices (reads and stores) along
    an axis of ``trip.symbol`` (``time_axes``: a row of the gradient of ``xs``, of a stack)."""
    if trip is None:
        return
    done = set()
    for stmt in ir.walk(block):
        indexed = [stmt] if isinstance(stmt, ir.Store) else []
        indexed += [leaf for v in ir.reads(stmt) for leaf in ir.leaves(v) if isinstance(leaf, ir.Elem)]
        for leaf in indexed:
            if id(leaf) in done:
                continue
            done.add(id(leaf))
            first = leaf.index[0]
            if id(leaf.array) in trip.stored:
                if type(first) is int:
                    leaf.index = (trip.near_end(first, trip.stored[id(leaf.array)]), *leaf.index[1:])
                continue
            shape = getattr(leaf.array, "shape", ())
            leaf.index = tuple(
                trip.near_end(i, trip.size)
                if type(i) is int and p < len(shape) and trip.timed(shape[p])
                else i
                for p, i in enumerate(leaf.index)
            )


def _indices(rank):
    return [ir.LoopVar("ijklmnpq"[a] if a < 8 else f"i{a}") for a in range(rank)]


def _element(v, at):
    """The element ``at`` of array value ``v`` (a row of an earlier loop's array read as one index)."""
    if isinstance(v, ir.Elem) and not any(isinstance(i, ir.Span) for i in v.index):
        return ir.Elem(v.array, (*v.index, *at))
    return ir.Elem(v, tuple(at))


def _nest(idx, shape, body):
    stmt = ir.For(idx[-1], shape[-1], body)
    for var, dim in reversed(list(zip(idx[:-1], shape[:-1]))):
        stmt = ir.For(var, dim, [stmt])
    return stmt


def scalarize(block, loopable):
    """Write the elementwise statements of array values (``loopable(node)``) of ``block`` and the
    loops in it as loops of the ops' scalar spellings, one loop for each run of consecutive ones
    of one shape, and a rolled loop's store of an array row as a copy loop: numba compiles an
    array expression or a row assignment in ~0.15 s (seconds for the first row assignment), a
    loop of scalar code in a fraction of that. Operands broadcast as numpy does; a statement
    read outside its run (or by itself, a running sum) stays an array (allocated, its elements
    stored), one read only later in its run is a scalar. Returns the new block."""
    runs = {}  # id(block) -> [(a run of elementwise statements?, statements)]
    member = {}  # id(statement) -> (its run, its place in it)

    def plan(stmts):
        found, run = [], []
        for stmt in stmts:
            if isinstance(stmt, ir.For):
                plan(stmt.body)
            if isinstance(stmt, ir.Instr) and not stmt.scalar and stmt.node.ndim and loopable(stmt.node):
                if run and run[0].shape != stmt.shape:
                    found.append((True, run))
                    run = []
                run.append(stmt)
            elif _row_store(stmt) and any(stmt.value is m for m in run):
                run.append(stmt)
            else:
                if run:
                    found.append((True, run))
                    run = []
                found.append((False, [stmt]))
        if run:
            found.append((True, run))
        runs[id(stmts)] = found
        for looped, r in found:
            if looped:
                for p, m in enumerate(r):
                    member[id(m)] = (id(r), p)

    plan(block)
    read = set()  # the values read other than as an earlier statement of the reader's run
    for stmt in ir.walk(block):
        mine = member.get(id(stmt))
        for v in ir.reads(stmt):
            theirs = member.get(id(v))
            if mine and theirs and theirs[0] == mine[0] and theirs[1] < mine[1]:
                continue
            read.update(id(leaf) for leaf in ir.leaves(v))

    def rewrite(stmts):
        out = []
        for looped, r in runs[id(stmts)]:
            if looped:
                out += _run_loop(r, read)
                continue
            stmt = r[0]
            if isinstance(stmt, ir.For):
                stmt.body = rewrite(stmt.body)
            if _row_write(stmt):
                # the adjoint of a read xs[t]: zeros, the row written as a copy loop below
                out.append(ir.Alloc(stmt, "zeros"))
                stmt = ir.Store(stmt, key_index(stmt.node), stmt.operands[0])
            if _row_store(stmt):
                idx = _indices(len(stmt.value.shape))
                store = ir.Store(stmt.array, (*stmt.index, *idx), _element(stmt.value, idx))
                stmt = _nest(idx, stmt.value.shape, [store])
            out.append(stmt)
        return out

    return rewrite(block)


def _row_write(stmt):
    node = getattr(stmt, "node", None)
    return (
        isinstance(stmt, ir.Instr)
        and not stmt.scalar
        and keyed(node) == node.shape
        and node.inputs[0].ndim > 0
        and key_index(node) is not None
    )


def _row_store(stmt):
    return isinstance(stmt, ir.Store) and not stmt.add and bool(getattr(stmt.value, "shape", ()))


def _run_loop(run, read):
    """One loop nest computing the elementwise statements of ``run`` (and its row stores)."""
    shape = run[0].shape
    idx = _indices(len(shape))
    scalar_of, before, inner, after = {}, [], [], []
    seen = set()  # what the statements so far read as arrays
    for stmt in run:
        if isinstance(stmt, ir.Instr):
            seen.update(id(leaf) for v in stmt.operands for leaf in ir.leaves(v))
        if isinstance(stmt, ir.Store):
            inner.append(ir.Store(stmt.array, (*stmt.index, *idx), scalar_of[id(stmt.value)]))
            continue
        node = stmt.node
        operands = []
        for v, i in zip(stmt.operands, node.inputs):
            if id(v) in scalar_of:
                operands.append(scalar_of[id(v)])
            elif not i.shape:
                operands.append(v)
            else:
                lead = node.ndim - i.ndim
                at = [0 if d == 1 and shape[lead + a] != 1 else idx[lead + a] for a, d in enumerate(i.shape)]
                operands.append(_element(v, at))
        element = ir.Instr(
            node, operands, scalar=True, naming=stmt.naming or list(stmt.operands), note=stmt.note
        )
        scalar_of[id(stmt)] = element
        inner.append(element)
        if id(stmt) in read:
            # a value a rolled loop carries, read as last iteration's by itself (a running sum) or
            # an earlier statement of the run: written into a new array, bound after the loop
            own = id(stmt) in seen
            target = ir.Var("new", node.dtype, shape, like=stmt, suffix="_new") if own else stmt
            stmt.note = False
            before.append(ir.Alloc(target, "empty"))
            inner.append(ir.Store(target, tuple(idx), element))
            if own:
                after.append(ir.Assign(stmt, target))
    return before + [_nest(idx, shape, inner)] + after


def _stacked(arrays, spec, step):
    """An earlier loop's value of body statement ``j2`` at iteration ``t0 + direction*step``."""
    _, source, j2, t0, direction = spec
    return ir.Elem(arrays[(source, j2)], (ir.Affine(t0, direction, step),))


# a run of at least this many consecutive elements of one loop array is copied by a loop
STACK_MIN_RUN = 3


def stack_scalars(units, keep, value, trip=None):
    """Write each ``stack`` of scalars (a ``concatenate`` along axis 0 of scalars reshaped to
    (1,): per-step outputs collected in a Python loop) as stores into its array, a run of
    consecutive elements of a rolled loop's array as one copy loop, and drop the reshapes nothing
    else reads. A rolled loop's array whose rows are all a run of the stack, in order, and that
    nothing else reads is not made at all: the loop stores its rows into the stack itself
    (``_rows_in_place``). Rows the loops store that nothing reads are then dropped
    (``_drop_unread_rows``). ``units``: (part, statements) from ``roll``, rewritten in place;
    ``keep``: ids of nodes that must stay (outputs); ``trip``: the ``TripCount`` a stack of its
    length counts in; ``value``: id(node) -> its IR value, which the printer reads besides the
    statements."""
    stacks = [
        stmt
        for _, stmts in units
        for stmt in stmts
        if isinstance(stmt, ir.Instr) and not stmt.scalar and _scalar_stack(stmt)
    ]
    if not stacks:
        return _drop_unread_rows(units, keep, value)
    read, stack_ids = set(), {id(s) for s in stacks}
    for _, stmts in units:
        for stmt in ir.walk(stmts):
            if id(stmt) in stack_ids:
                continue
            for v in ir.reads(stmt):
                read.update(id(leaf) for leaf in ir.leaves(v))
    written = _rows_in_place(units, stacks, trip, value)
    dropped = {id(o) for s in stacks for o in s.operands if id(o) not in read and id(o.node) not in keep}
    rewritten = {
        id(s): _stores(s, [o.operands[0] for o in s.operands], trip, written.get(id(s))) for s in stacks
    }
    units = [
        (
            part,
            [
                new
                for s in stmts
                if id(s) not in dropped
                for new in (rewritten[id(s)] if id(s) in rewritten else [s])
            ],
        )
        for part, stmts in units
    ]
    return _drop_unread_rows(units, keep, value)


def _drop_unread_rows(units, keep, value):
    """``units`` without the rows rolled loops store that nothing reads: a loop's read of an
    earlier loop's row (a member of its body another loop computed) whose value nothing uses,
    then the arrays of rows (``all``) nothing reads, their ``Alloc`` and the loop's ``Store``.
    ``keep``: ids of the output nodes, whose values (``value``: id(node) -> IR value) the printer
    reads."""
    outputs = [v for k, v in value.items() if k in keep]
    changed = True
    while changed:
        read = set()
        for _, stmts in units:
            for stmt in ir.walk(stmts):
                for v in ir.reads(stmt):
                    if not (isinstance(stmt, ir.Store) and v is stmt.array and not stmt.add):
                        read.update(id(leaf) for leaf in ir.leaves(v))
        for v in outputs:
            read.update(id(leaf) for leaf in ir.leaves(v))
        arrays = {
            id(s.target)
            for _, stmts in units
            for s in stmts
            if isinstance(s, ir.Alloc) and isinstance(s.target, ir.Var) and s.target.suffix == "_all"
        }
        unread = arrays - read
        dead = set()
        for _, stmts in units:
            for stmt in ir.walk(stmts):
                if (
                    isinstance(stmt, ir.Assign)
                    and stmt.note == _EARLIER
                    and isinstance(stmt.value, ir.Elem)
                    and id(stmt.target) not in read
                ):
                    dead.add(id(stmt))
                elif isinstance(stmt, ir.Alloc) and id(stmt.target) in unread:
                    dead.add(id(stmt))
                elif isinstance(stmt, ir.Store) and id(stmt.array) in unread and not stmt.add:
                    dead.add(id(stmt))
        changed = bool(dead)
        if changed:
            units = [(part, _without(stmts, dead)) for part, stmts in units]
    return units


def _without(stmts, dead):
    """``stmts`` (and the blocks nested in them, in place) without the statements ``dead``."""
    kept = [s for s in stmts if id(s) not in dead]
    for stmt in kept:
        for block in ir.blocks_of(stmt):
            block[:] = _without(block, dead)
    return kept


def _rows_in_place(units, stacks, trip, value):
    """Let the rolled loops whose arrays of rows a stack holds whole store their rows into the
    stack: {id(stack): the positions of its rows those loops write}. A loop's array ``all`` (its
    ``Alloc`` at the top of a unit, one ``Store all[k] = row`` in the loop) qualifies when the
    stack's rows at consecutive positions are ``all``'s rows 0, 1, ..., n - 1 (or n - 1, ..., 0),
    its last row read as the loop's value after it, and every read of ``all`` is of a row
    (``all[t]``, ``all[t0 + d*k]``): the store becomes one into the stack's row, the reads read
    the stack's row, the stack is allocated where ``all`` was (before the loop), and ``all`` and
    the copy of its rows are gone. ``units`` is rewritten in place; ``value`` (id(node) -> IR
    value): the values the printer reads besides the statements (an output's row of ``all``)."""
    allocs, stores, elems, whole = {}, {}, {}, set()

    def scan(v):
        # the Elems of each array; the arrays read otherwise too (whole) keep their buffers
        found = list(ir.leaves(v))
        as_array = {}
        for leaf in found:
            if isinstance(leaf, ir.Elem):
                elems.setdefault(id(leaf.array), {})[id(leaf)] = leaf
                as_array[id(leaf.array)] = as_array.get(id(leaf.array), 0) + 1
        for leaf in found:
            as_array[id(leaf)] = as_array.get(id(leaf), 0) - 1
        whole.update(key for key, n in as_array.items() if n < 0)

    for u, (_, stmts) in enumerate(units):
        for p, stmt in enumerate(stmts):
            if isinstance(stmt, ir.Alloc) and stmt.target.shape:
                allocs[id(stmt.target)] = (u, p)
        for stmt in ir.walk(stmts):
            if isinstance(stmt, ir.Store):
                stores.setdefault(id(stmt.array), []).append(stmt)
                for v in (stmt.value, *stmt.more, *stmt.index):
                    scan(v)
            else:
                for v in ir.reads(stmt):
                    scan(v)
    for v in value.values():
        scan(v)

    def rows_read(key):
        return all(
            len(e.index) == 1 and isinstance(e.index[0], (int, ir.Affine))
            for e in elems.get(key, {}).values()
        )

    # id(array) -> (its one store of a row per iteration, its row count)
    looped, last = {}, {}
    for key, found in stores.items():
        store = found[0]
        if len(found) != 1 or key not in allocs or key in whole or store.add or len(store.index) != 1:
            continue
        if not isinstance(store.index[0], ir.LoopVar) or not rows_read(key):
            continue
        rows = store.array.shape[0]
        if not isinstance(rows, int):
            rows = trip.stored.get(key) if trip is not None else None
        if rows is not None and rows >= 2:
            looped[key] = (store, rows)
            last[id(store.value)] = key

    def row_of(v):
        # (id(array), row) when ``v`` is a row of a loop's array, or the loop's value after it
        if isinstance(v, ir.Elem) and id(v.array) in looped and type(v.index[0]) is int:
            return id(v.array), v.index[0]
        if last.get(id(v)) in looped:
            return last[id(v)], looped[last[id(v)]][1] - 1
        return None

    written, moved = {}, {}
    for stack in stacks:
        rows = [row_of(o.operands[0]) for o in stack.operands]
        timed = trip is not None and trip.timed(stack.shape[0])
        i = 0
        while i < len(rows):
            if rows[i] is None or rows[i][0] not in looped:
                i += 1
                continue
            key, first = rows[i]
            store, count = looped[key]
            direction = 1 if first == 0 else -1
            run = count if first in (0, count - 1) else 0
            if (
                run < 2
                or i + run > len(rows)
                or any(rows[i + m] != (key, first + direction * m) for m in range(run))
                or tuple(store.array.shape[1:]) != tuple(stack.shape[1:])
                or store.array.dtype != stack.dtype
                # both count in the trip count, or neither does
                or timed != (not isinstance(store.array.shape[0], int))
            ):
                i += 1
                continue
            # row r of the loop's array is the stack's row t0 + direction * r
            t0 = i if direction == 1 else i + count - 1
            at = trip.near_end(t0, trip.size) if timed else t0
            store.array = stack
            store.index = (ir.Affine(at, direction, store.index[0]),)
            for e in elems.get(key, {}).values():
                e.array = stack
                r = e.index[0]
                if isinstance(r, ir.Affine):
                    e.index = (ir.Affine(at + direction * r.t0, direction * r.direction, r.index),)
                else:
                    # an int: count_from_end counts it from the end of the stack when it is near
                    e.index = (t0 + direction * r,)
            del looped[key]
            written.setdefault(id(stack), set()).update(range(i, i + run))
            moved.setdefault(id(stack), (stack, []))[1].append(allocs[key])
            i += run
    for stack, places in moved.values():
        u, p = min(places)
        for u2, p2 in places:
            units[u2][1][p2] = None
        units[u][1][p] = ir.Alloc(stack, "empty")
    if moved:
        units[:] = [(part, [s for s in stmts if s is not None]) for part, stmts in units]
    return written


def stack_row(node):
    """Is ``node`` a reshape adding a leading axis of length 1 (``np.stack``'s, of a scalar or a
    row)?"""
    return node.op == "reshape" and node.shape == (1, *node.inputs[0].shape)


def stack_rows(nodes):
    """The ids of the reshapes of ``nodes`` only stacks read: they stay out of rolled loops (the
    stack stores their operands)."""
    users = {}
    for n in nodes:
        for i in n.inputs:
            users.setdefault(id(i), []).append(n)
    return {
        id(n)
        for n in nodes
        if stack_row(n)
        and users.get(id(n))
        and all(u.op == "concatenate" and u.attrs.get("axis") == 0 for u in users[id(n)])
    }


def _scalar_stack(stmt):
    """Is ``stmt`` a stack of per-step values (a ``concatenate`` along axis 0 of scalars or rows
    reshaped to a leading axis of length 1)?"""
    node = stmt.node
    if node.op != "concatenate" or node.attrs.get("axis") != 0:
        return False
    return all(
        isinstance(o, ir.Instr)
        and not o.scalar
        and stack_row(o.node)
        and o.dtype == node.dtype
        and len(o.operands) == 1
        for o in stmt.operands
    )


def _stores(stmt, scalars, trip=None, written=None):
    """``stmt``'s array allocated, then each scalar (row) stored at its place (a row copied
    element by element: numba compiles a row assignment slowly). A stack of ``trip``'s length
    (``stmt.shape[0]`` its symbol) counts its runs near its end from the end. ``written``: the
    positions rolled loops store themselves (``_rows_in_place``, which allocates the array
    before them)."""
    row = tuple(stmt.shape[1:])
    timed = trip is not None and trip.timed(stmt.shape[0])
    idx = _indices(len(row) + 1)[1:] if row else []

    def store(at, value):
        if not row:
            return ir.Store(stmt, (at,), value)
        return _nest(idx, row, [ir.Store(stmt, (at, *idx), _element(value, idx))])

    out = [] if written else [ir.Alloc(stmt, "empty")]
    i = 0
    while i < len(scalars):
        if written and i in written:
            i += 1
            continue
        run = _elements_run(scalars, i)
        if run >= STACK_MIN_RUN:
            first, second = scalars[i], scalars[i + 1]
            k = ir.LoopVar("k")
            t0, direction = first.index[0], second.index[0] - first.index[0]
            count, at = run, i
            if timed:
                rows = trip.stored.get(id(first.array))
                if rows is not None and direction < 0:
                    t0 = trip.near_end(t0, rows)
                count, at = trip.near_end(run, trip.size), trip.near_end(i, trip.size)
            copy = ir.Elem(first.array, (ir.Affine(t0, direction, k),))
            out.append(ir.For(k, count, [store(ir.Affine(at, 1, k), copy)]))
            i += run
        else:
            out.append(store(i, scalars[i]))
            i += 1
    return out


def _elements_run(scalars, i):
    """How many of ``scalars[i:]`` read one array at int indices advancing by a fixed step of +-1."""

    def element(v):
        return isinstance(v, ir.Elem) and len(v.index) == 1 and type(v.index[0]) is int

    if i + 1 >= len(scalars) or not (element(scalars[i]) and element(scalars[i + 1])):
        return 1
    first = scalars[i]
    direction = scalars[i + 1].index[0] - first.index[0]
    if direction not in (1, -1):
        return 1
    n = 1
    while (
        i + n < len(scalars)
        and element(scalars[i + n])
        and scalars[i + n].array is first.array
        and scalars[i + n].index[0] == first.index[0] + direction * n
    ):
        n += 1
    return n
