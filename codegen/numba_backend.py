"""The numba backend: the shared numpy-flavoured source, decorated with ``numba.njit``.

Where numba's numpy lacks a spelling (reductions other than sum along an axis,
``keepdims``, reshape of a non-contiguous array, batched matmul) the lowering
lays the data out as a C-contiguous (rows, reduced) matrix and calls a helper
in ``codegen.numba_runtime``.
"""

from . import branches, fusion, placement, rolling, threads
from symgrad.graph import topo_order
from symgrad.ops.registry import OPS
from .emit import GATHER_OPS, Emitter, has_loops
from .schedule import (
    ROLL_MIN_STATEMENTS,
    dim_text,
    find_loops,
    interleaved,
    key_index,
    keyed,
    product_text,
    shape_text,
)

# a loop of array statements (a traced loop with tensor state) rolls from this many statements:
# numba compiles an array statement in ~0.1 s, and every run that grows with the trip count must
# roll for the source to be independent of it (a gradient's running sum is one or two a step)
ROLL_MIN_ARRAY_STATEMENTS = 4
SMALL_PRODUCT = 512  # multiply-adds: up to this many, a product of concrete shape is a loop


def _small_product(a, b):
    """Whether a @ b (2-D or 1-D operands, not both 1-D) has concrete dims, at most
    SMALL_PRODUCT multiply-adds and float operands of one dtype."""
    dims = tuple(a.shape) + tuple(b.shape)
    if not all(isinstance(d, int) for d in dims) or a.ndim + b.ndim < 3:
        return False
    if a.dtype != b.dtype or a.dtype not in ("float32", "float64"):
        return False
    m = a.shape[0] if a.ndim == 2 else 1
    n = b.shape[1] if b.ndim == 2 else 1
    return m * a.shape[-1] * n <= SMALL_PRODUCT


# ops a rolled loop body may hold: one expression each, the same text in every iteration
_LOOPABLE = {name for name, op in OPS.items() if op.elementwise and op.lower} | {"cast"}


def _find_loops(
    forward, backward, rollable, min_statements=ROLL_MIN_STATEMENTS, shortest=False, first=None, late=()
):
    """(score, schedule, loops): of the schedule's orders tried (``_orders``), the one whose
    repeated runs cover more statements (``shortest``: the one whose rolled kernel has fewer
    statements, so that the choice does not change with the trip count). Every order is the
    graph's own (never the order this process happened to create the nodes in: a node an
    earlier graph made is older), so one function gives one kernel whatever was built before.
    ``first``: the forward part's first ``first`` statements are the first output's; then the
    forward part interleaved along them (``schedule.interleaved``: a tangent's step beside its
    value's) is tried too. ``late``: ids of statements placed just before their first reader
    (the rows only a stack reads: between the steps they would break the period)."""
    best = (-len(forward) - len(backward) if shortest else 0, list(forward) + list(backward), [])
    for order in _orders(forward, backward, late):
        loops = find_loops(order, rollable, barriers=(len(forward),), min_statements=min_statements)
        covered = sum(loop.period * loop.count for loop in loops)
        if shortest:
            # minus the statements left: those outside the loops, and each loop's body once
            covered = -len(order) + sum((loop.count - 1) * loop.period - len(loop.extra) for loop in loops)
        if covered > best[0]:
            best = (covered, order, loops)
    if first is not None and first < len(forward) and not shortest:
        # the other outputs' chains stepped beside the first's: one loop (one pass over the
        # chain, nothing stored for the next) where the orders above roll each chain alone; taken
        # when it rolls into fewer loops that leave at most ``min_statements`` more outside
        order = _late(sorted(interleaved(forward, first), key=_given), late)
        order += _late(sorted(backward, key=_given), late)
        loops = find_loops(order, rollable, barriers=(len(forward),), min_statements=min_statements)
        covered = sum(loop.period * loop.count for loop in loops)
        if loops and len(loops) < len(best[2]) and covered >= best[0] - min_statements:
            best = (covered, order, loops)
    return best


def _orders(forward, backward, late):
    """The orders of the schedule (forward part, then backward part) ``_find_loops`` tries:
    depth-first as scheduled, and depth-first visiting the taller operand first (the longer
    chain, a recurrence's state, before the step's own work: the steps of a loop one after the
    other, as a program computes them, where depth-first may walk one chain to its start before
    the next); each also with the reads of a computed array's rows together (``_early``), when
    it has some. Inputs and constants first (they are no statements: a step's own constant
    must not break the period); ``late`` statements just before their first reader."""
    for walk in (list, _tallest_first):
        parts = [sorted(walk(forward), key=_given), sorted(walk(backward), key=_given)]
        yield _late(parts[0], late) + _late(parts[1], late)
        moved = [_early(part) for part in parts]
        if any(m is not p for m, p in zip(moved, parts)):
            yield _late(moved[0], late) + _late(moved[1], late)


def _tallest_first(nodes):
    """``nodes`` (inputs before users) walked depth-first from those nothing in them reads, each
    node's operands in ``nodes`` visited tallest first (``Expr.height``; ties in operand order)."""
    member = {id(n) for n in nodes}
    read = {id(i) for n in nodes for i in n.inputs}
    keys = {}

    def operands(node, seen):
        walked = [i for i in node.inputs if id(i) in member and id(i) not in seen]
        if len({i.height for i in walked}) < len(walked):
            walked.sort(key=lambda i: (-i.height, _near(i, keys)))
        else:
            walked.sort(key=lambda i: -i.height)
        return walked

    return topo_order([root for root in nodes if id(root) not in read], operands)


def _near(node, keys, depth=4):
    """What ``node`` computes near it (ops and their attributes but no shape, ``depth`` levels
    down) as a key ints and strings compare: it orders operands of equal height the same way at
    every trip count (a commutative op's operand order is the graph's, which ties them on
    ``Expr.digest``: a hash, different for every length)."""
    found = keys.get((id(node), depth))
    if found is None:
        attrs = tuple((k, _plain(v)) for k, v in sorted(node.attrs.items()) if "shape" not in k)
        below = tuple(_near(i, keys, depth - 1) for i in node.inputs) if depth > 1 else ()
        found = keys[(id(node), depth)] = (node.op, node.dtype, attrs, below)
    return found


def _plain(value):
    """``value`` as a key of (kind, value) pairs that compare whatever the types (None: not a
    plain value, e.g. a constant's array)."""
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    if isinstance(value, tuple):
        return (4, tuple(_plain(v) for v in value))
    return (0, 0)


def _early(order):
    """``order`` with each read of a row of a computed array (the adjoint of a stack, split into
    the steps' adjoints) moved to just after the array: the reads one after the other, a loop of
    their own (between the steps they read for, they would break the period)."""
    rows = {}
    for node in order:
        if node.op == "getitem" and not OPS[node.inputs[0].op].given and key_index(node) is not None:
            rows.setdefault(id(node.inputs[0]), []).append(node)
    if not rows:
        return order
    moved = {id(n) for found in rows.values() for n in found}
    out = []
    for node in order:
        if id(node) not in moved:
            out.append(node)
            out += rows.get(id(node), ())
    return out


def _late(order, late):
    """``order`` with the statements of ``late`` (ids) moved to just before their first reader."""
    if not late:
        return order
    readers = {}
    for node in order:
        moved = [i for i in node.inputs if id(i) in late]
        if moved:
            readers[id(node)] = moved
    out, placed = [], set()
    for node in order:
        if id(node) in late:
            continue
        for i in readers.get(id(node), ()):
            if id(i) not in placed:
                placed.add(id(i))
                out.append(i)
        out.append(node)
    return out + [n for n in order if id(n) in late and id(n) not in placed]


def _extra(nodes, loop):
    """The statements moved into ``loop`` from later loops."""
    return [nodes[reader.start + j] for reader, j, _ in loop.extra]


def _by_element(nodes, loop, rollable):
    """Is ``loop`` (found among ``nodes``) a run fusion computes element by element: its statements
    scalar or elementwise ops on arrays (a series' steps, say, ``s = s * z + c``), together fewer
    than ROLL_MIN_STATEMENTS, the length from which a run of scalar statements rolls? Such a run
    stays in the fused loop (one pass over the elements, its functions on SIMD lanes) rather than
    rolling into one pass over the arrays a statement."""
    body = loop.body(nodes) + _extra(nodes, loop)
    return loop.period * loop.count < ROLL_MIN_STATEMENTS and all(
        rollable(n) or fusion.by_element(n) for n in body
    )


def _first_output_statements(forward, outputs):
    """How many statements of ``forward`` (a topological order from the outputs in turn) are
    the first output's graph (None: the first output is not computed there)."""
    for p, node in enumerate(forward):
        if node is outputs[0]:
            return p + 1
    return None


def _given(node):
    return not OPS[node.op].given


class NumbaEmitter(Emitter):
    backend = "numba"
    runtime_module = "symgrad.codegen.numba_runtime"
    module_imports = ("import numba",)
    decorator = "@numba.njit(cache=True, nogil=True, error_model='numpy')"
    # numba parallelises the prange loops alone (no array expression, reduction or allocation
    # becomes parallel: their results would depend on the threads)
    blocks_decorator = (
        f"@numba.njit(cache=True, nogil=True, error_model='numpy', parallel={threads.PARALLEL})"
    )
    parallel_range = "numba.prange"

    def row_blocks(self, kernel, outputs):
        """The kernel with its long fused loops in row blocks on the threads (``threads.block``);
        None for a kernel that checks index values (an IndexError raised inside a parallel loop)."""
        if any(n.op in GATHER_OPS for n in self.computed):
            return None
        return threads.block(kernel)

    # huge pages for a large array (codegen/memory_kernels.py): no 4 KiB page faults writing it
    alloc_empty, alloc_zeros = "_rt.empty", "_rt.zeros"

    pairs = True
    serial = True

    def kernel_ir(self, forward, backward, out_name_of, outputs):
        """The kernel's IR: a traced loop of array statements (tensor state, ``xs[t]``) rolled
        into loops when its steps repeat (``rolling``); else fused loops (``fusion``), else the
        straight-line statements with repeated scalar runs rolled into loops; scalar branches
        sunk (``branches``)."""
        if has_loops(list(forward) + list(backward)):
            # a kernel with a structured loop (sg.scan): the statements around its For fuse, and
            # branches sink around and inside it; no rolling
            fused = fusion.fuse(self, forward, backward, out_name_of, outputs) if fusion.enabled() else None
            if fused is not None:
                return branches.sink_in_loops(fused)
            return super().kernel_ir(forward, backward, out_name_of, outputs)
        nodes = list(forward) + list(backward)
        owner = branches.plan(nodes, outputs)
        owning = {key[0] for key in owner.values()}

        def rollable(node):
            return (
                node.ndim == 0
                and (node.op in _LOOPABLE or node.op == "getitem")
                and id(node) not in out_name_of
                and id(node) not in owner
                and id(node) not in owning
            )

        stacked = rolling.stack_rows(nodes)

        def array_statement(node):
            # a statement computing from arrays (a matmul, an elementwise op on vectors, a
            # reduction, a row xs[t]): one line of source, the same in every iteration
            record = OPS[node.op]
            return (
                not record.given
                and record.value_of is None
                and (any(i.ndim > 0 for i in node.inputs) or keyed(node) is not None)
                and id(node) not in out_name_of
                and id(node) not in owner
                and id(node) not in owning
                and id(node) not in stacked
            )

        rolled = None
        if any(array_statement(n) and not rollable(n) for n in nodes):
            # only a program with array statements can have a loop of them (a scalar recurrence
            # skips this search: its runs are found once, below)
            rolled = _find_loops(
                forward,
                backward,
                lambda n: rollable(n) or array_statement(n),
                ROLL_MIN_ARRAY_STATEMENTS,
                True,
                late=stacked,
            )
        if rolled is None or all(_by_element(rolled[1], loop, rollable) for loop in rolled[2]):
            fused = fusion.fuse(self, forward, backward, out_name_of, outputs) if fusion.enabled() else None
            if fused is not None:
                return placement.concatenate_in_place(fused, self.value)
            rolled = _find_loops(
                forward, backward, rollable, first=_first_output_statements(forward, outputs), late=stacked
            )
        _, nodes, loops = rolled
        if not loops:
            return super().kernel_ir(forward, backward, out_name_of, outputs)
        self.rolled = (nodes, len(forward), loops, owner)  # the first tier's twin rolls the same loops
        # a loop over an input's rows counts in its length read at run time (one text for every T)
        self.trip = rolling.trip_count(nodes, loops, getattr(self, "inputs", ()), self.names)
        if self.trip is not None:
            rolling.time_axes(nodes, loops, self.trip)
        block = self.rolled_ir(out_name_of, outputs)
        if any(n.ndim for loop in loops for n in loop.body(nodes)):
            block = rolling.scalarize(block, lambda n: n.op in _LOOPABLE and id(n) not in out_name_of)
        rolling.count_from_end(block, self.trip)
        return block

    def _rows(self, node, arg):
        """``arg`` with the reduced axes moved last, as a (kept, reduced) C-contiguous matrix."""
        x = node.inputs[0]
        axes = node.attrs["axes"]
        keep = [i for i in range(x.ndim) if i not in axes]
        perm = tuple(keep + list(axes))
        moved = arg if perm == tuple(range(x.ndim)) else f"np.transpose({arg}, {perm})"
        shape = self.dims(x)
        kept = product_text([shape[i] for i in keep])
        reduced = product_text([shape[i] for i in axes])
        return f"np.ascontiguousarray({moved}).reshape(({kept}, {reduced}))", perm

    def _reduce(self, fn, helper, node, args):
        x = node.inputs[0]
        axes = node.attrs["axes"]
        if len(axes) == x.ndim:
            full = f"{fn}({args[0]})"
            return f"np.full({shape_text(self.dims(node))}, {full})" if node.attrs["keepdims"] else full
        rows, _ = self._rows(node, args[0])
        return f"_rt.{helper}({rows}).reshape({shape_text(self.dims(node))})"

    def _accumulate(self, node, args):
        """The operand in the dtype sum and prod accumulate in (numpy's int64 for narrow ints)."""
        if node.dtype == node.inputs[0].dtype:
            return args
        return [f"{args[0]}.astype(np.{node.dtype})"]

    def lower_sum(self, node, args):
        args = self._accumulate(node, args)
        x = node.inputs[0]
        axes = node.attrs["axes"]
        if node.dtype == "float32":
            # accumulated in float64 (numba's np.sum adds float32 one by one, in float32)
            return self._reduce("_rt.sum_wide", "sum_rows_wide", node, args)
        if len(axes) == x.ndim:
            return self._reduce("np.sum", None, node, args)
        # each axis summed as the middle one of a (before, axis, after) array (numba_runtime.sum_middle)
        text, shape = args[0], list(self.dims(x))
        for a in sorted(axes, reverse=True):
            dims = f"({product_text(shape[:a])}, {dim_text(shape[a])}, {product_text(shape[a + 1 :])})"
            text = f"_rt.sum_middle(np.ascontiguousarray({text}).reshape({dims}))"
            shape = shape[:a] + shape[a + 1 :]
        return f"{text}.reshape({shape_text(self.dims(node))})"

    def lower_max(self, node, args):
        return self._reduce("np.max", "max_rows", node, args)

    def lower_min(self, node, args):
        return self._reduce("np.min", "min_rows", node, args)

    def lower_prod(self, node, args):
        if node.dtype == "float32":
            return self._reduce("_rt.prod_wide", "prod_rows_wide", node, args)
        return self._reduce("np.prod", "prod_rows", node, self._accumulate(node, args))

    def lower_relu(self, node, args):
        if node.dtype in ("float32", "float64"):
            return f"_rt.relu({args[0]})"
        # ints keep their own dtype (a ufunc would pick its first loop they cast to)
        return f"np.maximum({args[0]}, {self.np_dtype(node.dtype)}(0))"

    def _mask(self, helper, node, args):
        x = node.inputs[0]
        rows, perm = self._rows(node, args[0])
        moved_shape = shape_text([self.dims(x)[i] for i in perm])
        inverse = tuple(perm.index(i) for i in range(x.ndim))
        text = f"_rt.{helper}({rows}).reshape({moved_shape})"
        return text if inverse == tuple(range(x.ndim)) else f"np.transpose({text}, {inverse})"

    def lower_argmax_mask(self, node, args):
        return self._mask("first_max_rows", node, args)

    def lower_argmin_mask(self, node, args):
        return self._mask("first_min_rows", node, args)

    def lower_prod_others(self, node, args):
        return self._mask("prod_others_rows", node, args)

    def lower_reshape(self, node, args):
        x = node.inputs[0]
        if x.ndim == 0:
            return f"np.full({shape_text(self.dims(node))}, {args[0]})"
        if node.ndim == 0:
            return f"_rt.item({args[0]})"
        return f"np.ascontiguousarray({args[0]}).reshape({shape_text(self.dims(node))})"

    def lower_broadcast_to(self, node, args):
        if node.inputs[0].ndim == 0:
            return f"np.full({shape_text(self.dims(node))}, {args[0]})"
        return f"np.broadcast_to({args[0]}, {shape_text(self.dims(node))})"

    def lower_slice_grad(self, node, args):
        if node.inputs[0].ndim == 0:
            return super().lower_slice_grad(node, args)
        # an array written into a slice goes through a cached helper (see numba_runtime.put)
        return [
            f"{{out}} = np.zeros({shape_text(self.dims(node))}, dtype={self.np_dtype(node.dtype)})",
            f"_rt.put({{out}}[{self.key_code(node, node)}], {args[0]})",
        ]

    def lower_matmul(self, node, args):
        a, b = node.inputs
        if a.ndim <= 2 and b.ndim <= 2:
            if _small_product(a, b):
                return f"_rt.small_matmul({args[0]}, {args[1]})"
            return f"{args[0]} @ {args[1]}"
        left = args[0] if a.ndim == 3 else f"{args[0]}[None]"
        right = args[1] if b.ndim == 3 else f"{args[1]}[None]"
        return f"_rt.bmm({left}, {right})"

    def writes_into(self, instr):
        """A small product (``_rt.small_matmul``) writes into a given array by
        ``_rt.small_matmul_into``, which returns it (xor's two weight gradients)."""
        node = instr.node
        if node.op != "matmul" or instr.scalar or instr.lanes or instr.serial:
            return False
        a, b = node.inputs
        return a.ndim <= 2 and b.ndim <= 2 and _small_product(a, b)

    def lower_into(self, node, args, target):
        return f"_rt.small_matmul_into({target}, {args[0]}, {args[1]})"

    def copy_output(self, node, ref):
        if node.ndim == 0:
            return ref
        return f"{ref}.copy()"  # C order, one copy (ascontiguousarray first copied a transpose twice)
