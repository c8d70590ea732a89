"""Branch sinking (an IR pass): the scalar statements only one branch of a scalar ``where``
reads move inside that branch of an ``If``, so the branch the condition does not take is never
evaluated (``where(x > 0, log(x), -x)`` never calls ``log(-1)``).

Compiled kernels only: the interpreted numpy kernel evaluates whole arrays, where an ``if``
cannot pick per element. Fused loops (``codegen/fusion.py``) use ``owners`` for their members.
"""

from symgrad.ops.registry import OPS
from . import ir


def owners(nodes, users, movable, is_where):
    """id(node) -> (id(where), branch) for the ``movable`` nodes only one branch of one
    ``where`` (``is_where``) reads, directly or through other such nodes.

    A node read by anything else (the other branch, the condition, a value kept for later) is
    computed unconditionally. The innermost where owns a node. ``nodes`` in schedule order."""
    owner = {}
    for node in reversed(nodes):
        if not movable(node):
            continue
        keys = set()
        for u in users.get(id(node), ()):
            if is_where(u) and node is not u.inputs[0] and (node is u.inputs[1]) != (node is u.inputs[2]):
                keys.add((id(u), 1 if node is u.inputs[1] else 2))
            else:
                keys.add(owner.get(id(u)))
            if len(keys) > 1:
                break
        if len(keys) == 1 and None not in keys:
            owner[id(node)] = keys.pop()
    return owner


def nest(items, owner, emit, branch):
    """The statements of ``items`` ((node, statements) in schedule order) with the ones ``owner``
    assigns to a branch moved into it: ``branch(where_node, blocks)`` builds the ``If`` of a
    where that owns some (``blocks``: the two branches' statements); ``emit(node, stmts)`` gives
    a node's statements where it stays."""
    owned = {}
    for node, stmts in items:
        if id(node) in owner:
            owned.setdefault(owner[id(node)], []).append((node, stmts))

    def place(node, stmts):
        if not any((id(node), k) in owned for k in (1, 2)):
            return emit(node, stmts)
        blocks = []
        for k in (1, 2):
            block = []
            for inner, inner_stmts in owned.get((id(node), k), ()):
                block.extend(place(inner, inner_stmts))
            blocks.append(block)
        return branch(node, stmts, blocks)

    out = []
    for node, stmts in items:
        if node is None:
            out.extend(stmts)
        elif id(node) not in owner:
            out.extend(place(node, stmts))
    return out


def branch_if(instr, blocks):
    """The ``If`` computing the scalar where ``instr`` from the branch its condition takes."""
    node = instr.node
    values = []
    for k in (1, 2):
        v = instr.operands[k]
        values.append(v if node.inputs[k].dtype == node.dtype else ir.Convert(v, node.dtype))
    return ir.If(instr, instr.operands[0], tuple(blocks), tuple(values))


def plan(nodes, outputs):
    """The owner map (see ``owners``) of the scalar ``where``s among scheduled ``nodes``."""
    users = {}
    for n in nodes:
        for i in n.inputs:
            users.setdefault(id(i), []).append(n)
    output_ids = {id(o) for o in outputs}
    return owners(nodes, users, lambda n: movable(n, output_ids), lambda u: u.op == "where" and u.ndim == 0)


def movable(n, output_ids):
    """May the scalar statement of ``n`` move into a branch? Not an input, not an output, and not
    a loop (sg.scan: its For and the carries assigned before it) or one of its results."""
    record = OPS[n.op]
    return (
        n.ndim == 0
        and not record.given
        and not record.tuple_valued
        and not record.part
        and id(n) not in output_ids
    )


def _statement_nodes(block):
    """The graph nodes ``block``'s statements compute: its ``Instr``s' and its loops' (a ``For``
    of a loop node reads the loop's inputs, which therefore stay outside any branch)."""
    return [
        s.node for s in block if isinstance(s, ir.Instr) or (isinstance(s, ir.For) and s.node is not None)
    ]


def sink(block, outputs, owner=None):
    """``block`` (straight-line ``Instr``s, and loops' ``For``s, which stay where they are) with
    the scalar statements one branch of a scalar ``where`` reads moved into that branch
    (``owner``: ``plan``'s map, computed when None)."""
    if owner is None:
        owner = plan(_statement_nodes(block), outputs)
    if not owner:
        return block
    return nest(
        [(s.node, [s]) if isinstance(s, ir.Instr) else (None, [s]) for s in block],
        owner,
        lambda node, stmts: stmts,
        lambda node, stmts, blocks: [branch_if(stmts[0], blocks)],
    )


def sink_in_loops(block):
    """``block`` with ``sink`` applied inside the body of every loop's ``For`` (``sg.scan``), at
    every depth: the values the body's carry updates and stacked stores read are its outputs."""
    for stmt in ir.walk(block):
        if isinstance(stmt, ir.For) and stmt.node is not None and OPS[stmt.node.op].tuple_valued:
            kept = [
                leaf.node
                for s in stmt.body
                if isinstance(s, (ir.Assign, ir.Store))
                for v in ir.reads(s)
                for leaf in ir.leaves(v)
                if isinstance(leaf, ir.Instr)
            ]
            stmt.body[:] = sink(stmt.body, kept)
    return block
