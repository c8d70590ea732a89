"""Order and names: which statements the generated function has, in which order, called what.

How user text reaches a generated module
----------------------------------------
Only through the four functions below; nothing else interpolates a user's name, dimension,
title or note into source.

- ``identifier``: a statement or parameter name the ``Namer`` hands out (``x``, ``sin_x``,
  ``d_W``). ASCII only; unique because every such name in a module comes from one ``Namer``,
  which compares the very strings Python will see (ASCII, so NFKC cannot merge two of them).
- ``dim_identifier``: the variable of a named dimension, ``dim_n``: ``"dim_" + ascii_name(n)``,
  unique because ``ascii_name`` is injective.
- ``comment_text``: text after ``#``, on one line whatever it holds.
- ``literal``: a string literal (``repr`` of a plain ``str``).

Three namespaces, disjoint by construction, so a user's name never takes an internal one:
  * names the module writes itself: underscored (``_rt``, ``_cv``), ``dim_*``, Python's own
    names (keywords, soft keywords, builtins: Python's tables, not ours), and the few plain
    words of the module's frame in ``FRAME_NAMES`` (``np``, ``kernel``, ``more``, ...);
  * ``Namer`` names: never start with ``_`` or ``dim_`` (``identifier`` prefixes ``v_``) and
    never equal a name of the first kind (``claim`` appends ``_2``): ``sg.scalar("kernel_entry")``
    is the parameter ``kernel_entry_2``, ``"more"`` is ``more_2``;
  * user names (symbols, dims) are identifiers normalised with NFKC where they are made
    (``symgrad.graph.user_name``), so ``"ｎ"`` is ``"n"`` as in Python, and may not start
    with ``__``, the space ``ascii_name`` writes non-ASCII names into.
User names in the source stay readable: an ASCII name is written as it is unless it would take
an internal name. Keyword calls (``f(x=...)``) and error messages use the user's own names,
never the identifiers.
"""

import builtins
import bisect
import keyword

import sympy
from sympy.printing.str import StrPrinter

from symgrad.graph import topo_order
from symgrad.ops.registry import OPS

# the plain words the module's frame writes (imports, its functions, the entry's locals); the
# Namer never hands them out. tests/codegen/test_identifiers.py checks that every name a
# generated module reads or binds is a Namer name, underscored, a dim, Python's, or in here.
FRAME_NAMES = frozenset(
    {
        "np",
        "numba",
        "math",
        "kernel",
        "kernel_entry",
        "kernel_checked",
        "kernel_blocks",
        "kernel_into",
        "call",
        "more",
        "named",
        "out",
    }
)
PYTHON_NAMES = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))


def ascii_name(name):
    """An injective map of identifiers (not starting with ``__``) to ASCII identifiers: an ASCII
    name is itself; any other is ``__`` followed by its characters, ASCII letters and digits as
    they are, ``_`` as ``__`` and every other character as ``_<hex code point>_`` (``"θ"`` ->
    ``"___3b8_"``). Decoding is unambiguous and the two forms cannot meet (no user name starts
    with ``__``), so two names give one identifier only if they are one name."""
    name = str.__str__(name)
    if name.isascii():
        return name
    return "__" + "".join(
        c if c.isascii() and c.isalnum() else "__" if c == "_" else f"_{ord(c):x}_" for c in name
    )


def identifier(name):
    """A Namer base name for ``name`` (a user's name, an op name, ``d_`` + a name): an ASCII
    identifier that starts with neither ``_`` nor ``dim_``. Not injective (``_x`` and ``v__x``
    meet); ``Namer.claim`` makes the names it hands out unique."""
    ident = (
        ascii_name(name)
        if str(name).isidentifier()
        else "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in str(name))
    )
    if ident.startswith("__"):
        ident = "u" + ident[1:]  # a non-ASCII name: u_3b8_
    if not ident or ident[0].isdigit() or ident.startswith(("_", "dim_")):
        ident = "v_" + ident
    return ident


def dim_identifier(name):
    """The variable holding a named dimension's size: ``dim_n``."""
    return "dim_" + ascii_name(name)


def comment_text(text):
    """``text`` for after a ``#``: on one line (every character Python or an editor could take
    for a line break, and any other unprintable one, written as its escape), and never a PEP 263
    encoding declaration (``coding=`` on the first two lines would change how the file is read)."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str.__str__(str(text)))
    return text.replace("coding:", "coding :").replace("coding=", "coding =")


def literal(text):
    """A Python string literal of ``text``."""
    return repr(str.__str__(text))


def schedule(outputs, primary):
    """Nodes to compute, inputs before users: everything the first ``primary`` outputs
    need (the forward part), then what only the others need (the backward part)."""
    # one walk: topo_order visits the roots in turn, so the nodes the first ``primary`` need come
    # first, and end with the last of those roots to finish
    order = topo_order(list(outputs))
    roots = {id(o) for o in outputs[:primary]}
    end = max((p + 1 for p, n in enumerate(order) if id(n) in roots), default=0)
    return order[:end], order[end:]


def interleaved(nodes, first):
    """``nodes`` (inputs before users) with each node after the first ``first`` moved up
    beside the chain of those: the tangent of a forward-mode derivative computed at each step
    of the value's chain, instead of after the whole chain (a recurrence and its tangents roll
    into one loop). A node goes one step behind the last of the first nodes it reads, directly
    or through other such nodes: just after the next of the first nodes with that one's op (the
    same statement of the value's next step; just after that one itself when none follows or
    when it is an input or a constant). In a rolled loop's body the value's step, the chain
    every step waits on, then comes ahead of the tangents' work on the step before: sin(x_t+1)
    is not queued behind cos(x_t) and the products that read it. Still inputs before users;
    the first ``first`` keep their order, and so do the nodes moved to one place."""
    following, last = {}, {}
    for p in range(first - 1, -1, -1):
        if not OPS[nodes[p].op].given:  # (an input or a constant is no step of the chain)
            following[p] = last.get(nodes[p].op, p)
            last[nodes[p].op] = p
    anchor, place = {}, {}
    for p, node in enumerate(nodes):
        if p < first:
            anchor[id(node)] = place[id(node)] = p
            continue
        a = max((anchor.get(id(i), -1) for i in node.inputs), default=-1)
        anchor[id(node)] = a
        # after its inputs' places too: a node's step is never before theirs
        place[id(node)] = max([following.get(a, a)] + [place[id(i)] for i in node.inputs if id(i) in place])
    keys = sorted(range(len(nodes)), key=lambda p: (place[id(nodes[p])], p >= first, p))
    return [nodes[p] for p in keys]


class Namer:
    """Stable, unique, readable names derived from the expression (``sin_x``, ``mul_x_y``)."""

    def __init__(self):
        self.taken = set(FRAME_NAMES | PYTHON_NAMES)
        self.counts = {}

    def reserve(self, name):
        """Keep ``name`` (written by the module's frame, e.g. the entry's name) from being handed out."""
        self.taken.add(name)

    def claim(self, base):
        base = identifier(base) if base else "t"
        name = base
        k = self.counts.get(base, 1)
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.counts[base] = k
        self.taken.add(name)
        return name

    def derive(self, node, input_names):
        short = [n for n in input_names if n and len(n) <= 8 and n.isidentifier()]
        if node.inputs and len(short) == len(node.inputs) and len(node.inputs) <= 2:
            candidate = "_".join([node.op] + short)
            if len(candidate) <= 20:
                return self.claim(candidate)
        return self.claim(node.op)


class _DimPrinter(StrPrinter):
    """SymPy's text of a dim, with ``floor(p/q)`` as Python's integer division ``(p)//(q)``."""

    def _print_floor(self, expr):
        num, den = sympy.fraction(sympy.together(expr.args[0]))
        return f"(({self._print(num)})//{self._print(den)})" if den.is_Integer else f"(({num})//({den}))"


def dim_text(dim):
    """A dimension as code: ints as literals, named dims as ``dim_n`` variables."""
    if isinstance(dim, int):
        return str(dim)
    renamed = dim.xreplace({s: sympy.Symbol(dim_identifier(s.name)) for s in dim.free_symbols})
    if renamed.is_Symbol:
        return str(renamed)
    text = _DimPrinter().doprint(renamed)
    return text if isinstance(renamed, sympy.floor) else f"({text})"


def shape_text(shape):
    dims = [dim_text(d) for d in shape]
    return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"


def product_text(dims):
    if not dims:
        return "1"
    return " * ".join(dim_text(d) for d in dims)


# ---------------------------------------------------------------- rolling repeated statements

# a run must cover this many statements (and repeat this often) before it becomes a loop: numba
# compiles straight-line code at ~2 ms a statement, a loop body once
ROLL_MIN_STATEMENTS = 64
ROLL_MIN_COUNT = 4
ROLL_MAX_PERIOD = 64
_COMMUTATIVE = ("add", "mul")


class Loop:
    """``count`` repetitions of the ``period`` statements starting at position ``start``.

    ``operands[j][k]`` says where operand ``k`` of body statement ``j`` comes from, in
    iteration ``t``:
      ("fixed", node)                 the same value every time (from before the loop)
      ("slot", j2)                    statement ``j2`` of this iteration
      ("carried", j2, node)           statement ``j2`` of the previous iteration (``node`` before the first)
      ("stacked", loop, j2, t0, step) statement ``j2`` of an earlier loop's iteration ``t0 + step*t``
      ("varying", constants)          the scalar constant node ``constants[t]``
    ``stored``: the body statements whose every value is kept in an array (read after the loop
    at an iteration other than the last, or stacked by a later loop); statement ``period + e``
    is ``extra[e]``, moved here from a later loop. ``index``: body statement -> ((t0, step), ...)
    for a ``getitem`` (its array a "fixed" operand) reading index ``t0 + step*t`` along each
    leading axis in iteration ``t`` (a per-step input ``obs[t]``, a row ``xs[t]``), or a
    ``slice_grad`` writing there (the adjoint of that read)."""

    def __init__(self, start, period, count, operands):
        self.start, self.period, self.count, self.operands = start, period, count, operands
        self.stored = set()
        self.extra = []  # (later loop, its body statement, operands here): see _hoist
        self.hoisted = {}  # body statement -> ("stacked", ...) of the earlier loop that computes it
        self.index = {}

    @property
    def stop(self):
        return self.start + self.period * self.count

    def body(self, nodes):
        return nodes[self.start : self.start + self.period]

    def place(self, position):
        """(iteration, body statement) of the statement at ``position``."""
        return divmod(position - self.start, self.period)


def find_loops(nodes, rollable, barriers=(), min_statements=ROLL_MIN_STATEMENTS):
    """Runs of ``nodes`` (a schedule) that repeat one body of statements (scalars, or arrays of
    one shape in every iteration), as ``Loop``s in order; a run never crosses a position in ``barriers``. ``rollable(node)`` says whether a
    statement may be part of a loop body. Operands must move by a fixed step from one iteration
    to the next (or stay the same), so the loop does the same operations on the same operands as
    the straight-line statements, and gets the same numbers (``_hoist`` may compute a value in an
    earlier loop than the one that reads it). A loop covers at least ``min_statements``."""
    if len(nodes) < min_statements:
        return []
    position = {id(n): p for p, n in enumerate(nodes)}
    refs = [[position[id(i)] for i in n.inputs] for n in nodes]
    index_of = {p: key_index(n) for p, n in enumerate(nodes) if keyed(n) is not None}
    numbers = {}  # each kind of statement as a small int (fast to compare)
    kind = []
    for n in nodes:
        k = _kind(n) if rollable(n) else None
        kind.append(None if k is None else numbers.setdefault(k, len(numbers)))
    same_kind = {}  # kind -> the positions of statements of that kind, in order
    for q, k in enumerate(kind):
        if k is not None:
            same_kind.setdefault(k, []).append(q)
    loops = []
    p = 0
    while p < len(nodes):
        found = None
        limit = min([b for b in barriers if b > p] + [len(nodes)])
        longest = min(ROLL_MAX_PERIOD, (limit - p) // ROLL_MIN_COUNT)
        # the shortest period that repeats (its multiples repeat too, and cover no more): a
        # period is the distance to a later statement of the same kind
        later = same_kind[kind[p]] if kind[p] is not None else []
        first = bisect.bisect_right(later, p)
        for q in later[first : bisect.bisect_right(later, p + longest, first)]:
            period = q - p
            head = kind[p : p + period]
            if None in head or head != kind[p + period : p + 2 * period]:
                continue
            need = max(ROLL_MIN_COUNT, -(-min_statements // period))
            if p + need * period > limit or head != kind[p + (need - 1) * period : p + need * period]:
                continue
            loop = _run_at(nodes, refs, index_of, kind, p, period, limit, loops)
            if loop and loop.count * period >= min_statements:
                found = loop
                break
        if found is None:
            p += 1
            continue
        loops.append(found)
        p = found.stop
    _hoist(nodes, position, loops)
    _mark_stored(nodes, position, loops)
    return loops


def _kind(node):
    """What must be equal for two statements to be the same line of a loop body (for a
    ``getitem``, not its index: ``_run_at`` checks that it advances by a fixed step). A statement
    of an array value repeats with its shape (the same text computes it in every iteration)."""
    if keyed(node) is not None:
        index = key_index(node)
        shapes = (node.shape, node.inputs[0].shape)
        pattern = tuple(k[0] for k in node.attrs["key"])
        return None if index is None else (node.op, node.dtype, pattern, shapes)
    try:
        attrs = tuple(sorted(node.attrs.items()))
        hash(attrs)
    except TypeError:
        return None
    return (node.op, node.dtype, len(node.inputs), attrs, node.shape)


def keyed(node):
    """The shape the key of a ``getitem`` (its operand's) or a ``slice_grad`` (its own: the
    adjoint of a per-step read ``xs[t]`` writes row t) indexes; None for other ops."""
    if node.op == "getitem":
        return node.inputs[0].shape
    if node.op == "slice_grad":
        return node.shape
    return None


def key_index(node):
    """Where a ``getitem`` reads (a ``slice_grad`` writes), as non-negative ints along the
    leading axes: an element, or a row (the whole of the axes after them, ``xs[t]``), of
    concrete place (None: anything else, e.g. a negative index on a named dim, or a slice with
    bounds)."""
    key = node.attrs.get("key", ())
    ints = 0
    while ints < len(key) and (key[ints][0] == "i" or (node.op == "getitem" and _unit_slice(key[ints]))):
        ints += 1
    if not all(isinstance(k[1], int) for k in key[:ints]):
        return None
    if not all(k == ("s", None, None, None) for k in key[ints:]):
        return None
    key = key[:ints]
    index = []
    for k, dim in zip(key, keyed(node)):
        i = k[1]
        if i < 0:
            if not isinstance(dim, int):
                return None
            i += dim
        index.append(i)
    return tuple(index)


def _unit_slice(k):
    """Is key entry ``k`` the slice ``a:a + 1`` (``a`` >= 0): one step's block of a stack's adjoint?"""
    return (
        k[0] == "s"
        and isinstance(k[1], int)
        and isinstance(k[2], int)
        and k[1] >= 0
        and k[2] == k[1] + 1
        and k[3] in (None, 1)
    )


def _refs(refs, p, swap):
    """The schedule positions of statement ``p``'s operands (``refs``: those of every statement)."""
    return refs[p][::-1] if swap else refs[p]


def _run_at(nodes, refs, index_of, kind, start, period, limit, loops):
    """The longest valid loop of ``period`` statements starting at ``start``, or None."""
    first = [_refs(refs, start + j, False) for j in range(period)]
    second = start + period
    # where each operand comes from, and how many iterations that allows (before walking them);
    # statement by statement, so that a run that cannot be stops at its first misfit
    count = (limit - start) // period
    steps, operands = [], []
    for j in range(period):
        # the second iteration's operands in their order, else (a commutative op) swapped: which
        # operand a commutative op lists first is the graph's order of its operands, which ties
        # on a hash when their heights are equal (the first two terms of a sum)
        swaps = (False, True) if nodes[start + j].op in _COMMUTATIVE else (False,)
        for swap in swaps:
            found = _operands_at(nodes, refs, start, period, j, first[j], swap, count, loops)
            if found is not None:
                break
        if found is None:
            return None
        these_steps, specs, count = found
        steps.append(these_steps)
        operands.append(specs)
    # a getitem's index: where it starts and its step along each axis
    index = {}
    for j in range(period):
        if start + j in index_of:
            i0, i1 = index_of[start + j], index_of[second + j]
            index[j] = tuple((a, b - a) for a, b in zip(i0, i1))
    head = kind[start : start + period]
    done = 2
    swapped = [
        [False] * period,
        [_follows(nodes, refs, second + j, first[j], steps[j], 1) for j in range(period)],
    ]
    if not all(o is not None for o in swapped[1]):
        return None
    while done < count:
        base = start + done * period
        if head != kind[base : base + period]:
            break
        orders = [_follows(nodes, refs, base + j, first[j], steps[j], done) for j in range(period)]
        if None in orders or not all(
            index_of[base + j] == tuple(t0 + step * done for t0, step in index[j]) for j in index
        ):
            break
        swapped.append(orders)
        done += 1
    if done < ROLL_MIN_COUNT:
        return None
    for j, specs in enumerate(operands):
        for k, spec in enumerate(specs):
            if spec[0] == "varying":
                for t in range(done):
                    inputs = nodes[start + t * period + j].inputs
                    spec[1].append((inputs[::-1] if swapped[t][j] else inputs)[k])
    loop = Loop(start, period, done, operands)
    loop.index = index
    return loop


def _operands_at(nodes, refs, start, period, j, first, swap, count, loops):
    """(steps, specs, count) of body statement ``j``'s operands, from where they are in the
    first iteration (``first``) and the second (its operands ``swap``ped or not), or None."""
    these = _refs(refs, start + period + j, swap)
    # a scalar constant that differs from one iteration to the next (data a traced loop
    # read from a numpy array, ``0.001 * k``): read from an array of the per-step values
    steps = [
        None if r != r0 and _scalar_constant(nodes[r0]) and _scalar_constant(nodes[r], nodes[r0]) else r - r0
        for r0, r in zip(first, these)
    ]
    specs = []
    for r0, step in zip(first, steps):
        if step is None:
            specs.append(("varying", []))
            continue
        spec, count = _classify(nodes, r0, step, start, period, count, loops)
        if spec is None:
            return None
        specs.append(spec)
    return steps, specs, count


def _follows(nodes, refs, p, first, steps, t):
    """Does statement ``p`` (iteration ``t``) read what the steps predict (either operand
    order for a commutative op; a step None: a scalar constant like the first iteration's)?
    False: in order; True: swapped; None: no."""
    want = [None if s is None else r0 + s * t for r0, s in zip(first, steps)]

    def same(refs):
        return all(
            r == w if w is not None else _scalar_constant(nodes[r], nodes[r0])
            for r, w, r0 in zip(refs, want, first)
        )

    if same(_refs(refs, p, False)):
        return False
    if nodes[p].op in _COMMUTATIVE and same(_refs(refs, p, True)):
        return True
    return None


def _scalar_constant(node, like=None):
    """Is ``node`` a scalar constant (of ``like``'s dtype)?"""
    return node.op == "constant" and node.shape == () and (like is None or node.dtype == like.dtype)


def _classify(nodes, r0, step, start, period, count, loops):
    """(spec, count): where an operand comes from, and how many iterations that allows."""
    if step == 0:
        return (("fixed", nodes[r0]), count) if r0 < start else (None, 0)
    if step == period and r0 >= start:
        return ("slot", r0 - start), count
    if step == period and r0 >= start - period:
        j2 = r0 - start + period
        if nodes[r0].dtype != nodes[start + j2].dtype:
            return None, 0
        return ("carried", j2, nodes[r0]), count
    for k, loop in enumerate(loops):
        if loop.start <= r0 < loop.stop and step % loop.period == 0:
            t0, j2 = loop.place(r0)
            direction = step // loop.period
            # the iterations t whose t0 + direction*t lie inside the earlier loop
            fits = (loop.count - 1 - t0) // direction + 1 if direction > 0 else t0 // -direction + 1
            return ("stacked", k, j2, t0, direction), min(count, fits)
    return None, 0


def _hoist(nodes, position, loops):
    """Move a later loop's statements that read only an earlier loop's values of one iteration
    (a reverse sweep's local derivatives, ``cos(x_k)``) into that earlier loop, where they run
    beside the latency-bound recurrence instead of on the reverse sweep's path."""
    for reader in loops:
        moved = {}  # body statement -> its spec as a stacked read of the earlier loop
        for j, specs in enumerate(reader.operands):
            source = {(s[1], s[3], s[4]) for s in specs if s[0] == "stacked"}
            source |= {moved[s[1]][1:2] + moved[s[1]][3:] for s in specs if s[0] == "slot" and s[1] in moved}
            # float arithmetic only: it runs for every iteration of the earlier loop, and must not
            # raise for one the later loop never reads
            node = nodes[reader.start + j]
            if len(source) != 1 or not all(n.dtype in ("float32", "float64") for n in (node, *node.inputs)):
                continue
            if keyed(node) == node.shape:
                continue  # the adjoint of a read xs[t] is as large as xs: kept for every step, T times that
            k, t0, direction = source.pop()
            loop = loops[k]
            if not all(
                s[0] == "stacked"
                or (s[0] == "slot" and s[1] in moved)
                or (s[0] == "fixed" and (OPS[s[1].op].given or position[id(s[1])] < loop.start))
                for s in specs
            ):
                continue
            local = [
                ("slot", s[2]) if s[0] == "stacked" else ("slot", moved[s[1]][2]) if s[0] == "slot" else s
                for s in specs
            ]
            same = [
                e
                for e, (r, i, l) in enumerate(loop.extra)
                if _kind(nodes[r.start + i]) == _kind(node) and _same_specs(l, local)
            ]
            if not same:
                # (a gradient built in pieces may ask for one value from two reverse sweeps)
                loop.extra.append((reader, j, local))
            slot = loop.period + (same[0] if same else len(loop.extra) - 1)
            moved[j] = ("stacked", k, slot, t0, direction)
        reader.hoisted = moved


def _same_specs(a, b):
    # nodes by identity: == on graph nodes builds an ``equal`` node
    return len(a) == len(b) and all(
        x[0] == y[0]
        and len(x) == len(y)
        and all(
            u is v or (not hasattr(u, "op") and not hasattr(v, "op") and u == v) for u, v in zip(x[1:], y[1:])
        )
        for x, y in zip(a, b)
    )


def _mark_stored(nodes, position, loops):
    """Which body statements' values are kept for every iteration: those read from outside
    their loop at an iteration other than the last (the last is the loop variable itself)."""
    owner = {}
    for k, loop in enumerate(loops):
        for p in range(loop.start, loop.stop):
            owner[p] = k

    def keep(q):
        if q in owner:
            loop = loops[owner[q]]
            t, j = loop.place(q)
            if t < loop.count - 1:
                loop.stored.add(j)

    for k, loop in enumerate(loops):
        for j, specs in enumerate(loop.operands):
            for spec in [loop.hoisted[j]] if j in loop.hoisted else specs:
                if spec[0] == "stacked":
                    loops[spec[1]].stored.add(spec[2])
                elif spec[0] == "fixed":
                    keep(position[id(spec[1])])
                elif spec[0] == "carried":
                    keep(position[id(spec[2])])
        for _, _, specs in loop.extra:
            for spec in specs:
                if spec[0] == "fixed":
                    keep(position[id(spec[1])])
    for p, node in enumerate(nodes):
        if p not in owner:
            for i in node.inputs:
                keep(position[id(i)])
