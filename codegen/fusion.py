"""Loop fusion for the numba backend.

Elementwise chains of one shape (and the sums that consume them, over any axes)
become one explicit ``for`` loop nest over the elements, computing each node as a
scalar temporary; only values used outside the loop (outputs, operands of matmul,
partial reductions, ...) are written to arrays. Operands of another shape are
read with index arithmetic: broadcast axes read index 0, ``broadcast_to`` is
read through, and the adjoint of slicing (``slice_grad``: zeros with a block
written in) is read through as ``g[i - start] if start <= i < stop else 0``, so
neither ever allocates.

Inside a loop, the members that only one branch of a ``where`` reads are computed
in that branch of an ``if c: ... else: ...`` (``emit.branch_owners``), so the
branch the condition does not take is never evaluated for that element.

Planning (``plan``) groups nodes; emission (``fused_body``) orders the groups and
the remaining single statements (which keep the per-op lowering) so every value
is computed before it is read. A group is convex by construction: no path leaves
it and comes back, checked again by the ordering, which falls back to the
unfused statements if it ever finds a cycle.

Disable with ``SYMGRAD_FUSION=0`` in the environment (the per-op lowering is
then used everywhere, as the numpy backend does).
"""

import heapq
import math
import os
from dataclasses import dataclass, field

from symgrad.graph import dims_equal
from symgrad.ops.registry import OPS
from . import branches, ir, tiling
from .schedule import shape_text

# scalar spellings, from the op table; numba runs numpy ufuncs on scalars with the array loops' semantics
SCALAR = {
    name: op.scalar or op.lower for name, op in OPS.items() if op.elementwise and (op.scalar or op.lower)
}
# ops with a bool result, and where: the ones whose operands may be bool
_BOOL_OPS = {name for name, op in OPS.items() if op.boolean} | {"where"}
_FLOATS = ("float32", "float64")


def enabled():
    return os.environ.get("SYMGRAD_FUSION", "1") not in ("0", "false", "no", "off")


def by_element(node):
    """Can ``node`` be computed element by element as a scalar temporary (a member of a fused loop)?"""
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


# Products with the rows of a 2-D array A (n, d) are computed by the loop over its rows, each row
# read once while in cache: ``A @ v`` as a dot product per row, ``A.T @ r`` (or ``r @ A``) as
# ``g[j] += r_i * A[i, j]``. Measured on logreg value and grad (X of 16e6 elements) against numpy
# by hand (BLAS gemv for both products): d = 16 fused 0.4x, d = 64 0.3x, d = 256 0.5x, d = 784
# 1.4x (the inner loops are plain loops; gemv's blocking wins on long rows). So a concrete d up
# to 256 is fused; a symbolic d is fused too (feature counts of such models are usually small,
# and the unfused gradient builds the masked copy ``where(mask, X, 0)``: at d = 784 it takes 10x
# the fused loop's time).
_ROW_PRODUCT_MAX_D = 256


def _inner_dim_fits(d):
    return not isinstance(d, int) or d <= _ROW_PRODUCT_MAX_D


def _matvec(node):
    """``a @ v`` with ``a`` 2-D and ``v`` 1-D (float64): the loop over a's rows can compute it."""
    if node.op != "matmul" or node.dtype != "float64" or _row_product(node) is not None:
        return False
    a, v = node.inputs
    return (
        a.ndim == 2
        and v.ndim == 1
        and a.op != "transpose"
        and a.dtype == v.dtype == "float64"
        and _inner_dim_fits(a.shape[1])
    )


def _transposed_operands(nodes):
    """Ids of the 2-D arrays some ``A.T @ r`` reads (A itself or its elementwise operands).

    A product ``a @ v`` is moved into a loop only when ``a`` is one of them: the gain is reading
    ``a`` once for both products; alone, BLAS gemv computes it at least as fast."""
    found = set()
    for node in nodes:
        spelled = _row_product(node)
        stack = [spelled[0]] if spelled else []
        while stack:
            n = stack.pop()
            if n.ndim == 2 and id(n) not in found:
                found.add(id(n))
                if by_element(n) or n.op == "broadcast_to":
                    stack.extend(n.inputs)
    return found


def _row_product(node):
    """(A, r, view) when ``node`` is ``transpose(A) @ r`` (``view`` is the transpose) or
    ``r @ A`` (``view`` None), A 2-D and r 1-D, float64; else None."""
    if node.op != "matmul" or node.dtype != "float64" or node.ndim != 1:
        return None
    p, q = node.inputs
    if p.op == "transpose" and p.ndim == 2 and q.ndim == 1:
        a, r, view = p.inputs[0], q, p
    elif p.ndim == 1 and q.ndim == 2:
        a, r, view = q, p, None
    else:
        return None
    if a.dtype != "float64" or r.dtype != "float64" or not dims_equal(a.shape[0], r.shape[0]):
        return None
    return (a, r, view) if _inner_dim_fits(a.shape[1]) else None


def _slice_window(node):
    """For a ``slice_grad`` read through: per axis (start, length dim) or None when the key is
    not plain unit-step slices; the start is an int, a dim, or ("end", dim, k) for max(dim - k, 0)."""
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
            code = 0
        elif isinstance(start, int) and start >= 0:
            # past the end the block is empty and never read, so no clamp is needed
            code = start
        elif isinstance(start, int):
            code = ("end", dim, -start)  # max(dim - k, 0)
        else:
            code = start
        window.append((code, g.shape[axis]))
    return window


_MAX_CARRIED = 4  # at most this many rows' contributions wait in scalars (carry_scatters)


def _unit_shift(i, index):
    """The int s of a store index ``index + s`` (``index`` itself: 0), else None."""
    if i is index:
        return 0
    if isinstance(i, ir.Shift) and i.index is index and i.sign == 1 and isinstance(i.start, ir.WindowStart):
        s = i.start.value
        return s if isinstance(s, int) and s >= 0 else None
    return None


def _reads_array(block, array):
    """Does a statement of ``block`` read an element of ``array`` (other than a store into it)?"""
    for stmt in ir.walk(block):
        values = [stmt.value, *stmt.more, *stmt.index] if isinstance(stmt, ir.Store) else ir.reads(stmt)
        if any(leaf is array for v in values for leaf in ir.leaves(v)):
            return True
    return False


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
        self.members = []  # elementwise nodes, in schedule order
        self.sums = []  # sums of members (over any axes), accumulated by the loop
        self.ext = set()  # groups (raw ids) that some member's external operand depends on
        self.scatter = []  # (array node, [slice_grad of a member]): accumulated by the loop
        self.absorbed = set()  # ids of the nodes those accumulations replace
        self.row_products = []  # (A.T @ r node, A, r, [A's nodes computed inline]): accumulated

    @property
    def size(self):
        return len(self.members) + len(self.sums) + len(self.row_products)


class Plan:
    """Which node is computed in which fused loop."""

    def __init__(self, nodes, outputs):
        self.order = {id(n): k for k, n in enumerate(nodes)}
        self.groups = {}
        self.group_of = {}  # id(node) -> gid (members and sums)
        self.parent = {}
        reach = {}  # id(node) -> frozenset of raw gids the node depends on
        empty = frozenset()
        paired = _transposed_operands(nodes)
        # what a loop (sg.scan) reads stays a statement of its own: its For reads that value
        self.loop_read = {id(i) for n in nodes if OPS[n.op].tuple_valued for i in n.inputs}
        for node in nodes:
            deps = empty
            for i in node.inputs:
                r = reach.get(id(i), empty)
                if r:
                    deps = deps | r if deps else r
            gid = None
            if id(node) in self.loop_read:
                pass
            elif by_element(node):
                gid = self._join(node, reach)
            elif _matvec(node) and id(node.inputs[0]) in paired:
                # a loop of its own over a's rows, which the elementwise ops reading it join
                gid = self._new_group(node, reach)
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
        self._fold_row_products(nodes, reach)
        self._sink_into_readers(nodes, reach)
        # a loop of one op with nothing read through gains nothing: leave it to the per-op lowering,
        # unless it computes an output (the loop writes an array the kernel allocates, on huge pages
        # when large: see memory_kernels; numba's own array expression faults on every 4 KiB page)
        for gid in list(self.groups):
            g = self.groups[gid]
            if self.find(gid) != gid:
                del self.groups[gid]
                continue
            through = any(transparent(i) for m in g.members for i in m.inputs)
            returned = any(id(m) in self.output_ids for m in g.members)
            if g.size + len(g.scatter) < 2 and not through and not returned:
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
            if (
                len(sources) != 1
                or None in sources
                or len(roots) != 1
                or not all(only_used_by(s, ids) for s in leaves)
            ):
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

    def _fold_row_products(self, nodes, reach):
        """``A.T @ r`` (or ``r @ A``) with ``r`` computed by a loop over A's rows is accumulated by
        that loop, ``g[j] += r_i * A[i, j]``, so A is read once per call. A may be an array computed
        before the loop or an elementwise expression of such arrays and of the loop's values
        (``where(mask_i, X, 0)``, the NaN-safe matmul adjoint), computed inline per row."""
        by_id = {id(n): n for n in nodes}
        for node in nodes:
            spelled = _row_product(node)
            if spelled is None or id(node) in self.group_of:
                continue
            a, r, view = spelled
            if not self._member(r):
                continue
            gid = self.find(self.group_of[id(r)])
            inline = self._row_expression(a, gid, reach)
            if inline is None or self._reaches_group(node, gid):
                continue
            absorbed = set(inline) | {id(node)}
            if view is not None and all(u is node for u in self.users.get(id(view), ())):
                absorbed.add(id(view))
            elif inline:
                continue  # the transpose of a value the loop computes is read by others
            if any(
                id(n) in self.output_ids or not all(id(u) in absorbed for u in self.users.get(id(n), ()))
                for n in (by_id[k] for k in inline)
            ):
                continue  # a value computed inline is read elsewhere too: keep it an array
            for k in absorbed:
                old = self.group_of.get(k)
                if old is not None and self.find(old) != gid:
                    other = self.groups[self.find(old)]
                    other.members = [m for m in other.members if id(m) != k]
                self.group_of[k] = gid
            group = self.groups[gid]
            group.absorbed |= absorbed
            group.row_products.append(
                (node, a, r, sorted((by_id[k] for k in inline), key=lambda n: self.order[id(n)]))
            )

    def _sink_into_readers(self, nodes, reach):
        """Move the members of a loop that only a later loop of their shape reads into that loop,
        when what they read from their own loop is stored anyway: the later loop computes them
        from those arrays (the backward's ``1 - tanh(x)^2`` from the stored ``tanh(x)``) instead
        of reading an array of them the first loop writes. Each value is still computed once; an
        array written and read again is gone, and the later loop reads at most one full-size
        array it did not read before."""
        for node in reversed(nodes):
            if not self._movable(node):
                continue
            home = self.find(self.group_of[id(node)])
            readers = {
                self.find(self.group_of[id(u)]) if id(u) in self.group_of else None
                for u in self.users.get(id(node), ())
            }
            if len(readers) != 1 or None in readers or home in readers:
                continue
            (gid,) = readers
            group = self.groups[gid]
            if not _same_shape(group.shape, node.shape) or not all(
                self._member(u) and by_element(u) and _same_shape(u.shape, node.shape)
                for u in self.users[id(node)]
            ):
                continue
            moved = self._sunk_with(node, home, gid)
            if moved is None:
                continue
            taken = {id(n) for n in moved}
            old = self.groups[home]
            old.members = [m for m in old.members if id(m) not in taken]
            for n in moved:
                self.group_of[id(n)] = gid
                for j in self.reads(n):
                    group.ext |= reach.get(id(j), frozenset())
            group.members = sorted(group.members + moved, key=lambda n: self.order[id(n)])

    def _movable(self, node):
        return (
            self._member(node)
            and by_element(node)
            and id(node) not in self.output_ids
            and id(node) not in self.loop_read
        )

    def _sunk_with(self, node, home, gid):
        """The members of loop ``home`` that move into loop ``gid`` with ``node`` (``node`` and
        those of its operands only they read), in schedule order; None when the move would make
        ``home`` store a value it did not store, or ``gid`` read more than one more full-size array."""

        def ours(n):
            return self._member(n) and self.find(self.group_of[id(n)]) == home

        def theirs(n):
            return self._member(n) and self.find(self.group_of[id(n)]) == gid

        moved, stack = {id(node): node}, [node]
        while stack:
            n = stack.pop()
            for i in self.reads(n):
                if id(i) in moved or not ours(i) or not self._movable(i):
                    continue
                if all(id(u) in moved or theirs(u) for u in self.users.get(id(i), ())):
                    moved[id(i)] = i
                    stack.append(i)
        # only moved members and the later loop read what is moved
        for n in moved.values():
            if not all(id(u) in moved or theirs(u) for u in self.users.get(id(n), ())):
                return None
        already = {id(j) for m in self.groups[gid].members for j in self.reads(m)}
        new_reads = set()
        for n in moved.values():
            for j in self.reads(n):
                if id(j) in moved or j.ndim == 0:
                    continue
                if ours(j) and not self._stored(j, home, moved):
                    return None  # the first loop would store it for the later one
                if (
                    (ours(j) or not self._member(j))
                    and _same_shape(j.shape, node.shape)
                    and id(j) not in already
                ):
                    new_reads.add(id(j))
                elif self._member(j) and not ours(j) and not theirs(j):
                    return None  # a third loop's value: keep the order the plan checked
        if len(new_reads) > 1:
            return None
        return sorted(moved.values(), key=lambda n: self.order[id(n)])

    def _stored(self, node, home, moved):
        """Does loop ``home`` store ``node`` whether or not the ``moved`` members leave it?"""
        return id(node) in self.output_ids or any(
            id(u) not in moved and (id(u) not in self.group_of or self.find(self.group_of[id(u)]) != home)
            for u in self.users.get(id(node), ())
        )

    def _row_expression(self, a, gid, reach):
        """Ids of the nodes of ``a`` that loop ``gid`` computes inline per element (A[i, j]): its
        elementwise ops, broadcasts and (n, 1) reshapes of the loop's values; the rest of ``a``
        must be computed before the loop. None if ``a`` cannot be read that way."""
        rows = self.groups[gid].shape
        inline, stack = [], [a]
        while stack:
            n = stack.pop()
            if id(n) in inline:
                continue
            if gid not in self._closure(reach.get(id(n), ())):
                continue  # computed before the loop (checked again by the ordering)
            if n.ndim != 2 or n.dtype not in ("float64", "bool"):
                return None
            if (
                n.op == "reshape"
                and self._member(n.inputs[0])
                and self.find(self.group_of[id(n.inputs[0])]) == gid
                and _same_shape(n.inputs[0].shape, rows)
                and n.shape[1] == 1
            ):
                inline.append(id(n))
                continue
            if not (by_element(n) or n.op == "broadcast_to") or not dims_equal(n.shape[0], rows[0]):
                return None
            g = self.group_of.get(id(n))
            if g is not None and (not self._member(n) or self.find(g) == gid):
                return None  # accumulated by a loop, or a value of this loop itself
            inline.append(id(n))
            stack.extend(n.inputs)
        return inline

    def _reaches_group(self, node, gid):
        """Does some member of loop ``gid`` read ``node``, directly or not?"""
        seen, stack = set(), [node]
        while stack:
            n = stack.pop()
            for u in self.users.get(id(n), ()):
                if id(u) in seen:
                    continue
                seen.add(id(u))
                g = self.group_of.get(id(u))
                if g is not None and self.find(g) == gid:
                    return True
                stack.append(u)
        return False

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
        return (
            gid is not None
            and not self._is_sum(node)
            and id(node) not in self.groups[self.find(gid)].absorbed
        )

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
            return [
                j
                for j in self.reads(node)
                if not (self._member(j) and self.find(self.group_of[id(j)]) in merge)
            ]

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
        return self._new_group(node, reach)

    def _new_group(self, node, reach):
        gid = len(self.parent)
        self.parent[gid] = gid
        group = self.groups[gid] = Group(gid, node.shape)
        group.members.append(node)
        for j in self.reads(node):
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


def fuse(em, forward, backward, out_name_of, outputs):
    """The kernel's IR with fused loops (``em``: the emitter, which keeps the value map), or
    None to use the plain statements."""
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
    block, value = ir.build(nodes)
    em.value = value
    em.name_outputs(out_name_of)
    grouped = set(plan.group_of)
    if grouped & plan.loop_read:
        return None  # (a fold of scatters or row products took a value a loop reads)
    # a loop of sg.scan: the carries assigned and the stacks allocated before its For, with it
    loop_of, prelude, plain = {}, [], []
    for s in block:
        if isinstance(s, (ir.Assign, ir.Alloc)):
            prelude.append(s)
        elif isinstance(s, ir.For):
            loop_of[id(s.node)], prelude = prelude + [s], []
        else:
            plain.append(s)

    # outside the loops, the scalar statements one branch of a scalar where reads go in that branch
    owner = branches.owners(
        nodes,
        users,
        lambda n: branches.movable(n, output_ids) and id(n) not in grouped,
        lambda u: u.op == "where" and u.ndim == 0 and id(u) not in grouped,
    )
    block = branches.sink([s for s in plain if id(s.node) not in grouped], outputs, owner)
    statement_of = {id(s.instr.node if isinstance(s, ir.If) else s.node): s for s in block}

    def read_only_in_loops(node):
        # a transparent node no one else reads is never built
        return (
            plan.see_through(node)
            and id(node) not in output_ids
            and all(plan._member(u) for u in users.get(id(node), ()))
        )

    indices = []  # the loop indices, shared by every fused loop of the kernel

    def loop_indices(rank):
        while len(indices) < rank:
            indices.append(ir.LoopVar("ijklmnpq"[len(indices)] if len(indices) < 8 else f"i{len(indices)}"))
        return indices[:rank]

    units, outside, count = [], [], 0
    for key, members, part in ordered:
        if key[0] == "n" and id(members[0]) in loop_of:
            units.append((part, loop_of[id(members[0])]))
        elif key[0] == "n":
            stmt = statement_of.get(id(members[0]))
            if stmt is None or read_only_in_loops(members[0]):
                continue
            outside.append(stmt)
            units.append((part, [stmt]))
        else:
            count += 1
            loop = _Loop(plan, plan.groups[key[1]], out_name_of, output_ids, users, backward_ids, value)
            units.append((part, loop.build(count, loop_indices)))
    ir.rebind(outside, value)
    fused = ir.sectioned(units, bool(backward))
    if loop_of:
        try:  # a loop's results are read after its For (sg.scan's; never expected to fail)
            ir.verify(fused)
        except AssertionError:
            return None
    return fused


# the shortest rows of a loop nest tiled and put on lanes when their length is a number: rows
# of 2 and 3 elements ran 1.04-1.35x as slow on lanes (tanh(A * c), logsumexp rows, 1e5 rows;
# the twins' arithmetic then runs one element at a time), rows of 4 0.73-0.83x, rows of 8 0.17-0.71x
ROW_LANES_MIN = 4
# the fewest elements of a loop of known size tiled and put on lanes: sum(sigmoid(x)^2) over
# 4 / 8 / 16 / 32 elements, tiled 542 / 558 / 540 / 528 ns a call, on libm 505 / 518 / 588 / 634
LANES_MIN_ELEMENTS = 16


@dataclass(eq=False)
class RowLoop:
    """What the threads pass (``codegen/threads.py``) reads of a fused loop's outer ``For`` (its
    ``fused``): the row index (the tile loop's rows when tiled) and the statements before the
    loop that allocate what it writes and accumulates; ``carried``: the scalars a row hands to the
    next ones (``carry_scatters``), each a function of the last ``halo`` rows alone, so a block of
    rows may start by running those rows again for them."""

    row: ir.LoopVar
    pre: list
    carried: list = field(default_factory=list)
    halo: int = 0
    # a loop nest's extents after the rows (each row's elements), when no inner loop over a
    # product runs in it: blocks of it are sized in elements; () for a loop over rows
    per_row: tuple = ()


def _used_outside(plan, gid, node, output_ids, users):
    """Is the member ``node``'s value read after the loop (so it is stored to an array)?"""
    return id(node) in output_ids or any(plan.group_of.get(id(u)) != gid for u in users.get(id(node), ()))


class _Loop:
    """The IR of one fused loop: allocations before it (``pre``), the loop nest, and what turns
    its accumulators into values after it (``post``)."""

    def __init__(self, plan, group, out_name_of, output_ids, users, backward_ids, value):
        self.plan, self.group = plan, group
        self.out_name_of, self.output_ids, self.users = out_name_of, output_ids, users
        self.backward_ids, self.value = backward_ids, value
        self.scalar = {}  # id(member) -> the scalar value computing its element
        self.pre, self.post = [], []
        self.carried, self.halo = [], 0  # carry_scatters' scalars, the rows they depend on

    # ------------------------------------------------------------ reading elements

    def read(self, node, idx):
        """``node``'s element at ``idx`` (an index per axis of ``node``)."""
        if id(node) in self.scalar:
            return self.scalar[id(node)]
        if node.ndim == 0:
            return ir.current(self.value, node)
        if self.plan.see_through(node):
            src = node.inputs[0]
            if node.op == "broadcast_to":
                lead = node.ndim - src.ndim
                sub = [
                    0
                    if isinstance(d, int) and d == 1 and not (isinstance(o, int) and o == 1)
                    else idx[lead + k]
                    for k, (d, o) in enumerate(zip(src.shape, node.shape[lead:]))
                ]
                return self.read(src, sub)
            conds, sub = [], []
            for k, w in enumerate(_slice_window(node)):
                if w is None:
                    sub.append(idx[k])
                    continue
                start, length = w
                conds.append((idx[k], start, length))
                sub.append(idx[k] if start == 0 else ir.Shift(idx[k], ir.WindowStart(start), -1))
            inner = self.read(src, sub)
            return ir.Guard(inner, tuple(conds), node.dtype) if conds else inner
        return ir.Elem(ir.current(self.value, node), tuple(idx))

    def at(self, node, idx, full):
        """``node`` read at element ``idx`` of the shape ``full`` it broadcasts to: (value, idx used)."""
        lead = len(full) - node.ndim
        sub = [
            0 if isinstance(d, int) and d == 1 and not (isinstance(o, int) and o == 1) else idx[lead + k]
            for k, (d, o) in enumerate(zip(node.shape, full[lead:]))
        ]
        return self.read(node, sub), sub

    def operand(self, node):
        """``node`` read at the loop's element, for an input of a member of this loop's shape."""
        return self.at(node, self.index, self.group.shape)[0]

    def naming(self, node):
        """The values a member's name is made from: its inputs' (none for one read through)."""
        return [
            self.scalar.get(id(i)) or (None if self.plan.see_through(i) else ir.current(self.value, i))
            for i in node.inputs
        ]

    # ------------------------------------------------------------ the loop

    def build(self, number, loop_indices):
        plan, group = self.plan, self.group
        shape = group.shape
        rank = len(shape)
        # an axis of length 1 needs no loop: its index is 0
        self.index = [0 if isinstance(d, int) and d == 1 else i for i, d in zip(loop_indices(rank), shape)]
        members = sorted(
            group.members + group.sums + [p[0] for p in group.row_products], key=lambda n: plan.order[id(n)]
        )
        self.products = {id(p[0]): p for p in group.row_products}
        self.inner = (
            loop_indices(rank + 1)[rank] if self.products or any(m.op == "matmul" for m in members) else None
        )
        self.scatter_of = {}  # id(member) -> [(array, window)] its value is added into
        for root, leaves in group.scatter:
            array = ir.Var(root.op, root.dtype, root.shape, name=self.out_name_of.get(id(root)))
            self.value[id(root)] = array
            self.pre.append(ir.Alloc(array, "zeros", note="gradients of slices, accumulated by the loop"))
            for s in leaves:
                self.scatter_of.setdefault(id(s.inputs[0]), []).append((array, _slice_window(s)))

        n_ops, sums = len(group.members), len(group.sums)
        what = f"{n_ops} elementwise op{'s' if n_ops != 1 else ''}"
        if sums:
            what += f" and {sums} sum{'s' if sums != 1 else ''}"
        if self.products:
            n = len(self.products)
            what += f" and {n} transposed product{'s' if n != 1 else ''}"
        parts = {id(n) in self.backward_ids for n in members}
        kind = "forward and backward" if len(parts) == 2 else ("backward" if True in parts else "forward")
        head = f"fused loop {number} ({kind}): {what} over {shape_text(shape)} elements"

        def movable(n):
            return (
                n.op not in ("sum", "matmul")
                and id(n) not in self.scatter_of
                and not _used_outside(plan, group.gid, n, self.output_ids, self.users)
            )

        owner = branches.owners(
            members,
            self.users,
            movable,
            lambda u: u.op == "where" and plan.group_of.get(id(u)) == group.gid,
        )
        # the axis whose loop is tiled and put on SIMD lanes: the rows of a loop over rows, the
        # last axis not of length 1 of a loop nest (each row's elements; its outer loops run the rows)
        lanes_axis = self.lanes_axis()
        if lanes_axis is not None:
            owner = tiling.selected_on_lanes(owner, members)
        self.owned = {}  # (id(where), branch) -> its members, in schedule order
        for node in members:
            if id(node) in owner:
                self.owned.setdefault(owner[id(node)], []).append(node)

        section = None
        chunks = []  # (member, its statements), in schedule order
        for node in members:
            if id(node) in owner:
                continue
            part = id(node) in self.backward_ids
            stmts = []
            if len(parts) == 2 and part != section:
                stmts.append(ir.Note("backward" if part else "forward"))
                section = part
            self.emit(node, stmts)
            chunks.append((node, stmts))
        if lanes_axis is not None:
            index = self.index[lanes_axis]
            tiled = tiling.tile(chunks, self.scalar, index, shape[lanes_axis], self.pre)
            if tiled is not None:
                # the loops over the outer axes, unchanged, hold the tile loop (none over rows)
                for i, d in reversed(list(zip(self.index[:lanes_axis], shape[:lanes_axis]))):
                    if i != 0:
                        tiled = [ir.For(i, d, tiled)]
                if self.index[0] != 0:
                    tiled[0].fused = RowLoop(self.index[0], list(self.pre), per_row=self.per_row())
                head += f", {'in' if lanes_axis == 0 else 'each row in'} tiles of {tiling.TILE}"
                return [ir.Note(head)] + self.pre + tiled + self.post
        body = [stmt for _, stmts in chunks for stmt in stmts]
        if rank == 1 and self.index[0] != 0:
            body = self.carry_scatters(body, shape[0])
        for i, d in reversed(list(zip(self.index, shape))):
            if i != 0:
                body = [ir.For(i, d, body)]
        if self.index[0] != 0:
            body[0].fused = RowLoop(
                self.index[0], list(self.pre), list(self.carried), self.halo, self.per_row()
            )
        return [ir.Note(head)] + self.pre + body + self.post

    def per_row(self):
        """The extents of this loop nest's axes after the rows (each row's elements), or () for a
        loop over rows or one with an inner loop over a product (its rows' cost is not theirs)."""
        if self.inner is not None:
            return ()
        return tuple(d for i, d in zip(self.index[1:], self.group.shape[1:]) if i != 0)

    def lanes_axis(self):
        """The axis of this loop whose loop ``tiling`` may cut into tiles and put on SIMD lanes, or
        None: the rows of a loop over rows; in a loop nest, its last axis not of length 1 (each
        row's elements, tiled as a loop over rows is, its outer loops unchanged: every sum adds
        in the same order as untiled), when no member is a product (an inner loop over a row:
        ``jam``'s rows are rows of axis 0; no schedule seen puts one in a loop nest)."""
        axes = [k for k, i in enumerate(self.index) if i != 0]
        if not axes:
            return None
        if len(self.index) > 1 and self.inner is not None:
            return None
        shape = self.group.shape
        if all(isinstance(d, int) for d in shape) and math.prod(shape) < LANES_MIN_ELEMENTS:
            return None  # a few elements: the tiles' buffers cost more than libm's calls
        if axes[-1] > 0 and isinstance(shape[axes[-1]], int) and shape[axes[-1]] < ROW_LANES_MIN:
            return None  # rows shorter than the lanes: their elements one at a time on libm
        return axes[-1]

    def carry_scatters(self, body, length):
        """A row loop's gradients of unit-step slices (``d_x[i + s] += c_s`` for a few shifts s)
        written once per element instead: element ``i + min s`` is complete at row i, so it is
        stored (``=``) from the row's contribution and the earlier rows' ones, which wait in
        scalars carried from row to row; the last of them are stored after the loop. Each element
        of ``d_x`` is then written once and never read back (no read-modify-write through memory
        from one row to the next), and when the shifted blocks cover the whole array it is not
        zeroed first (a second sweep over it). The sums add the contributions in the order the
        ``+=`` did. ``body``: the loop's statements; ``length``: its row count."""
        index = self.index[0]
        for root, leaves in self.group.scatter:
            array = self.value[id(root)]
            if array.dtype != "float64":
                continue
            by_shift = {}  # shift -> the values stored at index + shift, in order
            top = [s for s in body if isinstance(s, ir.Store) and s.array is array]
            stores = [s for s in ir.walk(body) if isinstance(s, ir.Store) and s.array is array]
            if not top or len(stores) != len(top) or _reads_array(body, array):
                continue
            for s in top:
                shift = _unit_shift(s.index[0], index) if s.add and len(s.index) == 1 else None
                if shift is None:
                    break
                by_shift.setdefault(shift, []).append(s.value)
            else:
                low, high = min(by_shift), max(by_shift)
                if high - low > _MAX_CARRIED:
                    continue
                self._carry(array, root, body, top, by_shift, low, high, length)
        return body

    def _carry(self, array, root, body, top, by_shift, low, high, length):
        index = self.index[0]
        waiting = [  # waiting[k - 1]: what the rows so far add to element i + low + k
            ir.Var("next", "float64", like=array, suffix="_next" + (str(k) if k > 1 else ""))
            for k in range(1, high - low + 1)
        ]
        for v in waiting:
            self.pre.append(ir.Alloc(v, "zeros"))
        # at row i, waiting[k - 1] holds rows i - (high - low - k) .. i's values only
        self.carried += waiting
        self.halo = max(self.halo, high - low)

        def plus(start, shift):
            # start + this row's values at index + shift, added one by one as the += did
            out = start
            for v in by_shift.get(shift, ()):
                out = v if out is None else ir.Apply("add", (out, v))
            return out

        for s in top:
            body.remove(s)
        at = index if low == 0 else ir.Shift(index, ir.WindowStart(low))
        body.append(ir.Store(array, (at,), plus(waiting[0] if waiting else None, low)))
        for k, v in enumerate(waiting, start=1):
            value = plus(waiting[k] if k < len(waiting) else None, low + k)
            body.append(ir.Assign(v, value if value is not None else ir.Zero("float64")))
        for k, v in enumerate(waiting, start=1):
            self.post.append(ir.Store(array, (length + low + k - 1,), v))
        # no element outside [low, length + high) is written: only then may the array start empty
        if low == 0 and dims_equal(root.shape[0], length + high):
            for stmt in self.pre:
                if isinstance(stmt, ir.Alloc) and stmt.target is array:
                    stmt.fill = "empty"
                    stmt.note = "gradients of slices, each element written once by the loop"

    # ------------------------------------------------------------ one member

    def emit(self, node, loop):
        if node.op == "matmul":
            (self.row_product if id(node) in self.products else self.dot_product)(node, loop)
        elif node.op == "sum":
            self.accumulate(node, loop)
        elif node.op == "where" and ((id(node), 1) in self.owned or (id(node), 2) in self.owned):
            # only the branch the condition takes is computed: its own ops go inside the if
            instr = ir.Instr(node, [], scalar=True)
            blocks = []
            for k in (1, 2):
                block = []
                for inner in self.owned.get((id(node), k), ()):
                    self.emit(inner, block)
                blocks.append(block)
            instr.operands = [self.operand(i) for i in node.inputs]
            instr.naming = self.naming(node)
            self.scalar[id(node)] = instr
            loop.append(branches.branch_if(instr, blocks))
            self.store(node, instr, loop)
        else:
            instr = ir.Instr(
                node, [self.operand(i) for i in node.inputs], scalar=True, naming=self.naming(node)
            )
            self.scalar[id(node)] = instr
            loop.append(instr)
            self.store(node, instr, loop)

    def accumulate(self, node, loop):
        src = self.scalar[id(node.inputs[0])]
        result = ir.Var(
            "sum", node.dtype, node.shape, name=self.out_name_of.get(id(node)), derive=(node, [src])
        )
        self.value[id(node)] = result
        axes = node.attrs["axes"]
        rank = len(self.group.shape)
        if len(axes) < rank:
            # a partial sum: each element adds into its slot of the (zeroed) result
            kept = tuple(
                (0 if k in axes else i)
                for k, i in enumerate(self.index)
                if node.attrs["keepdims"] or k not in axes
            )
            if node.dtype == "float32":
                # float32 sums accumulate in float64, rounded once after the loop
                acc = ir.Var("acc", "float64", node.shape, like=result, suffix="_acc")
                self.pre.append(ir.Alloc(acc, "zeros"))
                loop.append(ir.Store(acc, kept, src, add=True, note=node))
                self.post.append(ir.Assign(result, ir.AsType(acc, "float32", node.shape)))
                return
            self.pre.append(ir.Alloc(result, "zeros"))
            loop.append(ir.Store(result, kept, src, add=True, note=node))
        elif node.dtype == "float64" and not node.attrs["keepdims"]:
            self.pre.append(ir.Alloc(result, "zeros"))
            loop.append(ir.Accum(result, src, note=node))
        else:
            acc = ir.Var("acc", "float64", (), like=result, suffix="_acc")
            note = "float32 sums accumulate in float64" if node.dtype == "float32" else None
            self.pre.append(ir.Alloc(acc, "zeros", note=note))
            loop.append(ir.Accum(acc, src, note=node))
            total = ir.Convert(acc, "float32") if node.dtype == "float32" else acc
            self.post.append(ir.Assign(result, ir.Full(total, node.shape) if node.ndim else total))

    def dot_product(self, node, loop):
        # a @ v, element i: the dot product of a's row i with v, read while the row is in cache
        a, v = node.inputs
        inner = self.inner
        result = ir.Var("matmul", "float64", (), derive=(node, self.naming(node)))
        row = self.at(a, [self.index[0], inner], a.shape)[0]
        loop.append(ir.Assign(result, ir.Zero("float64"), note=node))
        product = ir.Apply("mul", (row, self.at(v, [inner], v.shape)[0]))
        loop.append(ir.For(inner, a.shape[1], [ir.Accum(result, product)]))
        self.scalar[id(node)] = result
        self.store(node, result, loop)

    def row_product(self, node, loop):
        # A.T @ r accumulated row by row: g[j] += r_i * A[i, j], A's row read once while in cache;
        # A's elements computed inline (per row where they do not depend on j)
        _, a, r, inline = self.products[id(node)]
        inner = self.inner
        result = ir.Var(
            "matmul",
            "float64",
            node.shape,
            name=self.out_name_of.get(id(node)),
            derive=(node, self.naming(node)),
        )
        self.value[id(node)] = result
        self.pre.append(ir.Alloc(result, "zeros"))
        idx = [self.index[0], inner]
        values = {}  # id(inline node) -> (value, whether it reads the column index)

        def element(n):
            if id(n) in values:
                return values[id(n)]
            v, sub = self.at(n, idx, a.shape)
            return v, any(s is inner for s in sub)

        per_row, per_element = [], []
        for n in inline:
            if n.op == "reshape":
                values[id(n)] = (self.scalar[id(n.inputs[0])], False)
            elif n.op == "broadcast_to":
                values[id(n)] = element(n.inputs[0])
            else:
                args = [element(i) for i in n.inputs]
                instr = ir.Instr(n, [v for v, _ in args], scalar=True, naming=[], note=False)
                varies = any(v for _, v in args)
                (per_element if varies else per_row).append(instr)
                values[id(n)] = (instr, varies)
        loop.extend(per_row)
        product = ir.Apply("mul", (self.scalar[id(r)], element(a)[0]))
        loop.append(
            ir.For(
                inner, a.shape[1], per_element + [ir.Store(result, (inner,), product, add=True, note=node)]
            )
        )

    def store(self, node, value, loop):
        if _used_outside(self.plan, self.group.gid, node, self.output_ids, self.users):
            array = ir.Var(
                "arr",
                node.dtype,
                self.group.shape,
                like=value,
                suffix="_arr",
                name=self.out_name_of.get(id(node)),
            )
            self.value[id(node)] = array
            self.pre.append(ir.Alloc(array, "empty"))
            loop.append(ir.Store(array, tuple(self.index), value))
        for array, window in self.scatter_of.get(id(node), ()):
            at = tuple(
                i if w is None or w[0] == 0 else ir.Shift(i, ir.WindowStart(w[0]))
                for i, w in zip(self.index, window)
            )
            loop.append(ir.Store(array, at, value, add=True))
