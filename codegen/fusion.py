"""Loop fusion for the numba backend.

Elementwise chains of one shape (and the sums that consume them, over any axes)
become one explicit ``for`` loop nest over the elements, computing each node as a
scalar temporary; only values used outside the loop (outputs, operands of matmul,
partial reductions, ...) are written to arrays. Operands of another shape are
read with index arithmetic: broadcast axes read index 0, ``broadcast_to`` is
read through, and the adjoint of slicing (``slice_grad``: zeros with a block
written in) is read through as ``g[i - start] if start <= i < stop else 0``, so
neither ever allocates.

Planning (``plan``) groups nodes; emission (``fused_body``) orders the groups and
the remaining single statements (which keep the per-op lowering) so every value
is computed before it is read. A group is convex by construction: no path leaves
it and comes back, checked again by the ordering, which falls back to the
unfused statements if it ever finds a cycle.

Disable with ``SYMGRAD_FUSION=0`` in the environment (the per-op lowering is
then used everywhere, as the numpy backend does).
"""

import heapq
import os

from symgrad.graph import dims_equal
from .emit import _BINARY, _UNARY
from .schedule import dim_text, shape_text

_ARITHMETIC = ("add", "sub", "mul", "div", "maximum", "minimum", "arctan2")

_COMPARE = {"less": "<", "less_equal": "<=", "greater": ">", "greater_equal": ">=",
            "equal": "==", "not_equal": "!="}

# scalar spellings; numba runs numpy ufuncs on scalars with the array loops' semantics
SCALAR = {
    **_UNARY, **{k: v for k, v in _BINARY.items() if k in _ARITHMETIC},
    "logical_not": "not {0}", "pow": "np.power({0}, {1})", "logical_and": "{0} and {1}",
    "logical_or": "{0} or {1}", "where": "{1} if {0} else {2}",
}
SCALAR.update({op: "{0} " + sym + " {1}" for op, sym in _COMPARE.items()})
_BOOL_OPS = set(_COMPARE) | {"logical_and", "logical_or", "logical_not", "isfinite", "where"}
_FLOATS = ("float32", "float64")


def enabled():
    return os.environ.get("SYMGRAD_FUSION", "1") not in ("0", "false", "no", "off")


def _elementwise(node):
    """Can ``node`` be computed element by element as a scalar temporary?"""
    if node.ndim == 0:
        return False
    if node.op == "cast":
        return node.dtype in _FLOATS and node.inputs[0].dtype in _FLOATS
    if node.op not in SCALAR:
        return False
    # narrow ints promote differently as scalars than as arrays: keep them out
    if node.dtype in _FLOATS and node.op not in _BOOL_OPS - {"where"}:
        operands = node.inputs[1:] if node.op == "where" else node.inputs
        return all(i.dtype in _FLOATS + ("int64",) for i in operands)
    if node.dtype == "bool":
        return node.op in _BOOL_OPS and all(i.dtype in _FLOATS + ("int64", "bool") for i in node.inputs)
    return False


def _fusable_sum(node):
    """A sum (over any axes) the loop computing its operand can accumulate as it goes."""
    return node.op == "sum" and node.dtype in _FLOATS and node.inputs[0].dtype == node.dtype


def _same_shape(a, b):
    return len(a) == len(b) and all(dims_equal(x, y) for x, y in zip(a, b))


def _slice_window(node):
    """For a ``slice_grad`` read through: per axis (start code, length dim) or None when the key is
    not plain unit-step slices."""
    key = node.attrs["key"]
    g = node.inputs[0]
    if len(key) != node.ndim or g.ndim != node.ndim:
        return None
    window = []
    for axis, k in enumerate(key):
        if k[0] != "s" or k[3] not in (None, 1):
            return None
        start, stop, dim = k[1], k[2], node.shape[axis]
        if start is None and stop is None:
            window.append(None)
            continue
        if start is None:
            code = "0"
        elif isinstance(start, int) and start >= 0:
            # past the end the block is empty and never read, so no clamp is needed
            code = str(start)
        elif isinstance(start, int):
            code = f"max({dim_text(dim)} - {-start}, 0)"
        else:
            code = dim_text(start)
        window.append((code, g.shape[axis]))
    return window


def transparent(node):
    """Nodes a fused loop reads through instead of reading their (allocated) value."""
    if node.op == "broadcast_to":
        return True
    if node.op == "slice_grad":
        return node.dtype in _FLOATS and _slice_window(node) is not None
    return False


class Group:
    def __init__(self, gid, shape):
        self.gid = gid
        self.shape = shape
        self.members = []      # elementwise nodes, in schedule order
        self.sums = []         # sums of members (over any axes), accumulated by the loop
        self.ext = set()       # groups (raw ids) that some member's external operand depends on
        self.scatter = []      # (array node, [slice_grad of a member]): accumulated by the loop
        self.absorbed = set()  # ids of the nodes those accumulations replace

    @property
    def size(self):
        return len(self.members) + len(self.sums)


class Plan:
    """Which node is computed in which fused loop."""

    def __init__(self, nodes, outputs):
        self.order = {id(n): k for k, n in enumerate(nodes)}
        self.groups = {}
        self.group_of = {}     # id(node) -> gid (members and sums)
        self.parent = {}
        reach = {}             # id(node) -> frozenset of raw gids the node depends on
        empty = frozenset()
        for node in nodes:
            deps = empty
            for i in node.inputs:
                r = reach.get(id(i), empty)
                if r:
                    deps = deps | r if deps else r
            gid = None
            if _elementwise(node):
                gid = self._join(node, reach)
            elif _fusable_sum(node):
                src = node.inputs[0]
                g = self.group_of.get(id(src))
                if g is not None and not self._is_sum(src):
                    gid = self.find(g)
                    self.groups[gid].sums.append(node)
                    self.group_of[id(node)] = gid
            if gid is not None:
                deps = deps | {gid}
            reach[id(node)] = deps
        self.output_ids = {id(o) for o in outputs}
        self.users = {}
        for node in nodes:
            for i in node.inputs:
                self.users.setdefault(id(i), []).append(node)
        self._fold_scatters(nodes)
        # a loop of one op with nothing read through gains nothing: leave it to the per-op lowering
        for gid in list(self.groups):
            g = self.groups[gid]
            if self.find(gid) != gid:
                del self.groups[gid]
                continue
            through = any(transparent(i) for m in g.members for i in m.inputs)
            if g.size + len(g.scatter) < 2 and not through:
                self.group_of = {k: v for k, v in self.group_of.items() if self.find(v) != gid}
                del self.groups[gid]
        self.group_of = {k: self.find(v) for k, v in self.group_of.items()}

    def _source_group(self, s):
        """The group whose loop computes ``s``'s block, for a slice_grad read through; else None."""
        if s.op != "slice_grad" or not transparent(s):
            return None
        g = s.inputs[0]
        if not self._member(g):
            return None
        return self.find(self.group_of[id(g)])

    def _fold_scatters(self, nodes):
        """Gradients of slices added up (``d_x = slice_grad(a) + slice_grad(b)``) are accumulated
        by the loop computing ``a`` and ``b``: ``d_x[i + start] += a`` into one zeroed array,
        instead of a second loop over two stored temporaries."""
        def only_used_by(node, ids):
            users = self.users.get(id(node), ())
            return id(node) not in self.output_ids and users and all(id(u) in ids for u in users)

        for hid in list(self.groups):
            if self.find(hid) != hid:
                continue
            h = self.groups[hid]
            if h.sums or any(m.op != "add" for m in h.members):
                continue
            ids = {id(m) for m in h.members}
            leaves, sources = [], set()
            for m in h.members:
                for i in m.inputs:
                    if id(i) in ids:
                        continue
                    sources.add(self._source_group(i))
                    leaves.append(i)
            roots = [m for m in h.members if not (only_used_by(m, ids) and len(self.users[id(m)]) == 1)]
            if (len(sources) != 1 or None in sources or len(roots) != 1
                    or not all(only_used_by(s, ids) for s in leaves)):
                continue
            (gid,) = sources
            self.groups[gid].scatter.append((roots[0], leaves))
            for n in h.members + leaves:
                self.group_of[id(n)] = gid
                self.groups[gid].absorbed.add(id(n))
            self.parent[hid] = gid
            del self.groups[hid]
        # a lone gradient of a slice: the loop writes its block into a zeroed array
        for s in nodes:
            gid = self._source_group(s)
            if gid is not None and id(s) not in self.group_of:
                self.groups[gid].scatter.append((s, [s]))
                self.group_of[id(s)] = gid
                self.groups[gid].absorbed.add(id(s))

    def find(self, gid):
        while self.parent[gid] != gid:
            self.parent[gid] = self.parent[self.parent[gid]]
            gid = self.parent[gid]
        return gid

    def _is_sum(self, node):
        return node.op == "sum"

    def reads(self, node):
        """The nodes whose values ``node`` reads inside a loop (through transparent nodes)."""
        out = []
        stack = list(node.inputs)
        while stack:
            i = stack.pop()
            if self.see_through(i):
                stack.extend(i.inputs)
            else:
                out.append(i)
        return out

    def see_through(self, node):
        """Is ``node`` read through (never built) by the loops that read it?"""
        return transparent(node) and id(node) not in self.group_of

    def _member(self, node):
        gid = self.group_of.get(id(node))
        return gid is not None and not self._is_sum(node) and id(node) not in self.groups[self.find(gid)].absorbed

    def _closure(self, raw):
        """Groups reachable from the raw gids ``raw`` through the groups' external operands."""
        seen = set()
        stack = [self.find(g) for g in raw]
        while stack:
            g = stack.pop()
            if g in seen:
                continue
            seen.add(g)
            stack.extend(self.find(h) for h in self.groups[g].ext)
        return seen

    def _join(self, node, reach):
        candidates = []
        for i in node.inputs:
            g = self.group_of.get(id(i))
            if g is not None and not self._is_sum(i) and _same_shape(i.shape, node.shape):
                g = self.find(g)
                if g not in candidates:
                    candidates.append(g)
        def external(merge):
            return [j for j in self.reads(node)
                    if not (self._member(j) and self.find(self.group_of[id(j)]) in merge)]

        options = [candidates] + ([[g] for g in candidates] if len(candidates) > 1 else [])
        for merge in options:
            if not merge:
                continue
            ext_reach = set()
            for j in external(merge):
                ext_reach |= reach.get(id(j), frozenset())
            blocked = self._closure(ext_reach)
            for g in merge:
                blocked |= self._closure(self.groups[g].ext)
            if blocked.isdisjoint(merge):
                root = merge[0]
                for g in merge[1:]:
                    self.parent[g] = root
                    self.groups[root].members += self.groups[g].members
                    self.groups[root].sums += self.groups[g].sums
                    self.groups[root].ext |= self.groups[g].ext
                self.groups[root].ext |= ext_reach
                self.groups[root].members.append(node)
                self.group_of[id(node)] = root
                return root
        gid = len(self.parent)
        self.parent[gid] = gid
        group = self.groups[gid] = Group(gid, node.shape)
        group.members.append(node)
        for j in external([]):
            group.ext |= reach.get(id(j), frozenset())
        self.group_of[id(node)] = gid
        return gid

    def units(self, nodes, backward_ids):
        """Single nodes and groups in an order where every value is computed before it is read,
        the forward part first; None if the groups are not orderable (never expected)."""
        unit_of = {}
        units = []
        for node in nodes:
            gid = self.group_of.get(id(node))
            key = ("g", gid) if gid is not None else ("n", id(node))
            if key not in unit_of:
                unit_of[key] = len(units)
                units.append([key, []])
            units[unit_of[key]][1].append(node)
        index_of = {}
        for u, (key, members) in enumerate(units):
            for n in members:
                index_of[id(n)] = u
        deps = [set() for _ in units]
        users = [set() for _ in units]
        for u, (key, members) in enumerate(units):
            for n in members:
                sources = self.reads(n) if key[0] == "g" and n.op != "sum" else n.inputs
                for i in sources:
                    v = index_of.get(id(i))
                    if v is not None and v != u:
                        deps[u].add(v)
                        users[v].add(u)

        def section(u):
            # a loop that starts in the forward part is shown there, its backward ops inside it
            return 0 if any(id(n) not in backward_ids for n in units[u][1]) else 1

        pending = [len(d) for d in deps]
        ready = [(section(u), u) for u in range(len(units)) if not pending[u]]
        heapq.heapify(ready)
        ordered = []
        while ready:
            _, u = heapq.heappop(ready)
            ordered.append((units[u][0], units[u][1], section(u)))
            for v in users[u]:
                pending[v] -= 1
                if not pending[v]:
                    heapq.heappush(ready, (section(v), v))
        if len(ordered) != len(units):
            return None
        return ordered


def fused_body(em, forward, backward, out_name_of, outputs):
    """The kernel body with fused loops (``em`` is the emitter), or None to use the plain one."""
    nodes = list(forward) + list(backward)
    plan = Plan(nodes, outputs)
    if not plan.groups:
        return None
    backward_ids = {id(n) for n in backward}
    ordered = plan.units(nodes, backward_ids)
    if ordered is None:
        return None
    users = {}
    for n in nodes:
        for i in n.inputs:
            users.setdefault(id(i), []).append(n)
    output_ids = {id(o) for o in outputs}

    def read_only_in_loops(node):
        # a transparent node no one else reads is never built
        return (plan.see_through(node) and id(node) not in output_ids
                and all(plan._member(u) for u in users.get(id(node), ())))

    body = []
    current = None
    count = 0
    for key, members, part in ordered:
        if key[0] == "n":
            if read_only_in_loops(members[0]):
                continue
            lines = em.statement(members[0], out_name_of)
        else:
            count += 1
            lines = _loop(em, plan, plan.groups[key[1]], count, out_name_of, output_ids, users, backward_ids)
        if lines and backward and part != current:
            body.append("# backward" if part else "# forward")
            current = part
        body.extend(lines)
    return body


def _loop(em, plan, group, number, out_name_of, output_ids, users, backward_ids):
    shape = group.shape
    rank = len(shape)
    # an axis of length 1 needs no loop: its index is 0
    index = ["0" if isinstance(d, int) and d == 1 else i for i, d in zip(em.loop_indices(rank), shape)]
    gid = group.gid
    members = sorted(group.members + group.sums, key=lambda n: plan.order[id(n)])
    scatter_of = {}        # id(member) -> [(array name, window)] its value is added into
    for root, leaves in group.scatter:
        name = out_name_of.get(id(root)) or em.namer.derive(root, [])
        em.names[id(root)] = name
        for s in leaves:
            scatter_of.setdefault(id(s.inputs[0]), []).append((name, _slice_window(s)))
    scalar = {}            # id(member) -> its scalar temporary
    pre, loop, post = [], [], []
    for root, leaves in group.scatter:
        pre.append(f"{em.names[id(root)]} = np.zeros({shape_text(root.shape)}, dtype={em.np_dtype(root.dtype)})"
                   f"  # gradients of slices, accumulated by the loop")

    def read(node, idx):
        """Code reading ``node``'s element at ``idx`` (index code per axis of ``node``)."""
        if id(node) in scalar:
            return scalar[id(node)]
        if node.ndim == 0:
            return em.ref(node)
        if plan.see_through(node):
            src = node.inputs[0]
            if node.op == "broadcast_to":
                lead = node.ndim - src.ndim
                sub = ["0" if isinstance(d, int) and d == 1 and not (isinstance(o, int) and o == 1) else idx[lead + k]
                       for k, (d, o) in enumerate(zip(src.shape, node.shape[lead:]))]
                return read(src, sub)
            window = _slice_window(node)
            conds, sub = [], []
            for k, w in enumerate(window):
                if w is None:
                    sub.append(idx[k])
                    continue
                start, length = w
                if start == "0":
                    conds.append(f"{idx[k]} < {dim_text(length)}")
                    sub.append(idx[k])
                else:
                    conds.append(f"{start} <= {idx[k]} < {start} + {dim_text(length)}")
                    sub.append(f"{idx[k]} - {start}")
            zero = "np.float32(0.0)" if node.dtype == "float32" else "0.0"
            inner = read(src, sub)
            return f"({inner} if {' and '.join(conds)} else {zero})" if conds else inner
        return f"{em.ref(node)}[{', '.join(idx)}]"

    def operand(node):
        """``node`` read at the loop's element, for an input of a member of this loop's shape."""
        lead = rank - node.ndim
        idx = ["0" if isinstance(d, int) and d == 1 and not (isinstance(o, int) and o == 1) else index[lead + k]
               for k, (d, o) in enumerate(zip(node.shape, shape[lead:]))]
        return read(node, idx)

    def short(node):
        name = scalar.get(id(node)) or em.names.get(id(node)) or ""
        return name[:-4] if name.endswith("_arr") else name

    n_ops = len(group.members)
    sums = len(group.sums)
    what = f"{n_ops} elementwise op{'s' if n_ops != 1 else ''}"
    if sums:
        what += f" and {sums} sum{'s' if sums != 1 else ''}"
    parts = {id(n) in backward_ids for n in members}
    kind = "forward and backward" if len(parts) == 2 else ("backward" if True in parts else "forward")
    head = f"# fused loop {number} ({kind}): {what} over {shape_text(shape)} elements"
    section = None
    for node in members:
        part = id(node) in backward_ids
        if len(parts) == 2 and part != section:
            loop.append("# backward" if part else "# forward")
            section = part
        comment = f"  # {node.note}" if node.note else ""
        if node.op == "sum":
            src = scalar[id(node.inputs[0])]
            name = out_name_of.get(id(node)) or em.namer.derive(node, [src])
            em.names[id(node)] = name
            axes = node.attrs["axes"]
            if len(axes) < rank:
                # a partial sum: each element adds into its slot of the (zeroed) result
                kept = [("0" if k in axes else i) for k, i in enumerate(index)
                        if node.attrs["keepdims"] or k not in axes]
                pre.append(f"{name} = np.zeros({shape_text(node.shape)}, dtype={em.np_dtype(node.dtype)})")
                loop.append(f"{name}[{', '.join(kept)}] += {src}{comment}")
            elif node.dtype == "float64" and not node.attrs["keepdims"]:
                pre.append(f"{name} = 0.0")
                loop.append(f"{name} += {src}{comment}")
            else:
                acc = em.namer.claim(f"{name}_acc")
                pre.append(f"{acc} = 0.0  # float32 sums accumulate in float64" if node.dtype == "float32"
                           else f"{acc} = 0.0")
                loop.append(f"{acc} += {src}{comment}")
                value = f"np.{node.dtype}({acc})" if node.dtype == "float32" else acc
                post.append(f"{name} = np.full({shape_text(node.shape)}, {value})" if node.ndim
                            else f"{name} = {value}")
            continue
        args = [operand(i) for i in node.inputs]
        name = em.namer.derive(node, [short(i) for i in node.inputs])
        if node.op == "cast":
            code = f"np.{node.dtype}({args[0]})"
        else:
            code = SCALAR[node.op].format(*args)
            if node.dtype == "float32" and any(i.dtype != "float32" for i in node.inputs
                                               if not (node.op == "where" and i is node.inputs[0])):
                code = f"np.float32({code})"
        scalar[id(node)] = name
        loop.append(f"{name} = {code}{comment}")
        outside = id(node) in output_ids or any(plan.group_of.get(id(u)) != gid
                                                for u in users.get(id(node), ()))
        if outside:
            array = out_name_of.get(id(node)) or em.namer.claim(f"{name}_arr")
            em.names[id(node)] = array
            pre.append(f"{array} = np.empty({shape_text(shape)}, dtype={em.np_dtype(node.dtype)})")
            loop.append(f"{array}[{', '.join(index)}] = {name}")
        for array, window in scatter_of.get(id(node), ()):
            at = [i if w is None or w[0] == "0" else f"{i} + {w[0]}" for i, w in zip(index, window)]
            loop.append(f"{array}[{', '.join(at)}] += {name}")
    lines = [head] + pre
    indent = ""
    for i, d in zip(index, shape):
        if i != "0":
            lines.append(f"{indent}for {i} in range({dim_text(d)}):")
            indent += "    "
    lines += [indent + line for line in loop]
    return lines + post
