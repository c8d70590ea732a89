"""The numba backend: the shared numpy-flavoured source, decorated with ``numba.njit``.

Where numba's numpy lacks a spelling (reductions other than sum along an axis,
``keepdims``, reshape of a non-contiguous array, batched matmul) the lowering
lays the data out as a C-contiguous (rows, reduced) matrix and calls a helper
in ``codegen.numba_runtime``.
"""

from . import fusion
from .emit import Emitter
from .schedule import dim_text, product_text, shape_text


class NumbaEmitter(Emitter):
    backend = "numba"
    runtime_module = "codegen.numba_runtime"
    decorator = "@numba.njit(cache=True, nogil=True, error_model='numpy')"

    def body(self, forward, backward, out_name_of, outputs):
        fused = fusion.fused_body(self, forward, backward, out_name_of, outputs) if fusion.enabled() else None
        if fused is None:
            return super().body(forward, backward, out_name_of, outputs)
        return fused

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
            return f"{args[0]} @ {args[1]}"
        left = args[0] if a.ndim == 3 else f"{args[0]}[None]"
        right = args[1] if b.ndim == 3 else f"{args[1]}[None]"
        return f"_rt.bmm({left}, {right})"

    def copy_output(self, node, ref):
        if node.ndim == 0:
            return ref
        return f"np.ascontiguousarray({ref}).copy()"
