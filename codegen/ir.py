"""The kernel IR: what a generated kernel computes, between the schedule and the text.

A kernel is a list of statements (a block). Statements define or update values; values are
what statements read. The passes (``codegen/fusion.py``, ``rolling.py``, ``branches.py``,
``tiling.py``) rewrite blocks into blocks; a backend's printer (``codegen/emit.py``'s
``Emitter`` and its subclasses) turns a block into source text, choosing every name and the
spelling of every op. Nothing reads generated text back.

Values
    ``Given``    an input or a constant of the graph (a parameter, a literal, a module global)
    ``Instr``    a statement computing one graph node from operand values: ``v = op(a, b)``.
                 ``scalar``: one element of a fused loop (the op's scalar spelling);
                 ``lanes``: inside a SIMD pass (the runtime's arithmetic twin of the op);
                 ``serial``: in a rolled loop's body (the runtime's scalar twin, op record's ``serial``)
    ``Var``      a local the statements below assign, allocate or accumulate into
    ``LoopVar``  a ``For`` loop's index
    ``Elem``     ``array[index]``: one element (or row) of an array value
    ``Guard``    an element read inside a window, zero outside (the adjoint of a slice)
    ``Convert``  a scalar converted to a dtype; ``AsType``/``Full``: array forms of it

Statements
    ``Instr``    (see above); ``If``: the value of a scalar ``where`` computed by the branch the
    condition takes; ``For``: a counted loop over a block; ``Assign``/``Alloc``/``Store``/
    ``Accum``: write a ``Var`` (or an element of one); ``Note``: a comment of the compiler's.

Index expressions (``Elem``, ``Store``): a ``LoopVar``, an int, a graph dim, ``Shift`` or ``Row``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Union

from symgrad.graph import topo_order
from symgrad.ops.registry import OPS

Dim = Any  # an int or a SymPy expression over named dims (symgrad.graph's shapes)


class Value:
    """Something a statement reads."""

    dtype: str
    shape: tuple


@dataclass(eq=False)
class Given(Value):
    """An input (``symbol``) or a constant node: the kernel is given it."""

    node: Any

    @property
    def dtype(self) -> str:
        return self.node.dtype

    @property
    def shape(self) -> tuple:
        return self.node.shape


@dataclass(eq=False)
class Instr(Value):
    """``name = <node's op>(operands)``: computes graph ``node`` from ``operands`` (Values standing
    for ``node.inputs``, in order). ``name``: a fixed name (an output's); else the printer derives
    one from the op and ``naming`` (values whose names it is built from; the operands when None).
    ``note``: False for no rule comment; a str to replace it. ``dims``: the shape to print, when
    not the node's (a rolled loop's trip count for the axes that run over its steps). ``into``:
    the array (a ``Var`` the entry passes, an output's) the instruction writes its result into
    and binds its name to, instead of making an array of its own (``emit.write_into``); not a
    read: no statement binds it."""

    node: Any
    operands: list
    scalar: bool = False
    lanes: bool = False
    serial: bool = False
    name: Optional[str] = None
    naming: Optional[list] = None
    note: Any = None
    dims: Optional[tuple] = None
    into: Optional[Var] = None

    @property
    def dtype(self) -> str:
        return self.node.dtype

    @property
    def shape(self) -> tuple:
        return () if self.scalar else self.node.shape if self.dims is None else self.dims


@dataclass(eq=False)
class Var(Value):
    """A local variable. Its name: ``name`` when given (an output's); else derived from
    ``derive`` = (node, values) as an ``Instr``'s is; else the name of ``like``'s value followed
    by ``suffix``; else ``hint`` (each made unique by the printer)."""

    hint: str
    dtype: str
    shape: tuple = ()
    like: Optional[Value] = None
    suffix: str = ""
    name: Optional[str] = None
    derive: Optional[tuple] = None


@dataclass(eq=False)
class LoopVar(Value):
    """A loop's index; named ``hint``, or ``like``'s name followed by ``suffix``."""

    hint: str
    dtype: str = "int64"
    shape: tuple = ()
    like: Optional[Value] = None
    suffix: str = ""


@dataclass(eq=False)
class Apply(Value):
    """``op`` of the table applied to scalar ``operands`` inline (no node, no statement of its
    own): the product a dot-product loop accumulates."""

    op: str
    operands: tuple
    dtype: str = "float64"
    shape: tuple = ()


@dataclass(eq=False)
class Shift:
    """``index + start`` (``sign`` 1) or ``index - start`` (``sign`` -1); ``start`` is a
    ``WindowStart``."""

    index: Any
    start: Any
    sign: int = 1

    dtype = "int64"
    shape = ()


@dataclass(eq=False)
class Row:
    """``index + k``: row k of the group of rows one iteration of a loop running several rows at
    once handles (``tiling.jam``); row 0 is ``index`` itself. Unlike a ``Shift`` by an int (a
    store into a nearby row, which another iteration also writes), no other iteration reads or
    writes this row."""

    index: Any
    k: int

    dtype = "int64"
    shape = ()


@dataclass(eq=False)
class Affine:
    """``t0 + direction*index``: an earlier rolled loop's iteration read by this one."""

    t0: int
    direction: int
    index: Any


@dataclass(eq=False)
class Span:
    """``start:start + 1`` in an index: the one-long slice a rolled loop's per-step read
    ``g[t:t + 1]`` takes (the adjoint of a stack), keeping the axis."""

    start: Any


@dataclass(eq=False)
class WindowStart:
    """Where a slice's block starts along an axis: ``int`` k >= 0, ``("end", dim, k)`` for
    ``max(dim - k, 0)``, or a dim."""

    value: Any


@dataclass(eq=False)
class Elem(Value):
    array: Value
    index: tuple
    dtype: str = ""
    shape: tuple = ()

    def __post_init__(self):
        if not self.dtype:
            self.dtype = self.array.dtype


@dataclass(eq=False)
class Guard(Value):
    """``value`` where every ``(index, start, length)`` of ``conds`` holds ``start <= index <
    start + length``, else zero of ``dtype``."""

    value: Value
    conds: tuple
    dtype: str
    shape: tuple = ()


@dataclass(eq=False)
class Convert(Value):
    value: Value
    dtype: str
    shape: tuple = ()


@dataclass(eq=False)
class AsType(Value):
    value: Value
    dtype: str
    shape: tuple = ()


@dataclass(eq=False)
class Full(Value):
    """An array of ``shape`` filled with the scalar ``value``."""

    value: Value
    shape: tuple
    dtype: str = ""

    def __post_init__(self):
        if not self.dtype:
            self.dtype = self.value.dtype


@dataclass(eq=False)
class Formula(Value):
    """Integer arithmetic of a pass's own loops, inline: ``template`` (a pass's text, never user
    text) formatted with the printed ``operands`` (index values, dims, ints). The threads pass's
    block count, block start and per-block partial buffers."""

    template: str
    operands: tuple
    dtype: str = "int64"
    shape: tuple = ()


@dataclass(eq=False)
class Zero(Value):
    """The scalar 0 of ``dtype`` (a float literal)."""

    dtype: str
    shape: tuple = ()


# ---------------------------------------------------------------- statements


@dataclass(eq=False)
class Note:
    """A comment line the compiler writes (never user text)."""

    text: str


# ``note`` of a statement: None (no comment), a str (that comment), or a graph node (the rule
# comment of the derivative that built it, when the compile has rule notes)


@dataclass(eq=False)
class Assign:
    """``target = value``; the target is a ``Var`` or re-binds the name of an ``Instr`` (a
    rolled loop's carried value before the loop, a tile pass reloading a value from its buffer)."""

    target: Value
    value: Value
    note: Any = None


@dataclass(eq=False)
class Alloc:
    """``target = zeros/empty(shape)``; a scalar ``target`` of fill "zeros" is ``0.0``."""

    target: Var
    fill: str = "empty"
    note: Any = None


@dataclass(eq=False)
class Store:
    """``array[index] = value`` (``add``: ``+=``). ``more``: with ``add``, values added after
    ``value``, in order, in the same statement: ``array[index] = array[index] + value + more[0] +
    ...``, the same bits as one ``+=`` each (several rows' updates of one element, ``tiling.jam``)."""

    array: Value
    index: tuple
    value: Value
    add: bool = False
    note: Any = None  # the node whose rule comment the line carries
    more: tuple = ()


@dataclass(eq=False)
class Accum:
    """``target += value``."""

    target: Value
    value: Value
    note: Any = None


@dataclass(eq=False)
class If(Value):
    """The value of the scalar ``where`` ``instr``: ``if cond: <then> v = a else: <orelse> v = b``,
    where ``a``/``b`` are ``values`` and the blocks hold the statements only that branch reads."""

    instr: Instr
    cond: Value
    blocks: tuple
    values: tuple

    @property
    def dtype(self) -> str:
        return self.instr.dtype

    @property
    def shape(self) -> tuple:
        return self.instr.shape


@dataclass(eq=False)
class For:
    """``for var in range(start, stop): body``; ``start`` None for ``range(stop)``; ``note``: a
    comment on the ``for`` line; ``step`` for tiles. ``far``: a pass on SIMD lanes whose ops'
    arithmetic twins hold over a range only (their record's ``lanes_range``): the bool ``far``
    says an operand was beyond it, and then the loop runs again with the scalar spellings."""

    var: LoopVar
    stop: Any
    body: list = field(default_factory=list)
    start: Any = None
    step: Any = None
    note: str = ""
    far: Optional[Var] = None
    node: Any = None  # the loop node (sg.scan) it computes, for a loop's For
    parallel: bool = False  # its iterations run on the threads (numba.prange; threads.py)
    fused: Any = None  # a fused loop's row loop: its ``fusion.RowLoop`` (what threads.py reads)


@dataclass(eq=False)
class Bound:
    """``var = min(start + size, stop)``: a tile's or a row block's end (``size`` an int, or the
    Var of a loop nest's block rows)."""

    target: LoopVar
    start: LoopVar
    size: Any
    stop: Any


@dataclass(eq=False)
class TileCall:
    """``node``'s op over a tile by the runtime's compiled kernel of it (the printer's
    ``_rt.v<op>_tile``): ``buffers[0][:count] = op(buffers[0][:count], buffers[1][:count], ...)``,
    in place. A pass on SIMD lanes whose op's twin is too large to compile into every kernel."""

    node: Any
    buffers: tuple
    count: Value
    note: Any = None


Statement = Union[Instr, If, For, Assign, Alloc, Store, Accum, Note, Bound, TileCall]


# ---------------------------------------------------------------- walking


def blocks_of(stmt) -> list:
    """The blocks nested directly in ``stmt``."""
    if isinstance(stmt, For):
        return [stmt.body]
    if isinstance(stmt, If):
        return list(stmt.blocks)
    return []


def walk(block: list) -> Iterator:
    """Every statement of ``block`` and its nested blocks, in text order."""
    stack = [iter(block)]
    while stack:
        for stmt in stack[-1]:
            yield stmt
            inner = blocks_of(stmt)
            if inner:
                stack.extend(iter(b) for b in reversed(inner))
            break
        else:
            stack.pop()


def reads(stmt) -> list:
    """The values ``stmt`` reads directly (not through nested blocks)."""
    if isinstance(stmt, Instr):
        return list(stmt.operands)
    if isinstance(stmt, If):
        return [stmt.cond, *stmt.values]
    if isinstance(stmt, Assign):
        return [stmt.value]
    if isinstance(stmt, Store):
        return [stmt.array, stmt.value, *stmt.more, *stmt.index]
    if isinstance(stmt, Accum):
        return [stmt.value]
    if isinstance(stmt, For):
        return [v for v in (stmt.start, stmt.stop, stmt.step) if isinstance(v, Value)]
    if isinstance(stmt, Bound):
        return [stmt.start]
    if isinstance(stmt, TileCall):
        return [*stmt.buffers, stmt.count]
    return []


def leaves(value) -> Iterator[Value]:
    """The values an expression value is built from, itself included (``Elem`` of ``Var`` ->
    the ``Elem`` and the ``Var``, ...)."""
    stack = [value]
    while stack:
        v = stack.pop()
        yield v
        if isinstance(v, Elem):
            stack.append(v.array)
            stack.extend(i for i in v.index if isinstance(i, (Value, Shift, Affine, Span, Row)))
        elif isinstance(v, (Shift, Affine, Row)):
            stack.append(v.index)
        elif isinstance(v, Span):
            stack.append(v.start)
        elif isinstance(v, Guard):
            stack.append(v.value)
            stack.extend(c[0] for c in v.conds)
        elif isinstance(v, (Convert, AsType, Full)):
            stack.append(v.value)
        elif isinstance(v, Apply):
            stack.extend(v.operands)
        elif isinstance(v, Formula):
            stack.extend(o for o in v.operands if isinstance(o, Value))


def defines(stmt) -> list:
    """The values ``stmt`` binds."""
    if isinstance(stmt, (Instr, If)):
        return [stmt]
    if isinstance(stmt, (Assign, Alloc)):
        return [stmt.target]
    if isinstance(stmt, For):
        return [stmt.var] + ([stmt.far] if stmt.far is not None else [])
    if isinstance(stmt, Bound):
        return [stmt.target]
    return []


def verify(block: list, given: tuple = ()) -> None:
    """Check that every value is bound before a statement reads it (a value bound inside a loop
    or branch is visible after it, as in Python). Raises AssertionError naming the statement."""
    bound = {id(v) for v in given}
    for stmt in walk(block):
        # an If's branch values are bound in its blocks, which the walk visits after it
        for v in reads(stmt) if not isinstance(stmt, If) else [stmt.cond]:
            for leaf in leaves(v):
                if isinstance(leaf, (Given, Zero, Shift, Affine, Span, Row)):
                    continue
                if isinstance(leaf, (Instr, If, Var, LoopVar)) and id(leaf) not in bound:
                    raise AssertionError(f"{type(stmt).__name__} reads {leaf!r:.120} before it is bound")
        for v in defines(stmt):
            bound.add(id(v))
        if isinstance(stmt, If):
            bound.add(id(stmt.instr))
    for stmt in walk(block):
        if isinstance(stmt, If):
            for v in stmt.values:
                for leaf in leaves(v):
                    if isinstance(leaf, (Instr, If, Var, LoopVar)) and id(leaf) not in bound:
                        raise AssertionError(f"If's branch value {leaf!r:.120} is never bound")


def dump(block: list, indent: str = "") -> str:
    """A backend-free text of ``block`` for tests and debugging (op names, not spellings)."""
    names = {}

    def name(v):
        if isinstance(v, Given):
            return v.node.attrs.get("name", "const") if v.node.op == "symbol" else "const"
        if isinstance(v, Elem):
            return f"{name(v.array)}[{', '.join(name(i) for i in v.index)}]"
        if isinstance(v, Shift):
            return f"{name(v.index)}{'+' if v.sign > 0 else '-'}start"
        if isinstance(v, Row):
            return f"{name(v.index)}+{v.k}"
        if isinstance(v, Affine):
            return f"{v.t0}{v.direction:+}*{name(v.index)}"
        if isinstance(v, Span):
            return f"{name(v.start)}:+1"
        if isinstance(v, (Guard, Convert, AsType, Full)):
            return f"{type(v).__name__.lower()}({name(v.value)})"
        if isinstance(v, Zero):
            return "0"
        if isinstance(v, Formula):
            return v.template.format(*[name(o) for o in v.operands])
        if isinstance(v, int):
            return str(v)
        if not isinstance(v, Value):
            return str(v)
        if id(v) not in names:
            base = v.node.op if isinstance(v, Instr) else (v.instr.node.op if isinstance(v, If) else v.hint)
            names[id(v)] = f"%{len(names)}:{base}"
        return names[id(v)]

    lines = []
    for stmt in block:
        if isinstance(stmt, Instr):
            kind = "scalar " if stmt.scalar else ""
            into = f" into {name(stmt.into)}" if stmt.into is not None else ""
            args = ", ".join(name(o) for o in stmt.operands)
            lines.append(f"{name(stmt)} = {kind}{stmt.node.op}({args}){into}")
        elif isinstance(stmt, If):
            lines.append(f"{name(stmt)} = if {name(stmt.cond)}")
            for block_k, v in zip(stmt.blocks, stmt.values):
                lines.append(dump(block_k, indent + "  ") + f"\n{indent}  -> {name(v)}")
        elif isinstance(stmt, For):
            far = f" (again unless {name(stmt.far)})" if stmt.far is not None else ""
            threads = " (on the threads)" if stmt.parallel else ""
            lines.append(f"for {name(stmt.var)} < {name(stmt.stop)}:{far}{threads}")
            lines.append(dump(stmt.body, indent + "  "))
        elif isinstance(stmt, Assign):
            lines.append(f"{name(stmt.target)} := {name(stmt.value)}")
        elif isinstance(stmt, Alloc):
            lines.append(f"{name(stmt.target)} := {stmt.fill}{tuple(stmt.target.shape)}")
        elif isinstance(stmt, Store):
            op = "+=" if stmt.add else "="
            value = " + ".join(name(v) for v in (stmt.value, *stmt.more))
            lines.append(f"{name(stmt.array)}[{', '.join(name(i) for i in stmt.index)}] {op} {value}")
        elif isinstance(stmt, Accum):
            lines.append(f"{name(stmt.target)} += {name(stmt.value)}")
        elif isinstance(stmt, Bound):
            lines.append(f"{name(stmt.target)} := min({name(stmt.start)} + {stmt.size}, {stmt.stop})")
        elif isinstance(stmt, TileCall):
            args = ", ".join(name(b) for b in stmt.buffers)
            lines.append(f"{name(stmt.buffers[0])} := tile {stmt.node.op}({args}; {name(stmt.count)})")
        elif isinstance(stmt, Note):
            lines.append(f"# {stmt.text}")
    return "\n".join(indent + line for line in "\n".join(lines).split("\n") if line.strip())


def build(nodes: list, sections: tuple = (), value: Optional[dict] = None) -> tuple[list, dict]:
    """The straight-line IR of scheduled ``nodes``: one ``Instr`` per computed node, a ``Given``
    for inputs and constants, ``stop_gradient`` and ``custom`` as an operand's value (``value_of``),
    and a loop (a tuple-valued node, ``sg.scan``) as a ``For`` block (``build_loop``). ``sections``:
    (position, note) pairs, a ``Note`` before the node at that position. ``value``: the values
    some nodes already have (a loop body's placeholders). Returns (block, value of each node by id)."""
    value = {} if value is None else value
    block = []
    starts = dict(sections)
    wider = _wider_loops(nodes)
    for p, node in enumerate(nodes):
        if p in starts:
            block.append(Note(starts[p]))
        if id(node) in value:
            continue
        record = OPS[node.op]
        if record.tuple_valued:
            # a loop another one extends (reverse mode's forward loop, stacking the carries too)
            # runs once, as the wider one, here
            loop = wider.get(id(node), node)
            if id(loop) not in value:
                statements, value[id(loop)] = build_loop(loop, [value[id(i)] for i in loop.inputs])
                statements[-1].node = node  # the For computes the loop scheduled here
                block.extend(statements)
            value[id(node)] = value[id(loop)]
            continue
        if record.part and OPS[node.inputs[0].op].tuple_valued:
            value[id(node)] = value[id(node.inputs[0])][node.attrs["index"]]
            continue
        if record.given:
            value[id(node)] = Given(node)
            continue
        passed = OPS[node.op].value_operand(node)
        if passed is not None:  # stop_gradient, custom: an operand's value
            value[id(node)] = value[id(passed)]
            continue
        instr = Instr(node, [value[id(i)] for i in node.inputs])
        value[id(node)] = instr
        block.append(instr)
    return block, value


def build_loop(node, operands: list) -> tuple[list, list]:
    """The statements of a loop node (``sg.scan``: ``node.attrs["body"]``, a ``symgrad.loops.Body``)
    and the values of its results: the carry leaves are ``Var``s assigned before a ``For`` over the
    trip count and re-assigned at the end of each step; each ``ys`` leaf is a ``Var`` array the
    step ``Store``s into. Inside, the body graph's statements (``build`` of its schedule) read
    the carry ``Var``s, the step's ``xs[t]`` (an ``Elem``) and the constants."""
    body, length = node.attrs["body"], node.attrs["length"]
    nc, nx = len(body.carry), len(body.xs)
    init, xs, consts = operands[:nc], operands[nc : nc + nx], operands[nc + nx :]
    statements = []
    carry = [Var("carry", p.dtype, p.shape) for p in body.carry]
    for var, start in zip(carry, init):
        statements.append(Assign(var, start))
    ys = [Var("ys", y.dtype, (length,) + y.shape) for y in body.ys]
    for var in ys:
        statements.append(Alloc(var))
    t = LoopVar("t")
    seed = {id(p): v for p, v in zip(body.carry, carry)}
    seed.update({id(p): Elem(x, (t,), shape=p.shape) for p, x in zip(body.xs, xs)})
    seed.update({id(p): c for p, c in zip(body.consts, consts)})
    from_graph = [n for n in topo_order(list(body.outputs)) if id(n) not in seed]
    inner, value = build(from_graph, value=seed)
    results = [value[id(o)] for o in body.outputs]
    for var, y in zip(ys, results[nc:]):
        inner.append(Store(var, (t,), y))
    # every new carry is computed before any carry is overwritten: one that is another's old
    # value (a swap) is copied first
    updates = []
    for var, new in zip(carry, results[:nc]):
        if new is var:
            continue
        if any(new is c for c in carry):
            copy = Var("carry", var.dtype, var.shape)
            inner.append(Assign(copy, new))
            new = copy
        updates.append(Assign(var, new))
    inner.extend(updates)
    if node.attrs["reverse"]:
        loop = For(t, -1, inner, start=_minus_one(length), step=-1, note="scan, last step first", node=node)
    else:
        loop = For(t, length, inner, note="scan", node=node)
    statements.append(loop)
    return statements, carry + ys


def _wider_loops(nodes) -> dict:
    """{id(loop): a loop of the same inputs, trip count and placeholders whose body computes the
    same results and more after them}: the narrower one reads its results from the wider one."""
    groups = {}
    for n in nodes:
        if OPS[n.op].tuple_valued:
            body = n.attrs["body"]
            key = (tuple(map(id, n.inputs)), str(n.attrs["length"]), n.attrs["reverse"])
            key += (tuple(map(id, body.carry + body.xs + body.consts)),)
            groups.setdefault(key, []).append(n)
    wider = {}
    for loops in groups.values():
        for n in loops:
            outs = n.attrs["body"].outputs
            for m in loops:
                more = m.attrs["body"].outputs
                if len(more) > len(outs) and all(a is b for a, b in zip(outs, more)):
                    if id(n) not in wider or len(more) > len(wider[id(n)].attrs["body"].outputs):
                        wider[id(n)] = m
    return wider


def _minus_one(length):
    return length - 1


def sectioned(units: list, has_backward: bool) -> list:
    """Flatten ``(part, statements)`` units (part 0 forward, 1 backward, None either) into one
    block, with a ``Note`` "forward"/"backward" where the part changes when the kernel has a
    backward part."""
    block, current = [], None
    for part, stmts in units:
        if stmts and has_backward and part is not None and part != current:
            block.append(Note("backward" if part else "forward"))
            current = part
        block.extend(stmts)
    return block


def rebind(block: list, value: dict) -> None:
    """Point the straight-line statements of ``block`` (``Instr``s and the ``If``s of wheres, and
    what those hold) at the values ``value`` now gives their nodes' inputs (a pass moved some
    into loops)."""
    for stmt in walk(block):
        if isinstance(stmt, If):
            stmt.instr.operands = [current(value, i) for i in stmt.instr.node.inputs]
            stmt.cond = stmt.instr.operands[0]
            stmt.values = tuple(
                Convert(v, old.dtype) if isinstance(old, Convert) else v
                for v, old in zip(stmt.instr.operands[1:], stmt.values)
            )
        elif isinstance(stmt, Instr) and not stmt.scalar:
            stmt.operands = [current(value, i) for i in stmt.node.inputs]


def current(value: dict, node) -> Value:
    """The IR value standing for ``node`` now (``stop_gradient`` and ``custom`` are an operand's value)."""
    while OPS[node.op].value_of is not None:
        node = OPS[node.op].value_operand(node)
    return value[id(node)]
