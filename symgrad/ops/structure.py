"""Structural ops: reshape, broadcast, transpose, slicing and indexing, concatenate, stack.

Slicing keeps numpy's syntax (``x[1:]``, ``x[:-1]``, ``X[:, 0]``, ``x[None]``).
On a symbolic dimension the bounds must fit: ``x[1:]`` on a length-``n`` axis
needs ``n >= 1``, and ``x[3]`` needs ``n >= 4``. The compiled function checks
those requirements on every call and raises ``InputError`` when they fail,
so generated code never reads out of bounds.
"""

import numpy as np
import sympy

from ..errors import ShapeError, UnsupportedError
from ..graph import (
    Expr,
    as_shape,
    broadcast_shapes,
    dim_product,
    dim_str,
    dims_equal,
    normalize_axes,
    promote,
    shape_str,
)
from .registry import ALL, FOLD_LIMIT, register, make, as_expr, constant, count
from .elementwise import add, cast, less, mul, where


# ---------------------------------------------------------------- reshape / broadcast / transpose


def _reshape_infer(inputs, attrs):
    return attrs["shape"], inputs[0].dtype


def _size_equal(a, b):
    diff = dim_product(a) - dim_product(b)
    return diff == 0 or (isinstance(diff, sympy.Expr) and sympy.expand(diff) == 0)


def reshape(x, shape):
    """``x`` with a new shape of the same size; one dimension may be -1 (inferred)."""
    x = as_expr(x)
    if isinstance(shape, (int, np.integer, str)):
        shape = (shape,)
    shape = tuple(shape)
    if sum(1 for d in shape if isinstance(d, (int, np.integer)) and d == -1) > 1:
        raise ShapeError(f"reshape of {shape_str(x.shape)}: only one dimension may be -1")
    if any(isinstance(d, (int, np.integer)) and d == -1 for d in shape):
        known = dim_product(
            [as_shape([d])[0] for d in shape if not (isinstance(d, (int, np.integer)) and d == -1)]
        )
        total = dim_product(x.shape)
        if known == 0:
            raise ShapeError(f"reshape of {shape_str(x.shape)} to {shape!r}: cannot infer -1 next to a 0")
        inferred = sympy.cancel(sympy.Integer(total) / known if isinstance(total, int) else total / known)
        if not (inferred.is_Integer or (inferred.is_polynomial() and sympy.fraction(inferred)[1] == 1)):
            raise ShapeError(f"cannot reshape {shape_str(x.shape)} to {shape!r}: sizes do not divide")
        inferred = int(inferred) if inferred.is_Integer else inferred
        shape = tuple(inferred if (isinstance(d, (int, np.integer)) and d == -1) else d for d in shape)
    new = as_shape(shape, where="reshape")
    if not _size_equal(x.shape, new):
        raise ShapeError(f"cannot reshape {shape_str(x.shape)} to {shape_str(new)}: sizes differ")
    return make("reshape", [x], shape=new)


def expand_dims(x, axis):
    x = as_expr(x)
    rank = x.ndim + (len(axis) if isinstance(axis, (tuple, list)) else 1)
    axes = normalize_axes(axis, rank, where="expand_dims")
    dims = iter(x.shape)
    return reshape(x, tuple(1 if i in axes else next(dims) for i in range(rank)))


def squeeze(x, axis=None):
    x = as_expr(x)
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.shape) if isinstance(d, int) and d == 1)
    else:
        axes = normalize_axes(axis, x.ndim, where="squeeze")
        for a in axes:
            if x.shape[a] != 1:
                raise ShapeError(f"squeeze: axis {a} of {shape_str(x.shape)} is not 1")
    return reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


def broadcast_to(x, shape):
    """``x`` repeated along new or size-1 axes to ``shape`` (the seeds' Repeat node)."""
    x = as_expr(x)
    shape = as_shape(shape, where="broadcast_to")
    out = broadcast_shapes(x.shape, shape, what="broadcast_to operand and target")
    if len(out) != len(shape) or not all(dims_equal(a, b) for a, b in zip(out, shape)):
        raise ShapeError(f"cannot broadcast {shape_str(x.shape)} to {shape_str(shape)}")
    return make("broadcast_to", [x], shape=shape)


def sum_to(g, shape):
    """Undo broadcasting: sum ``g`` over the axes along which ``shape`` was repeated."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i
        for i, d in enumerate(shape)
        if isinstance(d, int)
        and d == 1
        and not (isinstance(g.shape[lead + i], int) and g.shape[lead + i] == 1)
    )
    if axes and g.dtype == "bool":
        g = cast(g, "int64")  # as reduce.sum does (its builder sits above this module)
    out = make("sum", [g], axes=axes, keepdims=False) if axes else g
    return out if out.shape == tuple(shape) else reshape(out, shape)


def transpose(x, axes=None):
    """Permute the axes (reverse them by default, as ``.T`` does)."""
    x = as_expr(x)
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    if not isinstance(axes, (list, tuple)) or not all(
        isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes
    ):
        raise ShapeError(f"transpose of {shape_str(x.shape)}: axes must be a tuple of ints, got {axes!r}")
    axes = tuple(int(a) % max(x.ndim, 1) for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ShapeError(f"transpose of {shape_str(x.shape)}: {axes} is not a permutation of its axes")
    return make("transpose", [x], axes=axes)


def _linear_jvp(t, *args):
    """JVP of an op linear in its first input: the same op applied to the tangent."""
    out = args[-1]
    return make(out.op, [t] + list(out.inputs[1:]), **out.attrs)


# ---------------------------------------------------------------- batching rules (sg.vmap)
# rule(node, args, batched): node's value for every example, the batch axis first; args are the
# operands, those with batched[i] carrying the batch as a new leading axis (symgrad/batching.py)

_WHOLE = ("s", None, None, None)  # a key part keeping a whole axis


def batch_size(args, batched):
    """The batch size: the leading dim of any batched operand."""
    return next(a.shape[0] for a, b in zip(args, batched) if b)


def batched_operand(x, is_batched, size):
    """An operand with the batch axis: an unbatched one is repeated along it."""
    return x if is_batched else broadcast_to(x, (size,) + x.shape)


def _batch_reshape(node, args, batched):
    (x,) = args
    return reshape(x, x.shape[:1] + node.attrs["shape"])


def _batch_broadcast_to(node, args, batched):
    (x,) = args
    lined_up = reshape(x, x.shape[:1] + (1,) * (node.ndim - x.ndim + 1) + x.shape[1:])
    return broadcast_to(lined_up, x.shape[:1] + node.attrs["shape"])


def _batch_transpose(node, args, batched):
    return make("transpose", args, axes=(0,) + tuple(a + 1 for a in node.attrs["axes"]))


def _batch_getitem(node, args, batched):
    (x,) = args
    attrs = node.attrs
    return make(
        "getitem",
        [x],
        key=(_WHOLE,) + attrs["key"],
        out_shape=x.shape[:1] + attrs["out_shape"],
        requires=attrs["requires"],
    )


def _batch_slice_grad(node, args, batched):
    (g,) = args
    region = sum(1 for k in node.attrs["key"] if k[0] != "i")  # the rank g broadcasts to
    if g.ndim - 1 < region:
        g = reshape(g, g.shape[:1] + (1,) * (region - g.ndim + 1) + g.shape[1:])
    return make("slice_grad", [g], key=(_WHOLE,) + node.attrs["key"], shape=g.shape[:1] + node.attrs["shape"])


def _batch_concatenate(node, args, batched):
    size = batch_size(args, batched)
    xs = [batched_operand(x, b, size) for x, b in zip(args, batched)]
    return make("concatenate", xs, axis=node.attrs["axis"] + 1)


def _row_offsets(idx, size, rows):
    """Each example's indices into its own block of ``size * rows`` stacked rows (negative
    indices wrapped first): idx + example * rows. ``idx`` is batched."""
    n = count([rows], "int64")
    idx = where(less(idx, 0), add(idx, n), idx)
    offsets = reshape(mul(arange(size), n), (size,) + (1,) * (idx.ndim - 1))
    return add(idx, offsets)


def _move_first_after(x, k):
    """(B, a1..ak, rest) -> (a1..ak, B, rest)."""
    return transpose(x, tuple(range(1, k + 1)) + (0,) + tuple(range(k + 1, x.ndim)))


def _move_to_front(x, k):
    """(a1..ak, B, rest) -> (B, a1..ak, rest)."""
    return transpose(x, (k,) + tuple(range(k)) + tuple(range(k + 1, x.ndim)))


def _batch_take0(node, args, batched):
    x, idx = args
    if not batched[0]:  # one table, each example's indices
        return make("take0", [x, idx])
    size, rows = x.shape[0], x.shape[1]
    if not batched[1]:  # each example's table, the same indices: gather along axis 1
        return _move_to_front(make("take0", [_move_first_after(x, 1), idx]), idx.ndim)
    flat = reshape(x, (size * rows,) + x.shape[2:])
    return make("take0", [flat, _row_offsets(idx, size, rows)])


def _batch_scatter_add0(node, args, batched):
    g, idx = args
    rows = node.attrs["size"]
    if not batched[1]:  # the same indices for every example: scatter along axis 1
        k = idx.ndim
        out = make("scatter_add0", [_move_first_after(g, k), idx], size=rows)
        return _move_to_front(out, 1)
    size = idx.shape[0]
    g = batched_operand(g, batched[0], size)
    out = make("scatter_add0", [g, _row_offsets(idx, size, rows)], size=size * rows)
    return reshape(out, (size, rows) + out.shape[1:])


def _batch_rows(node, args, batched):
    """take_last / scatter_last work on (rows, k) pairs: the batch joins the rows."""
    size = batch_size(args, batched)
    pairs = [batched_operand(a, b, size) for a, b in zip(args, batched)]
    flat = [reshape(a, (size * a.shape[1],) + a.shape[2:]) for a in pairs]
    out = make(node.op, flat, **node.attrs)
    return reshape(out, (size,) + node.shape)


register(
    "reshape",
    _reshape_infer,
    lambda x, shape: np.reshape(x, shape),
    (lambda g, x, out: reshape(g, x.shape),),
    jvp=_linear_jvp,
    note="d reshape = reshape back",
    linear=True,
    moves_adjoint=(0,),
    keeps_rows=True,
    aliases=True,
    batch=_batch_reshape,
)
register(
    "broadcast_to",
    _reshape_infer,
    lambda x, shape: np.broadcast_to(x, shape),
    (lambda g, x, out: sum_to(g, x.shape),),
    jvp=_linear_jvp,
    note="d repeat = sum over the repeated axes",
    linear=True,
    moves_adjoint=(0,),
    keeps_rows=True,
    aliases=True,
    batch=_batch_broadcast_to,
)


def _transpose_vjp(g, x, out):
    """Transpose the adjoint back; an adjoint that is a product ``a @ b`` (the other operand's
    adjoint of ``q @ k.T``: ``q.T @ g``) turned back is ``b.T @ a.T``, computed in the order it is
    wanted instead of computed and then copied out of its transpose. The adjoint is this
    transpose's alone (its one input), so no product is computed twice."""
    back = tuple(int(a) for a in np.argsort(out.attrs["axes"]))
    n = g.ndim
    if (
        g.op == "matmul"
        and n >= 2
        and back == tuple(range(n - 2)) + (n - 1, n - 2)
        and all(i.ndim == n for i in g.inputs)
    ):
        a, b = g.inputs
        return make("matmul", [transpose(b, back), transpose(a, back)])
    return transpose(g, back)


register(
    "transpose",
    lambda inputs, attrs: (tuple(inputs[0].shape[a] for a in attrs["axes"]), inputs[0].dtype),
    lambda x, axes: np.transpose(x, axes),
    (_transpose_vjp,),
    jvp=_linear_jvp,
    note="d transpose = transpose back",
    linear=True,
    moves_adjoint=(0,),
    keeps_rows=True,
    aliases=True,
    batch=_batch_transpose,
)


# ---------------------------------------------------------------- slicing


def _index_int(value, where):
    if isinstance(value, (bool, np.bool_)):
        raise UnsupportedError(f"{where}: bool {value!r} is not an index")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, sympy.Expr):
        return value
    raise UnsupportedError(
        f"{where}: {value!r} is not an integer index "
        "(indices must be Python ints known when the graph is built)"
    )


def _normalize_key(x, key):
    """numpy basic indexing as a tuple of ('i', k) / ('s', start, stop, step) / ('n',)."""
    if not isinstance(key, tuple):
        key = (key,)
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise ShapeError("an index can only have a single ellipsis ('...')")
    used = sum(1 for k in key if k is not None and k is not Ellipsis)
    if used > x.ndim:
        raise ShapeError(f"too many indices for an expression of shape {shape_str(x.shape)}: {used} given")
    out = []
    for k in key:
        if k is Ellipsis:
            out.extend([("s", None, None, None)] * (x.ndim - used))
        elif k is None:
            out.append(("n",))
        elif isinstance(k, slice):
            out.append(
                ("s",)
                + tuple(
                    None if v is None else _index_int(v, "slice bound") for v in (k.start, k.stop, k.step)
                )
            )
        elif isinstance(k, Expr) or isinstance(k, (np.ndarray, list)):
            raise UnsupportedError(
                "indexing with an array of indices (advanced indexing) is not supported yet; "
                "use integer and slice indices"
            )
        else:
            out.append(("i", _index_int(k, "index")))
    if not any(k is Ellipsis for k in key):
        out.extend([("s", None, None, None)] * (x.ndim - used))
    return tuple(out)


def _slice_length(dim, start, stop, step, axis, requires):
    """Length of dim[start:stop:step]; on a symbolic dim, record how large it must be."""
    step = 1 if step is None else step
    if step == 0:
        raise ShapeError("slice step cannot be zero")
    if isinstance(dim, int) and all(isinstance(v, int) or v is None for v in (start, stop)):
        return len(range(*slice(start, stop, step).indices(dim)))
    if step == -1 and start is None and stop is None:
        return dim  # the whole axis reversed (flip)
    if step != 1:
        raise UnsupportedError(f"a slice step of {step} on the symbolic dimension {dim_str(dim)}")

    def bound(v, default):
        if v is None:
            return default
        if isinstance(v, int):
            if v < 0:
                requires.append((axis, -v))
                return dim + v
            requires.append((axis, v))
            return v
        return v

    lo, hi = bound(start, 0), bound(stop, dim)
    length = sympy.expand(hi - lo)
    if length.is_Integer:
        if length < 0:
            raise ShapeError(f"slice {start}:{stop} is empty on every length of dimension {dim_str(dim)}")
        return int(length)
    return length


def _getitem_infer(inputs, attrs):
    (x,) = inputs
    return attrs["out_shape"], x.dtype


def getitem(x, key):
    """numpy indexing: ints, slices, None and ``...``, plus integer arrays (see ``take``)."""
    x = as_expr(x)
    parts = key if isinstance(key, tuple) else (key,)
    if any(isinstance(k, (Expr, np.ndarray, list)) for k in parts):
        return _advanced_getitem(x, parts)
    norm = _normalize_key(x, key)
    shape = []
    requires = []
    axis = 0
    for k in norm:
        if k[0] == "n":
            shape.append(1)
            continue
        dim = x.shape[axis]
        if k[0] == "i":
            i = k[1]
            if isinstance(i, int) and isinstance(dim, int):
                if not -dim <= i < dim:
                    raise ShapeError(
                        f"index {i} is out of bounds for axis {axis} of size {dim} "
                        f"(shape {shape_str(x.shape)})"
                    )
            elif isinstance(i, int):
                requires.append((axis, i + 1 if i >= 0 else -i))
        else:
            shape.append(_slice_length(dim, k[1], k[2], k[3], axis, requires))
        axis += 1
    shape = tuple(shape)
    if all(k == ("s", None, None, None) for k in norm):
        return x
    req = tuple(
        sorted(
            set((x.shape[a], m) for a, m in requires if not isinstance(x.shape[a], int)),
            key=lambda r: (str(r[0]), r[1]),
        )
    )
    return make("getitem", [x], key=norm, out_shape=shape, requires=req)


def _np_key(key):
    out = []
    for k in key:
        if k[0] == "n":
            out.append(None)
        elif k[0] == "i":
            out.append(k[1])
        else:
            out.append(slice(k[1], k[2], k[3]))
    return tuple(out)


def slice_grad(g, key, shape):
    """zeros of ``shape`` with ``g`` written into ``[key]`` (the adjoint of slicing)."""
    return make("slice_grad", [g], key=key, shape=tuple(shape))


def _np_slice_grad(g, key, shape):
    out = np.zeros(shape, dtype=np.asarray(g).dtype)
    out[_np_key(key)] = g
    return out


# consecutive rows of one array each written by a slice_grad are stacked from this many on (a
# loop's reads xs[t]); fewer stay zeros with a row set, added (x[0] and x[1] of a small vector)
ROWS_STACKED_FROM = 4


def _written_row(node):
    """The row of its leading axis (an int >= 0) the slice_grad ``node`` writes whole, or None
    (a block, an element, a place on a named dim)."""
    key, shape = node.attrs["key"], node.shape
    if not key or key[0][0] != "i" or not isinstance(shape[0], int) or not isinstance(key[0][1], int):
        return None
    if any(k != _WHOLE for k in key[1:]):
        return None
    row = key[0][1]
    return row + shape[0] if row < 0 else row


def _slice_grads_sum(nodes):
    """The sum of the slice_grads ``nodes`` (one array's adjoints) with each run of at least
    ``ROWS_STACKED_FROM`` consecutive written rows as one stack of those rows (written into its
    block of zeros when it is not the whole array): (sum of the runs, the nodes taken), or None."""
    rows = {}
    for node in nodes:
        row = _written_row(node) if node.shape == nodes[0].shape else None
        if row is not None:
            rows.setdefault(row, []).append(node)
    shape = nodes[0].shape
    total, taken = None, []
    ordered = sorted(rows)
    first = 0
    while first < len(ordered):
        last = first
        while last + 1 < len(ordered) and ordered[last + 1] == ordered[last] + 1:
            last += 1
        start, stop = ordered[first], ordered[last] + 1
        first = last + 1
        if stop - start < ROWS_STACKED_FROM:
            continue
        values = []
        for row in range(start, stop):
            value = None
            for node in rows[row]:
                value = node.inputs[0] if value is None else add(value, node.inputs[0])
                taken.append(node)
            values.append(value)
        block = stack(values)
        if (start, stop) != (0, shape[0]):
            block = slice_grad(block, (("s", start, stop, None),) + (_WHOLE,) * (len(shape) - 1), shape)
        total = block if total is None else add(total, block)
    return None if total is None else (total, taken)


register(
    "getitem",
    _getitem_infer,
    lambda x, key, out_shape, requires: np.asarray(x)[_np_key(key)],
    (lambda g, x, out: slice_grad(g, out.attrs["key"], x.shape),),
    jvp=_linear_jvp,
    note="d x[key] = zeros with g written into [key]",
    linear=True,
    moves_adjoint=(0,),
    keeps_rows=True,
    aliases=True,
    batch=_batch_getitem,
)
register(
    "slice_grad",
    lambda inputs, attrs: (attrs["shape"], inputs[0].dtype),
    _np_slice_grad,
    (lambda gg, g, out: _take_key(gg, out.attrs["key"], g.shape),),
    jvp=_linear_jvp,
    note="d scatter = gather",
    linear=True,
    moves_adjoint=(0,),
    batch=_batch_slice_grad,
    sum_joint=_slice_grads_sum,
)


def _take_key(x, key, shape):
    node = make("getitem", [x], key=key, out_shape=tuple(shape), requires=())
    return node


# ---------------------------------------------------------------- concatenate / stack


def _concat_infer(inputs, attrs):
    axis = attrs["axis"]
    first = inputs[0]
    for other in inputs[1:]:
        if other.ndim != first.ndim:
            raise ShapeError(
                f"concatenate: shapes {shape_str(first.shape)} and {shape_str(other.shape)} "
                "have different ranks"
            )
        for i, (a, b) in enumerate(zip(first.shape, other.shape)):
            if i != axis and not dims_equal(a, b):
                raise ShapeError(
                    f"concatenate along axis {axis}: shapes {shape_str(first.shape)} and "
                    f"{shape_str(other.shape)} differ in dimension {i}"
                )
    total = 0
    for i in inputs:
        total = total + i.shape[axis]
    if isinstance(total, sympy.Expr):
        total = sympy.expand(total)
        total = int(total) if total.is_Integer else total
    shape = first.shape[:axis] + (total,) + first.shape[axis + 1 :]
    return shape, promote(*[i.dtype for i in inputs])


def _concat_block(index, inputs, out):
    """The key of input ``index``'s block in the output of a concatenate."""
    axis = out.attrs["axis"]
    start = 0
    for i in inputs[:index]:
        start = start + i.shape[axis]
    stop = start + inputs[index].shape[axis]
    return tuple(("s", None, None, None) if a != axis else ("s", start, stop, None) for a in range(out.ndim))


def _concat_vjp(index, g, *args):
    *inputs, out = args
    return _take_key(g, _concat_block(index, inputs, out), inputs[index].shape)


def _sequence(xs, where):
    if isinstance(xs, Expr) or not isinstance(xs, (list, tuple)):
        raise UnsupportedError(f"{where} takes a list or tuple of expressions, got {type(xs).__name__}")
    return [as_expr(x) for x in xs]


def concatenate(xs, axis=0):
    """Join expressions along an existing axis."""
    xs = _sequence(xs, "concatenate")
    if not xs:
        raise ShapeError("concatenate needs at least one expression")
    if xs[0].ndim == 0:
        raise ShapeError("concatenate: scalars cannot be concatenated; use stack")
    (axis,) = normalize_axes(axis, xs[0].ndim, where="concatenate")
    if len(xs) == 1:
        return xs[0]
    dtype = promote(*[x.dtype for x in xs])
    xs = [x if x.dtype == dtype else cast(x, dtype) for x in xs]
    return make("concatenate", xs, axis=axis)


def _concat_jvp(index, t, *args):
    # the tangent of input ``index`` written into its block of the output, zeros elsewhere
    *inputs, out = args
    return slice_grad(t, _concat_block(index, inputs, out), out.shape)


def _concat_jvp_joint(node, tangents):
    # every input carries a tangent: their concatenation (one array, written block by block),
    # not the sum of each written into zeros; otherwise the blocks (a lone one is read as a window)
    if any(t is None for t in tangents):
        return None
    return concatenate(list(tangents), node.attrs["axis"])


register(
    "concatenate",
    _concat_infer,
    lambda *xs, axis: np.concatenate(xs, axis=axis),
    vjp_variadic=_concat_vjp,
    jvp_variadic=_concat_jvp,
    jvp_joint=_concat_jvp_joint,
    note="d concatenate = the matching slice of g",
    linear=True,
    moves_adjoint=ALL,
    keeps_rows=True,
    batch=_batch_concatenate,
)


def stack(xs, axis=0):
    """Join expressions of one shape along a new axis."""
    xs = _sequence(xs, "stack")
    if not xs:
        raise ShapeError("stack needs at least one expression")
    for x in xs[1:]:
        if len(x.shape) != len(xs[0].shape) or not all(
            dims_equal(a, b) for a, b in zip(x.shape, xs[0].shape)
        ):
            raise ShapeError(f"stack: shapes {shape_str(xs[0].shape)} and {shape_str(x.shape)} differ")
    rank = xs[0].ndim + 1
    (axis,) = normalize_axes(axis, rank, where="stack")
    return concatenate([expand_dims(x, axis) for x in xs], axis=axis)


# ---------------------------------------------------------------- integer-array indexing (gather)
#
# x[idx] / take(x, idx, axis) gathers whole slices; take_along_axis(x, idx, axis) picks one element
# per position (numpy's take_along_axis), which is what x[arange(N), labels] means. Their adjoints
# scatter-add, so an index that repeats accumulates its gradients. Index values are checked when
# the compiled function runs: an index out of range raises InputError, never reads out of bounds.


def _int_index(idx, where):
    idx = as_expr(idx)
    if idx.dtype == "bool":
        raise UnsupportedError(
            f"{where}: indexing with a bool mask gives a shape known only at run "
            "time; use sg.where(mask, x, 0) instead"
        )
    if idx.dtype not in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32"):
        raise UnsupportedError(f"{where}: index arrays must hold integers, got dtype {idx.dtype}")
    if idx.dtype != "int64":
        idx = cast(idx, "int64")
    return idx


def _check_constant_index(idx, dim, axis, where):
    if idx.op == "constant" and isinstance(dim, int) and idx.value.size:
        lo, hi = int(idx.value.min()), int(idx.value.max())
        if lo < -dim or hi >= dim:
            bad = hi if hi >= dim else lo
            raise ShapeError(f"{where}: index {bad} is out of bounds for axis {axis} of size {dim}")


def _take0_infer(inputs, attrs):
    x, idx = inputs
    return idx.shape + x.shape[1:], x.dtype


def _np_take0(x, idx):
    return np.take(np.asarray(x), np.asarray(idx), axis=0)


def _np_scatter_add0(g, idx, size):
    g, idx = np.asarray(g), np.asarray(idx)
    out = np.zeros((size,) + g.shape[idx.ndim :], dtype=g.dtype)
    np.add.at(
        out,
        idx.reshape(-1) % max(size, 1) if size else idx.reshape(-1),
        g.reshape((idx.size,) + g.shape[idx.ndim :]),
    )
    return out


def scatter_add0(g, idx, size):
    """zeros of (size,) + rest with g's slices added at rows ``idx`` (the adjoint of take0)."""
    return make("scatter_add0", [g, idx], size=size)


register(
    "take0",
    _take0_infer,
    _np_take0,
    (lambda g, x, idx, out: scatter_add0(g, idx, x.shape[0]), None),
    jvp=(_linear_jvp, None),
    note="d x[idx] = scatter-add g into the rows idx",
    moves_adjoint=(0,),
    keeps_rows=True,
    index_operand=True,
    batch=_batch_take0,
)
register(
    "scatter_add0",
    lambda inputs, attrs: ((attrs["size"],) + inputs[0].shape[inputs[1].ndim :], inputs[0].dtype),
    lambda g, idx, size: _np_scatter_add0(g, idx, size),
    (lambda gg, g, idx, out: make("take0", [gg, idx]), None),
    jvp=(_linear_jvp, None),
    note="d scatter-add = gather",
    moves_adjoint=(0,),
    index_operand=True,
    batch=_batch_scatter_add0,
)


def take(x, indices, axis=0):
    """Slices of ``x`` along ``axis`` picked by an integer array (numpy's ``take``)."""
    x = as_expr(x)
    if x.ndim == 0:
        raise ShapeError("take: cannot index a scalar")
    (axis,) = normalize_axes(axis, x.ndim, where="take")
    idx = _int_index(indices, "take")
    _check_constant_index(idx, x.shape[axis], axis, "take")
    if axis == 0:
        return make("take0", [x, idx])
    perm = (axis,) + tuple(i for i in range(x.ndim) if i != axis)
    gathered = make("take0", [transpose(x, perm), idx])
    # gathered: idx dims, then x's other axes in order; put the idx dims where the axis was
    k = idx.ndim
    rest = list(range(k, gathered.ndim))
    order = rest[:axis] + list(range(k)) + rest[axis:]
    return transpose(gathered, tuple(order))


def _take_last_infer(inputs, attrs):
    x, idx = inputs
    return idx.shape, x.dtype


def _np_take_last(x, idx):
    return np.take_along_axis(np.asarray(x), np.asarray(idx), axis=1)


def _np_scatter_last(g, idx, size):
    g, idx = np.asarray(g), np.asarray(idx)
    out = np.zeros((g.shape[0], size), dtype=g.dtype)
    rows = np.repeat(np.arange(g.shape[0]), g.shape[1] if g.ndim > 1 else 1)
    np.add.at(out, (rows, idx.reshape(-1) % max(size, 1) if size else idx.reshape(-1)), g.reshape(-1))
    return out


register(
    "take_last",
    _take_last_infer,
    _np_take_last,
    (lambda g, x, idx, out: make("scatter_last", [g, idx], size=x.shape[1]), None),
    jvp=(_linear_jvp, None),
    note="d take_along_axis = scatter-add g into the picked positions",
    moves_adjoint=(0,),
    keeps_rows=True,
    index_operand=True,
    batch=_batch_rows,
)
register(
    "scatter_last",
    lambda inputs, attrs: ((inputs[0].shape[0], attrs["size"]), inputs[0].dtype),
    lambda g, idx, size: _np_scatter_last(g, idx, size),
    (lambda gg, g, idx, out: make("take_last", [gg, idx]), None),
    jvp=(_linear_jvp, None),
    note="d scatter-add = gather",
    moves_adjoint=(0,),
    index_operand=True,
    batch=_batch_rows,
)


def take_along_axis(x, indices, axis):
    """numpy's ``take_along_axis``: out[..., j, ...] = x[..., indices[..., j, ...], ...] along ``axis``."""
    x = as_expr(x)
    idx = _int_index(indices, "take_along_axis")
    if idx.ndim != x.ndim:
        raise ShapeError(
            f"take_along_axis: indices of shape {shape_str(idx.shape)} must have the "
            f"rank of x {shape_str(x.shape)}"
        )
    (axis,) = normalize_axes(axis, x.ndim, where="take_along_axis")
    for i, (a, b) in enumerate(zip(x.shape, idx.shape)):
        if i != axis and not dims_equal(a, b):
            raise ShapeError(
                f"take_along_axis: shapes {shape_str(x.shape)} and {shape_str(idx.shape)} "
                f"differ in dimension {i}"
            )
    _check_constant_index(idx, x.shape[axis], axis, "take_along_axis")
    perm = tuple(i for i in range(x.ndim) if i != axis) + (axis,)
    inverse = tuple(int(i) for i in np.argsort(perm))
    xt, it = transpose(x, perm), transpose(idx, perm)
    lead = xt.shape[:-1]
    picked = make(
        "take_last",
        [reshape(xt, (dim_product(lead), xt.shape[-1])), reshape(it, (dim_product(lead), it.shape[-1]))],
    )
    return transpose(reshape(picked, lead + (it.shape[-1],)), inverse)


def _arange_infer(inputs, attrs):
    return (attrs["n"],), "int64"


register(
    "arange",
    _arange_infer,
    lambda n: np.arange(n, dtype=np.int64),
    note="0, 1, ..., n-1",
    keeps_rows=True,
    batch="it has no operands, so it never reads a batched value",
)


def arange(n):
    """0, 1, ..., n-1 as int64; ``n`` may be a symbolic dimension (``x.shape[0]``).

    A concrete ``n`` up to ``FOLD_LIMIT`` is a constant, as a folded value would be; a
    larger one is computed by the compiled function, so building ``arange(10**8)`` takes
    no time and no memory."""
    (n,) = as_shape((n,), where="arange")
    if isinstance(n, int) and n <= FOLD_LIMIT:
        return constant(np.arange(n, dtype=np.int64))
    return make("arange", [], n=n)


def _is_arange_over(idx, dim):
    if isinstance(idx, Expr) and idx.op == "arange":
        return dims_equal(idx.attrs["n"], dim)
    value = (
        idx.value
        if isinstance(idx, Expr) and idx.op == "constant"
        else (idx if isinstance(idx, np.ndarray) else None)
    )
    return (
        value is not None
        and value.ndim == 1
        and isinstance(dim, int)
        and value.shape[0] == dim
        and np.array_equal(value, np.arange(dim))
    )


def _advanced_getitem(x, key):
    """x[idx], x[:, idx] (take) and x[arange(N), labels] (one element per row)."""
    arrays = [i for i, k in enumerate(key) if isinstance(k, (Expr, np.ndarray, list))]
    full = slice(None)
    if len(arrays) == 1 and all(
        isinstance(k, slice) and k == full for i, k in enumerate(key) if i != arrays[0]
    ):
        return take(x, key[arrays[0]], axis=arrays[0])
    if len(key) == 2 and arrays == [0, 1] and x.ndim == 2 and _is_arange_over(key[0], x.shape[0]):
        labels = _int_index(key[1], "x[arange(n), labels]")
        if labels.ndim != 1 or not dims_equal(labels.shape[0], x.shape[0]):
            raise ShapeError(
                f"x[arange(n), labels]: labels of shape {shape_str(labels.shape)} must "
                f"have one entry per row of x {shape_str(x.shape)}"
            )
        picked = take_along_axis(x, reshape(labels, (labels.shape[0], 1)), axis=1)
        return reshape(picked, (x.shape[0],))
    if len(arrays) == 1:
        return _mixed_getitem(x, key, arrays[0])
    raise UnsupportedError(
        "this advanced-indexing pattern (more than one index array, other than x[arange(n), labels]) "
        "is not supported; "
        "index with one integer array at a time (x[idx][:, jdx]), or use sg.take / sg.take_along_axis"
    )


def _mixed_getitem(x, key, at):
    """x[3, 2:, idx]: one integer array among ints, slices, None and ``...``, with numpy's
    placement of the result's index dims (where the array and the ints are, when they are
    adjacent; first, when a slice separates them). The basic part is a slice, the array a take."""
    dots = [i for i, k in enumerate(key) if k is Ellipsis]
    if len(dots) > 1:
        raise ShapeError("an index can only have a single ellipsis ('...')")
    if dots:
        i, spread = dots[0], x.ndim - sum(1 for k in key if k is not None and k is not Ellipsis)
        key = key[:i] + (slice(None),) * spread + key[i + 1 :]
        at = at + spread - 1 if at > i else at
    basic = tuple(slice(None) if i == at else k for i, k in enumerate(key))
    y = getitem(x, basic)
    makes_dim = [k is None or isinstance(k, slice) for k in key]
    pos = sum(makes_dim[:at])
    out = take(y, key[at], axis=pos)
    advanced = [i for i, k in enumerate(key) if i == at or not makes_dim[i]]
    if advanced == list(range(advanced[0], advanced[-1] + 1)) or pos == 0:
        return out
    k = out.ndim - y.ndim + 1  # the index array's dims
    order = tuple(range(pos, pos + k)) + tuple(i for i in range(out.ndim) if not pos <= i < pos + k)
    return transpose(out, order)
