"""Loop rolling (an IR pass): runs of repeated scalar statements (a recurrence written out, and
its reverse sweep) become ``For`` loops over one body. numba's compile time grows with the
statements it sees, so a loop body compiled once replaces thousands of straight-line lines.

``schedule.find_loops`` finds the runs (``Loop``: period, count, where each operand comes from);
this module writes each as IR: arrays for the values read after the loop at an iteration other
than the last, the carried values' initial values, the body, and the copies of carried values
the body overwrites before it reads them. After the loop a node is its body value (last
iteration) or an element of its array.
"""

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
