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

from symgrad.ops.registry import constant

from . import ir


def roll(nodes, n_forward, loops, value, statement_of):
    """(part, statements) units of the kernel: ``nodes`` (a schedule) with ``loops`` rolled.
    ``value``: id(node) -> IR value, updated for the nodes the loops compute; ``statement_of``:
    id(node) -> the statement computing it outside loops (absent: none, e.g. moved into a branch)."""
    units, arrays, p = [], {}, 0
    starts = {loop.start: k for k, loop in enumerate(loops)}
    outside = []
    while p < len(nodes):
        part = 1 if p >= n_forward else 0
        if p in starts:
            units.append((part, _loop(nodes, loops, starts[p], value, arrays)))
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


def _loop(nodes, loops, k, value, arrays):
    loop = loops[k]
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
    stmts = [
        ir.Note(
            f"{loop.period} statement{'s' if loop.period > 1 else ''} repeated {loop.count} times, rolled into a loop"
        )
    ]
    for j in sorted(loop.stored):
        array = arrays[(k, j)] = ir.Var("all", members[j].dtype, (loop.count,), like=body[j], suffix="_all")
        stmts.append(ir.Alloc(array, "empty"))
    initial = {}
    for specs in operands:
        for spec in specs:
            if spec[0] == "carried":
                initial[spec[1]] = ir.current(value, spec[2])
    for j2, init in sorted(initial.items()):
        stmts.append(ir.Assign(prev.get(j2, body[j2]), init))
    inner = []
    for j, node in enumerate(members):
        if j in loop.hoisted:
            inner.append(
                ir.Assign(
                    body[j], _stacked(arrays, loop.hoisted[j], step), note="computed in an earlier loop"
                )
            )
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
                    args.append(_stacked(arrays, spec, step))
            if j in loop.index:
                # a per-step read of an array: the element this iteration's statement read
                index = tuple(ir.Affine(t0, d, step) if d else t0 for t0, d in loop.index[j])
                inner.append(ir.Assign(body[j], ir.Elem(args[0], index)))
            else:
                body[j].operands = args
                inner.append(body[j])
        if j in loop.stored:
            inner.append(ir.Store(arrays[(k, j)], (step,), body[j]))
    inner += [ir.Assign(target, body[j2]) for j2, target in sorted(prev.items())]
    stmts.append(ir.For(step, loop.count, inner))
    for p in range(loop.start, loop.stop):
        t, j = loop.place(p)
        if t == loop.count - 1:
            value[id(nodes[p])] = body[j]
        elif j in loop.stored:
            value[id(nodes[p])] = ir.Elem(arrays[(k, j)], (t,))
    return stmts


def _stacked(arrays, spec, step):
    """An earlier loop's value of body statement ``j2`` at iteration ``t0 + direction*step``."""
    _, source, j2, t0, direction = spec
    return ir.Elem(arrays[(source, j2)], (ir.Affine(t0, direction, step),))


# a run of at least this many consecutive elements of one loop array is copied by a loop
STACK_MIN_RUN = 3


def stack_scalars(units, keep):
    """Write each ``stack`` of scalars (a ``concatenate`` along axis 0 of scalars reshaped to
    (1,): per-step outputs collected in a Python loop) as stores into its array, a run of
    consecutive elements of a rolled loop's array as one copy loop, and drop the reshapes nothing
    else reads. ``units``: (part, statements) from ``roll``, rewritten in place; ``keep``: ids of
    nodes that must stay (outputs)."""
    rewritten = {}  # id(concatenate Instr) -> its statements
    for _, stmts in units:
        for stmt in stmts:
            if isinstance(stmt, ir.Instr) and not stmt.scalar and _scalar_stack(stmt):
                rewritten[id(stmt)] = _stores(stmt, [o.operands[0] for o in stmt.operands])
    if not rewritten:
        return units
    read = set()
    for _, stmts in units:
        for stmt in ir.walk(stmts):
            if id(stmt) in rewritten:
                continue
            for v in ir.reads(stmt):
                read.update(id(leaf) for leaf in ir.leaves(v))
    dropped = {
        id(o)
        for _, stmts in units
        for s in stmts
        if id(s) in rewritten
        for o in s.operands
        if id(o) not in read and id(o.node) not in keep
    }
    return [
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


def _scalar_stack(stmt):
    node = stmt.node
    if node.op != "concatenate" or node.ndim != 1 or node.attrs.get("axis") != 0:
        return False
    return all(
        isinstance(o, ir.Instr)
        and not o.scalar
        and o.node.op == "reshape"
        and o.node.shape == (1,)
        and o.node.inputs[0].ndim == 0
        and o.dtype == node.dtype
        and len(o.operands) == 1
        for o in stmt.operands
    )


def _stores(stmt, scalars):
    """``stmt``'s array allocated, then each scalar stored at its place."""
    out = [ir.Alloc(stmt, "empty")]
    i = 0
    while i < len(scalars):
        run = _elements_run(scalars, i)
        if run >= STACK_MIN_RUN:
            first, second = scalars[i], scalars[i + 1]
            k = ir.LoopVar("k")
            t0, direction = first.index[0], second.index[0] - first.index[0]
            copy = ir.Elem(first.array, (ir.Affine(t0, direction, k),))
            out.append(ir.For(k, run, [ir.Store(stmt, (ir.Affine(i, 1, k),), copy)]))
            i += run
        else:
            out.append(ir.Store(stmt, (i,), scalars[i]))
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
