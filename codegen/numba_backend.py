"""The numba backend: the shared numpy-flavoured source, decorated with ``numba.njit``.

Where numba's numpy lacks a spelling (reductions other than sum along an axis,
``keepdims``, reshape of a non-contiguous array, batched matmul) the lowering
lays the data out as a C-contiguous (rows, reduced) matrix and calls a helper
in ``codegen.numba_runtime``.
"""

from . import fusion
from symgrad.ops.registry import OPS
from .emit import Emitter
from .schedule import find_loops, product_text, shape_text

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


def _serial(node):
    return node.serial


class NumbaEmitter(Emitter):
    backend = "numba"
    runtime_module = "symgrad.codegen.numba_runtime"
    module_imports = ("import numba",)
    decorator = "@numba.njit(cache=True, nogil=True, error_model='numpy')"

    def body(self, forward, backward, out_name_of, outputs):
        fused = fusion.fused_body(self, forward, backward, out_name_of, outputs) if fusion.enabled() else None
        if fused is not None:
            return fused
        nodes = list(forward) + list(backward)
        self.branch_plan(nodes, outputs)
        owned = getattr(self, "owner", {})

        def rollable(node):
            return (
                node.ndim == 0
                and node.op in _LOOPABLE
                and id(node) not in out_name_of
                and id(node) not in owned
            )

        # the depth-first schedule, or creation order (also inputs first): a recurrence of several
        # states is built step by step, so its creation order repeats where depth-first may not
        best = (0, nodes, [])
        by_creation = sorted(forward, key=_serial) + sorted(backward, key=_serial)
        for order in (nodes, by_creation):
            loops = find_loops(order, rollable, barriers=(len(forward),))
            covered = sum(loop.period * loop.count for loop in loops)
            if covered > best[0]:
                best = (covered, order, loops)
        _, nodes, loops = best
        if not loops:
            return super().body(forward, backward, out_name_of, outputs)
        return self.rolled_body(nodes, len(forward), loops, out_name_of, bool(backward))

    # ------------------------------------------------------------ rolled loops

    def rolled_body(self, nodes, n_forward, loops, out_name_of, has_backward):
        """The kernel's statements with each repeated run of scalar statements (a recurrence
        written out) rolled back into a loop: numba's compile time grows with the statements
        it sees, so a loop body compiled once replaces thousands of straight-line lines."""
        body, part, p = [], None, 0
        starts = {loop.start: k for k, loop in enumerate(loops)}
        self._loop_arrays = {}
        while p < len(nodes):
            here = "backward" if p >= n_forward else "forward"
            if p in starts:
                lines = self.loop_statements(nodes, loops, starts[p])
                p = loops[starts[p]].stop
            else:
                lines = self.top_statement(nodes[p], out_name_of)
                p += 1
            if lines and has_backward and here != part:
                body.append(f"# {here}")
                part = here
            body.extend(lines)
        return body

    def loop_statements(self, nodes, loops, k):
        """The ``for`` loop of ``loops[k]``: arrays for the values read after it, the values carried
        in, the body; then every statement of the run is named by its loop variable (last
        iteration) or array element."""
        loop = loops[k]
        members = loop.body(nodes) + [nodes[reader.start + j] for reader, j, _ in loop.extra]
        operands = loop.operands + [specs for _, _, specs in loop.extra]
        var, prev = [], {}
        for j, node in enumerate(members):
            hint = [
                var[spec[1]]
                if spec[0] in ("slot", "carried") and spec[1] < len(var)
                else self._fixed(spec[1])
                if spec[0] == "fixed"
                else ""
                for spec in operands[j]
            ]
            var.append(self.namer.derive(node, hint))
        for j, specs in enumerate(operands):
            for spec in specs:
                # read after this iteration overwrote it: keep the previous value aside
                if spec[0] == "carried" and spec[1] < j and spec[1] not in prev:
                    prev[spec[1]] = self.namer.claim(var[spec[1]] + "_prev")
        step = self.namer.claim("k")
        lines = [
            f"# {loop.period} statement{'s' if loop.period > 1 else ''} repeated {loop.count} times, "
            "rolled into a loop"
        ]
        for j in sorted(loop.stored):
            array = self.namer.claim(var[j] + "_all")
            self._loop_arrays[(k, j)] = array
            lines.append(f"{array} = np.empty({loop.count}, dtype={self.np_dtype(members[j].dtype)})")
        initial = {}
        for specs in operands:
            for spec in specs:
                if spec[0] == "carried":
                    initial[spec[1]] = self._fixed(spec[2])
        for j2, value in sorted(initial.items()):
            lines.append(f"{prev.get(j2, var[j2])} = {value}")
        lines.append(f"for {step} in range({loop.count}):")
        for j, node in enumerate(members):
            comment = self.rule_comment(node)
            if j in loop.hoisted:
                code = self._stacked(loop.hoisted[j], step)
                comment = "  # computed in an earlier loop"
            else:
                args = []
                for spec in operands[j]:
                    if spec[0] == "fixed":
                        args.append(self._fixed(spec[1]))
                    elif spec[0] == "slot":
                        args.append(var[spec[1]])
                    elif spec[0] == "carried":
                        args.append(prev.get(spec[1], var[spec[1]]))
                    else:
                        args.append(self._stacked(spec, step))
                code = self.lower(node, args)
            lines.append(f"    {var[j]} = {code}{comment}")
            if j in loop.stored:
                lines.append(f"    {self._loop_arrays[(k, j)]}[{step}] = {var[j]}")
        lines += [f"    {name} = {var[j2]}" for j2, name in sorted(prev.items())]
        for p in range(loop.start, loop.stop):
            t, j = loop.place(p)
            if t == loop.count - 1:
                self.names[id(nodes[p])] = var[j]
            elif j in loop.stored:
                self.names[id(nodes[p])] = f"{self._loop_arrays[(k, j)]}[{t}]"
        return lines

    def _fixed(self, node):
        """A value from before the loop (a constant first used later gets its literal now)."""
        if id(node) not in self.names and node.op == "constant":
            self.statement(node, {})
        return self.ref(node)

    def _stacked(self, spec, step):
        """An earlier loop's value of body statement ``j2`` at iteration ``t0 + direction*step``."""
        _, source, j2, t0, direction = spec
        at = (
            (step if t0 == 0 else f"{t0} + {step}")
            if direction == 1
            else (f"{t0} - {step}" if direction == -1 else f"{t0} + {direction} * {step}")
        )
        return f"{self._loop_arrays[(source, j2)]}[{at}]"

    def loop_indices(self, rank):
        """Loop index names, claimed once per kernel and reused by every fused loop."""
        names = self.__dict__.setdefault("_loop_names", [])
        while len(names) < rank:
            names.append(self.namer.claim("ijklmnpq"[len(names)] if len(names) < 8 else f"i{len(names)}"))
        return names[:rank]

    def _rows(self, node, arg):
        """``arg`` with the reduced axes moved last, as a (kept, reduced) C-contiguous matrix."""
        x = node.inputs[0]
        axes = node.attrs["axes"]
        keep = [i for i in range(x.ndim) if i not in axes]
        perm = tuple(keep + list(axes))
        moved = arg if perm == tuple(range(x.ndim)) else f"np.transpose({arg}, {perm})"
        kept = product_text([x.shape[i] for i in keep])
        reduced = product_text([x.shape[i] for i in axes])
        return f"np.ascontiguousarray({moved}).reshape(({kept}, {reduced}))", perm

    def _reduce(self, fn, helper, node, args):
        x = node.inputs[0]
        axes = node.attrs["axes"]
        if len(axes) == x.ndim:
            full = f"{fn}({args[0]})"
            return f"np.full({shape_text(node.shape)}, {full})" if node.attrs["keepdims"] else full
        rows, _ = self._rows(node, args[0])
        return f"_rt.{helper}({rows}).reshape({shape_text(node.shape)})"

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
        text = args[0]
        for a in sorted(axes, reverse=True):
            text = f"np.sum({text}, axis={a})"
        if node.attrs["keepdims"]:
            text = f"{text}.reshape({shape_text(node.shape)})"
        return text

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
        moved_shape = shape_text([x.shape[i] for i in perm])
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
            return f"np.full({shape_text(node.shape)}, {args[0]})"
        if node.ndim == 0:
            return f"_rt.item({args[0]})"
        return f"np.ascontiguousarray({args[0]}).reshape({shape_text(node.shape)})"

    def lower_broadcast_to(self, node, args):
        if node.inputs[0].ndim == 0:
            return f"np.full({shape_text(node.shape)}, {args[0]})"
        return f"np.broadcast_to({args[0]}, {shape_text(node.shape)})"

    def lower_matmul(self, node, args):
        a, b = node.inputs
        if a.ndim <= 2 and b.ndim <= 2:
            if _small_product(a, b):
                return f"_rt.small_matmul({args[0]}, {args[1]})"
            return f"{args[0]} @ {args[1]}"
        left = args[0] if a.ndim == 3 else f"{args[0]}[None]"
        right = args[1] if b.ndim == 3 else f"{args[1]}[None]"
        return f"_rt.bmm({left}, {right})"

    def copy_output(self, node, ref):
        if node.ndim == 0:
            return ref
        return f"np.ascontiguousarray({ref}).copy()"
