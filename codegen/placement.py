"""numba: a concatenate's operands written in place (a pass over a fused kernel's IR).

``np.concatenate`` allocates its result and copies every operand into it. When an operand is
an array a fused loop writes (an ``Alloc``'d ``Var`` nothing else reads, possibly through a
``reshape`` that only adds or drops axes of length 1), the loop can write its elements straight
into their place in the result: the result is allocated before the first such loop, the
loop's stores are redirected there (``g[i]`` -> ``out[i + offset]``), and the operand's own
array is never made. The other operands are copied by a loop of their own. The sparse
Jacobian's compressed passes (one row per colour, ``stack``ed) and a residual written as
``concatenate([boundary, interior, boundary])`` are such concatenates.
"""

from . import ir

_INDEX = (ir.LoopVar, ir.Shift, ir.Row, int)  # the store indices a redirected store may have


def _redirectable(block):
    """{id(Var): its top-level Alloc} of the arrays allocated "empty" at the top level."""
    return {
        id(s.target): s for s in block if isinstance(s, ir.Alloc) and s.fill == "empty" and s.target.shape
    }


def _uses(block):
    """(reads, stores): per value id, how many times it is read (not counting being stored into),
    and the Stores into it."""
    reads, stores = {}, {}
    for stmt in ir.walk(block):
        values = ir.reads(stmt)
        if isinstance(stmt, ir.Store) and isinstance(stmt.array, ir.Var):
            stores.setdefault(id(stmt.array), []).append(stmt)
            values = [stmt.value, *stmt.more, *stmt.index]
        if isinstance(stmt, ir.If):
            values = [stmt.cond, *stmt.values]
        for v in values:
            for leaf in ir.leaves(v):
                reads[id(leaf)] = reads.get(id(leaf), 0) + 1
    return reads, stores


def _non_unit(shape):
    return [k for k, d in enumerate(shape) if not (isinstance(d, int) and d == 1)]


def _unit_reshape(instr):
    """Whether ``instr`` is a reshape that only adds or drops axes of length 1."""
    if instr.node.op != "reshape" or instr.scalar:
        return False
    src, dst = instr.operands[0].shape, instr.node.shape
    a, b = _non_unit(src), _non_unit(dst)
    return len(a) == len(b) and all(src[i] == dst[j] for i, j in zip(a, b))


def concatenate_in_place(block, value):
    """``block`` (a fused kernel's top-level statements) with each concatenate whose operands
    include arrays a loop writes rewritten to write them in place; ``value`` (id(node) -> IR
    value) is updated for the rewritten concatenates."""
    for c in [s for s in block if isinstance(s, ir.Instr) and not s.scalar and s.node.op == "concatenate"]:
        block = _rewrite(block, c, value)
    return block


def _rewrite(block, c, value):
    allocs = _redirectable(block)
    reads, stores = _uses(block)
    axis = c.node.attrs["axis"]
    statement = {id(s): s for s in block}
    placed = []  # (operand, the Var its loop writes, the reshape between them or None, offset)
    copied = []  # (operand, offset)
    offset = 0
    for o in c.operands:
        var, through = None, None
        if isinstance(o, ir.Var):
            var = o
        elif isinstance(o, ir.Instr) and id(o) in statement and _unit_reshape(o) and reads.get(id(o)) == 1:
            var, through = o.operands[0], o
            if not isinstance(var, ir.Var):
                var = None
        if (
            var is not None
            and var.name is None  # an output's array is returned itself
            and (through is None or through.name is None)
            and id(var) in allocs
            and reads.get(id(var)) == 1
            and all(
                not s.add and all(isinstance(i, _INDEX) for i in s.index) for s in stores.get(id(var), ())
            )
            and c.operands.count(o) == 1
        ):
            placed.append((o, var, through, offset))
        else:
            copied.append((o, offset))
        offset = offset + o.shape[axis]
    if not placed:
        return block
    dest = ir.Var("concatenate", c.dtype, c.shape, name=c.name, derive=(c.node, c.naming or c.operands))
    rank = len(c.shape)
    for o, var, through, start in placed:
        dst_shape = o.shape
        src_axes, dst_axes = _non_unit(var.shape), _non_unit(dst_shape)
        for s in stores.get(id(var), ()):
            index = [0] * rank
            for i, j in zip(src_axes, dst_axes):
                index[j] = s.index[i]
            index[axis] = _shifted(index[axis], start)
            s.array, s.index = dest, tuple(index)
    # the result's allocation before the first loop writing into it; the operands' own arrays
    # and reshapes are gone; the rest is copied where the concatenate was
    first = min(block.index(allocs[id(var)]) for _, var, _, _ in placed)
    dropped = {id(allocs[id(var)]) for _, var, _, _ in placed}
    dropped |= {id(t) for _, _, t, _ in placed if t is not None}
    out = []
    for k, stmt in enumerate(block):
        if k == first:
            out.append(ir.Alloc(dest, note="written in place by the loops computing its parts"))
        if id(stmt) in dropped:
            continue
        if stmt is c:
            out.extend(_copy(dest, o, start, axis) for o, start in copied)
            continue
        out.append(stmt)
    _substitute(out, c, dest)
    for key, v in list(value.items()):
        if v is c:
            value[key] = dest
    return out


def _shifted(index, start):
    """``index + start`` as a store index."""
    if isinstance(start, int) and start == 0:
        return index
    if isinstance(index, int) and isinstance(start, int):
        return index + start
    return ir.Shift(index, ir.WindowStart(start))


def _copy(dest, operand, start, axis):
    """A loop nest copying ``operand`` into ``dest`` from ``start`` along ``axis``."""
    indices = [ir.LoopVar("ijklmnpq"[k] if k < 8 else f"i{k}") for k in range(len(operand.shape))]
    target = list(indices)
    target[axis] = _shifted(indices[axis], start)
    body = [ir.Store(dest, tuple(target), ir.Elem(operand, tuple(indices)))]
    for i, d in reversed(list(zip(indices, operand.shape))):
        body = [ir.For(i, d, body)]
    return body[0]


def _substitute(block, old, new):
    """Every read of the value ``old`` in ``block`` reads ``new``."""

    def swap(v):
        if v is old:
            return new
        for leaf in ir.leaves(v):
            for field in ("array", "value", "index"):
                if getattr(leaf, field, None) is old:
                    setattr(leaf, field, new)
        return v

    for stmt in ir.walk(block):
        if isinstance(stmt, ir.Instr):
            stmt.operands = [swap(o) for o in stmt.operands]
        elif isinstance(stmt, ir.If):
            stmt.cond, stmt.values = swap(stmt.cond), tuple(swap(v) for v in stmt.values)
            stmt.instr.operands = [swap(o) for o in stmt.instr.operands]
        elif isinstance(stmt, (ir.Assign, ir.Accum)):
            stmt.value = swap(stmt.value)
        elif isinstance(stmt, ir.Store):
            stmt.array, stmt.value = swap(stmt.array), swap(stmt.value)
            stmt.more = tuple(swap(v) for v in stmt.more)
            stmt.index = tuple(swap(i) for i in stmt.index)
