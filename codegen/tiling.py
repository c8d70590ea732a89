"""Tiling and SIMD lanes (an IR pass on a fused loop over rows).

A loop over rows that runs exp, log, sin, tanh, ... (the ops whose record says ``vector``: the
runtime's arithmetic versions, which LLVM can put on SIMD lanes) next to work that keeps the
loop scalar (an inner loop of a row-wise product, a running sum, a branch) is cut into tiles of ``TILE`` rows, and each tile into passes: the
scalar passes and the vector passes each loop over the tile's rows, handing values on through
TILE-long buffers. Running sums move to the last scalar pass; they add in the same row order as
the untiled loop. In a vector pass the ops with an arithmetic twin are marked ``lanes`` (the
printer spells them ``_rt.v<op>``); one element at a time, libm's are the faster. An op whose
twin is too large to compile into every kernel (erf, pow by any exponent: its record's
``vector`` says "tile") is a pass of its own: the pass before stores its operands in buffers, one
``TileCall`` (``_rt.v<op>_tile``, compiled once into numba's disk cache) computes the tile in
place, and the passes after read the value from the first buffer. A scalar pass holding a row's dot
product runs ``JAM`` rows at once (``jam``): the rows' dot products side by side in one loop over
the row's elements, each adding in its own row's order (the same bits).

Which values a later pass reads is found from the statements' operands, never from text.
"""

from dataclasses import replace

from symgrad.ops.registry import OPS
from . import ir

TILE = 256
# rows a pass holding inner loops over a row (a dot product, a transposed product's update) runs
# at once (``jam``) when its rows are at most JAM_WIDTH long. Measured on the value and grad
# kernels, one thread, n x d rows (the same bits): logreg at d = 16 1.12x as fast; least squares
# 1.4x at d = 16, 1.5x at d = 5; sum(tanh(X @ w - t)^2) 1.2x at d = 16, 1.5x at d = 5. Jammed
# whatever d, a pass of dot products was 1.7x as slow at d = 64 and the updates' loop 1.8x
JAM = 4
JAM_WIDTH = 16


def by_tile(node):
    """Whether ``node``'s twin on lanes is a compiled tile kernel (its record's ``vector`` is, or
    its predicate returns, "tile": the runtime's ``v<op>_tile``) rather than an inlined function."""
    vector = OPS[node.op].vector
    return (vector(node) if callable(vector) else vector) == "tile"


def selected_on_lanes(owner, members):
    """``owner`` (``branches.owners``' map of a row loop's ``members``) without the wheres whose
    branches hold an op with a twin on SIMD lanes and no libm call without one: both branches are
    computed for every row and the where selects (its scalar spelling, a select for LLVM), so
    they join a pass on lanes; an ``If`` would keep its whole pass scalar, its ops on libm
    (log_ndtr's derivative: exp(-x^2/2 - log_ndtr(x)) / sqrt(2 pi), an asymptotic series in the
    far left tail). The branch not taken computes harmless values (a nan, an inf) the select
    drops. Each where is judged by the members its own branches hold (a where nested in a branch
    of another is one of those; its own branches are its own). A loop that calls libm outside any
    branch is not tiled (``tile``): its wheres keep their branches."""
    if any(_libm_only(n) for n in members if id(n) not in owner):
        return owner
    held = {}  # id(where) -> the members its branches hold
    for node in members:
        key = owner.get(id(node))
        if key is not None:
            held.setdefault(key[0], []).append(node)
    unsunk = {
        where
        for where, nodes in held.items()
        if any(OPS[n.op].on_lanes(n) for n in nodes)
        and not any(_libm_only(n) for n in nodes)
        and all(n.dtype in ("float32", "float64", "bool") for n in nodes)
    }
    return {k: v for k, v in owner.items() if v[0] not in unsunk}


def _libm_only(node):
    """Is ``node``'s scalar spelling a libm call with no twin on lanes?"""
    record = OPS[node.op]
    return record.calls_libm(node) and not record.on_lanes(node)


def chunk_kind(node, stmts):
    """What a member's statements need: "sum" (a running sum), "libm" (a libm call: the loop runs
    at its pace, tiling gains nothing), "scalar" (an inner loop or a branch), "vector" (an op
    with an arithmetic twin), "tile" (an op whose twin is a tile kernel: a pass of its own, one
    call), or None (anything else: it goes with its neighbours)."""
    if node.op == "sum":
        return "sum"
    record = OPS[node.op]
    lanes = record.on_lanes(node)
    if record.calls_libm(node) and not lanes:
        return "libm"
    if node.op == "matmul" or any(isinstance(s, (ir.If, ir.For)) for s in stmts):
        return "scalar"
    if lanes and by_tile(node):
        return "tile"
    return "vector" if lanes else None


def tile(chunks, scalar, index, length, pre):
    """The statements of the tiled loop over ``chunks`` ((member, statements) in order), or None
    when tiling gains nothing. ``scalar``: id(member) -> its element value; ``index``: the row
    loop's index; ``pre``: where the buffers' allocations go."""
    kinds = [chunk_kind(node, stmts) for node, stmts in chunks]
    # (a loop of elementwise ops alone is one vector pass a tile: the tiles keep the far flag's rerun short;
    # a loop computing a row's dot product is tiled for its pass of JAM rows at once)
    dots = any(_dot_loop(s) for _, stmts in chunks for s in stmts)
    if "libm" in kinds or not (dots or {"vector", "tile"} & set(kinds)):
        return None
    start = ir.LoopVar("i0", like=index, suffix="0")
    stop = ir.LoopVar("i1", like=index, suffix="1")
    at = (ir.Shift(index, start, -1),)  # a row's slot in a tile's buffer
    passes = []  # [kind, [chunk, ...]]
    sums = []
    for chunk, kind in zip(chunks, kinds):
        if kind == "sum":
            sums.append(chunk)
        elif kind == "tile":
            staged, call, rest = _tile_call(chunk, scalar, at, start, stop, pre)
            # the operands go into the buffers at the end of the pass before (or a pass of their own)
            if passes and passes[-1][0] != "tile":
                passes[-1][1].append((None, staged))
            else:
                passes.append([None, [(None, staged)]])
            passes.append(["tile", [(chunk[0], [call])]])
            passes.append([None, [(None, rest)]])  # what reads the value: the pass after
        elif passes and (kind is None or passes[-1][0] in (None, kind)):
            passes[-1][1].append(chunk)
            passes[-1][0] = passes[-1][0] or kind
        else:
            passes.append([kind, [chunk]])
    if sums:
        if passes and passes[-1][0] not in ("vector", "tile"):
            passes[-1][1].extend(sums)
        else:
            passes.append(["scalar", sums])
    # which pass reads each value: the leaves of every statement's operands
    read_in = []
    for _, chunk_list in passes:
        seen = set()
        for stmt in ir.walk([s for _, stmts in chunk_list for s in stmts]):
            for v in ir.reads(stmt):
                seen.update(id(leaf) for leaf in ir.leaves(v))
        read_in.append(seen)
    handed = {}  # id(value) -> its buffer
    reloads = [[] for _ in passes]
    for k, (kind, chunk_list) in enumerate(passes):
        for node, stmts in chunk_list:
            value = scalar.get(id(node))
            if value is None:
                continue
            later = [j for j in range(k + 1, len(passes)) if id(value) in read_in[j]]
            if not later:
                continue
            if kind == "tile":  # the call leaves the value in its first buffer
                buffer = handed[id(value)] = stmts[0].buffers[0]
            else:
                buffer = handed[id(value)] = ir.Var("t", node.dtype, (TILE,), like=value, suffix="_t")
                pre.append(ir.Alloc(buffer, "empty"))
            for j in later:
                reloads[j].append(ir.Assign(value, ir.Elem(buffer, at)))
    body = [ir.Bound(stop, start, TILE, length)]
    for k, (kind, chunk_list) in enumerate(passes):
        if kind == "tile":
            body.extend(chunk_list[0][1])
            continue
        stmts = list(reloads[k])
        for node, chunk_stmts in chunk_list:
            stmts.extend(chunk_stmts)
            value = scalar.get(id(node))
            if value is not None and id(value) in handed:
                stmts.append(ir.Store(handed[id(value)], at, value))
        if not stmts:
            continue
        far = _on_lanes(stmts, index) if kind == "vector" else None
        note = "on SIMD lanes" if kind == "vector" else ""
        jammed = jam(stmts, index, start, stop) if kind not in ("vector", "tile") else None
        if jammed is not None:
            body.extend(jammed)
            continue
        body.append(ir.For(index, stop, [nonnegative(index)] + stmts, start=start, note=note, far=far))
    return [ir.For(start, length, body, start=0, step=TILE)]


def jam(stmts, index, start, stop):
    """A tile's pass ``stmts`` (the body of ``for index in range(start, stop)``) holding inner loops
    over a row (a dot product ``a[i, :] @ v`` adding into a scalar of the row, a transposed
    product's ``g[j] += r_i * A[i, j]``) as two loops: one running ``JAM`` rows at once, their
    statements side by side, then the tile's last rows one at a time; or None when ``stmts`` has
    no inner loop, holds what cannot be put side by side (a branch, a nested loop) or has rows
    longer than ``JAM_WIDTH`` (a runtime test when the length is a symbol: longer rows run one at a
    time).

    One row's dot product is a chain of dependent additions: the rows' dot products share one
    loop over j, so the processor overlaps their independent chains. The rows' updates of
    ``g[j]`` are one statement (``Store.more``): one load and one store of ``g[j]`` for the rows.
    Every sum adds in the same order as one row at a time: the same bits."""
    loops = [s for s in stmts if isinstance(s, ir.For)]
    if not loops or not all(_jammable(s) for s in stmts):
        return None
    widths = []  # the rows' lengths not known to be short: tested when the kernel runs
    for loop in loops:
        if isinstance(loop.stop, int):
            if loop.stop > JAM_WIDTH:
                return None
        elif not any(loop.stop is w for w in widths):
            widths.append(loop.stop)
    copies = [{}] + [{id(index): ir.Row(index, k)} for k in range(1, JAM)]
    together = []
    for stmt in stmts:
        if isinstance(stmt, ir.Note):
            together.append(stmt)
        elif isinstance(stmt, ir.For):
            inner = [_copy(s, m) for s in stmt.body for m in copies]
            together.append(replace(stmt, body=_chained(inner)))
        else:
            together.extend(_copy(stmt, m) for m in copies)
    rows = f"{{1}} - {JAM - 1}"
    last = f"{{1}} - ({{1}} - {{0}}) % {JAM}"
    if widths:  # rows at once only for short rows: else the first loop runs no row
        short = " and ".join(f"{{{k + 2}}} <= {JAM_WIDTH}" for k in range(len(widths)))
        rows, last = f"{rows} if {short} else {{0}}", f"{last} if {short} else {{0}}"
    bounds = (start, stop, *widths)
    note = f"{JAM} rows at once" + (f" (rows of at most {JAM_WIDTH})" if widths else "")
    return [
        ir.For(
            index, ir.Formula(rows, bounds), [nonnegative(index)] + together, start=start, step=JAM, note=note
        ),
        ir.For(
            index,
            stop,
            [nonnegative(index)] + stmts,
            start=ir.Formula(last, bounds),
            note="the tile's last rows",
        ),
    ]


def _chained(block):
    """``block`` with each run of ``+=`` stores into one element (the rows' updates of a transposed
    product's ``g[j]``) as one store adding them in order (``Store.more``)."""
    out = []
    for stmt in block:
        last = out[-1] if out else None
        if (
            isinstance(stmt, ir.Store)
            and stmt.add
            and not stmt.more
            and isinstance(last, ir.Store)
            and last.add
            and last.array is stmt.array
            and len(last.index) == len(stmt.index)
            and all(a is b for a, b in zip(last.index, stmt.index))
        ):
            out[-1] = replace(last, more=last.more + (stmt.value,))
        else:
            out.append(stmt)
    return out


def _dot_loop(stmt):
    """Is ``stmt`` a row's dot product's inner loop (adding into a scalar: no store)?"""
    return isinstance(stmt, ir.For) and not any(isinstance(s, ir.Store) for s in stmt.body)


def _jammable(stmt, inner=False):
    if isinstance(stmt, ir.For):
        return not inner and stmt.far is None and all(_jammable(s, True) for s in stmt.body)
    if isinstance(stmt, ir.Instr):
        return stmt.scalar and stmt.name is None
    return isinstance(stmt, (ir.Assign, ir.Store, ir.Accum)) or (isinstance(stmt, ir.Note) and not inner)


def _copy(stmt, mapping):
    """``stmt`` for another row of a jammed group: ``mapping`` (id -> value) holds the row index's
    replacement and the values the row's earlier statements defined, to which the values this one
    defines are added. The empty mapping: ``stmt`` itself (row 0)."""
    if not mapping:
        return stmt

    def sub(v):
        if id(v) in mapping:
            return mapping[id(v)]
        if isinstance(v, ir.Elem):
            return replace(v, array=sub(v.array), index=tuple(sub(i) for i in v.index))
        if isinstance(v, ir.Shift):
            return replace(v, index=sub(v.index), start=sub(v.start))
        if isinstance(v, ir.Apply):
            return replace(v, operands=tuple(sub(o) for o in v.operands))
        if isinstance(v, ir.Guard):
            return replace(v, value=sub(v.value), conds=tuple((sub(c[0]),) + tuple(c[1:]) for c in v.conds))
        if isinstance(v, (ir.Convert, ir.AsType, ir.Full)):
            return replace(v, value=sub(v.value))
        if isinstance(v, ir.Formula):
            return replace(v, operands=tuple(sub(o) for o in v.operands))
        return v

    def fresh(v):
        new = replace(v)
        if isinstance(v, ir.Instr):
            new.operands = [sub(o) for o in v.operands]
            new.naming = None if v.naming is None else [sub(n) for n in v.naming]
            new.note = False  # the rule's comment on the first row's line only
        mapping[id(v)] = new
        return new

    if isinstance(stmt, ir.Instr):
        return fresh(stmt)
    if isinstance(stmt, ir.For):
        return replace(stmt, body=[_copy(s, mapping) for s in stmt.body])
    if isinstance(stmt, ir.Assign):
        value = sub(stmt.value)
        return replace(stmt, target=fresh(stmt.target), value=value, note=None)
    if isinstance(stmt, ir.Store):
        index = tuple(sub(i) for i in stmt.index)
        more = tuple(map(sub, stmt.more))
        return replace(stmt, array=sub(stmt.array), index=index, value=sub(stmt.value), more=more, note=None)
    return replace(stmt, target=sub(stmt.target), value=sub(stmt.value), note=None)  # Accum


def nonnegative(var):
    """``var = _rt.nonnegative(var)``: the index of a loop over ``range(lo, hi)`` (a tile's rows, a
    thread's block) known to LLVM as >= 0, so its arrays are indexed without the wraparound of
    negative indices and the loop is unrolled and vectorised as ``range(n)``'s is."""
    return ir.Assign(var, ir.Formula("_rt.nonnegative({0})", (var,)), note="for LLVM: no negative index")


def _tile_call(chunk, scalar, at, start, stop, pre):
    """A "tile" member as (the Stores of its operands into its buffers, its ``TileCall``, its other
    statements: what stores its value). The buffers are of the member's dtype; the first one
    receives the value."""
    node, stmts = chunk
    instr = scalar[id(node)]
    buffers = []
    staged = []
    for k, operand in enumerate(instr.operands):
        like = instr if k == 0 else operand
        buffer = ir.Var("t", node.dtype, (TILE,), like=like, suffix="_t" if k == 0 else f"_t{k}")
        pre.append(ir.Alloc(buffer, "empty"))
        buffers.append(buffer)
        staged.append(ir.Store(buffer, at, operand))
    count = ir.Formula("{0} - {1}", (stop, start))
    note = instr.node if instr.note is None else instr.note
    call = ir.TileCall(node, tuple(buffers), count, note=note)
    rest = [s for s in stmts if s is not instr]
    return staged, call, rest


def _on_lanes(stmts, index):
    """Mark a vector pass's instructions ``lanes``; the pass's ``far`` flag when an op's twin holds
    over a range only (the pass runs again on libm for a tile that went beyond it), or None.
    A pass that adds into memory cannot run twice: its ranged ops stay libm's there."""
    instrs = [s for s in ir.walk(stmts) if isinstance(s, ir.Instr)]
    ranged = [s for s in instrs if OPS[s.node.op].lanes_range]
    twice = not any(isinstance(s, ir.Accum) or (isinstance(s, ir.Store) and s.add) for s in ir.walk(stmts))
    for s in instrs:
        s.lanes = twice or s not in ranged
    return ir.Var("far", "bool") if ranged and twice else None
