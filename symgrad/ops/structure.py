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
from ..graph import (Expr, as_shape, broadcast_shapes, dim_product, dim_str, dims_equal,
                     normalize_axes, shape_str)
from .registry import register, make, as_expr


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
        known = dim_product([as_shape([d])[0] for d in shape if not (isinstance(d, (int, np.integer)) and d == -1)])
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
    from .reduce import sum
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape)
        if isinstance(d, int) and d == 1 and not (isinstance(g.shape[lead + i], int) and g.shape[lead + i] == 1))
    out = sum(g, axes) if axes else g
    return out if out.shape == tuple(shape) else reshape(out, shape)


def transpose(x, axes=None):
    """Permute the axes (reverse them by default, as ``.T`` does)."""
    x = as_expr(x)
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    axes = tuple(int(a) % max(x.ndim, 1) for a in axes)
    if sorted(axes) != list(range(x.ndim)):
        raise ShapeError(f"transpose of {shape_str(x.shape)}: {axes} is not a permutation of its axes")
    return make("transpose", [x], axes=axes)


register("reshape", _reshape_infer, lambda x, shape: np.reshape(x, shape),
         (lambda g, x, out: reshape(g, x.shape),), note="d reshape = reshape back")
register("broadcast_to", _reshape_infer, lambda x, shape: np.broadcast_to(x, shape),
         (lambda g, x, out: sum_to(g, x.shape),), note="d repeat = sum over the repeated axes")
register("transpose",
         lambda inputs, attrs: (tuple(inputs[0].shape[a] for a in attrs["axes"]), inputs[0].dtype),
         lambda x, axes: np.transpose(x, axes),
         (lambda g, x, out: transpose(g, tuple(np.argsort(out.attrs["axes"]))),),
         note="d transpose = transpose back")


# ---------------------------------------------------------------- slicing


def _index_int(value, where):
    if isinstance(value, (bool, np.bool_)):
        raise UnsupportedError(f"{where}: bool {value!r} is not an index")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, sympy.Expr):
        return value
    raise UnsupportedError(f"{where}: {value!r} is not an integer index "
                           "(indices must be Python ints known when the graph is built)")


def _normalize_key(x, key):
    """numpy basic indexing as a tuple of ('i', k) / ('s', start, stop, step) / ('n',)."""
    if not isinstance(key, tuple):
        key = (key,)
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise ShapeError("an index can only have a single ellipsis ('...')")
    used = sum(1 for k in key if k is not None and k is not Ellipsis)
    if used > x.ndim:
        raise ShapeError(f"too many indices for an expression of shape {shape_str(x.shape)}: "
                         f"{used} given")
    out = []
    for k in key:
        if k is Ellipsis:
            out.extend([("s", None, None, None)] * (x.ndim - used))
        elif k is None:
            out.append(("n",))
        elif isinstance(k, slice):
            out.append(("s",) + tuple(None if v is None else _index_int(v, "slice bound")
                                      for v in (k.start, k.stop, k.step)))
        elif isinstance(k, Expr) or isinstance(k, (np.ndarray, list)):
            raise UnsupportedError(
                "indexing with an array of indices (advanced indexing) is not supported yet; "
                "use integer and slice indices")
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
    """numpy basic indexing: ints, slices, None and ``...``."""
    x = as_expr(x)
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
                    raise ShapeError(f"index {i} is out of bounds for axis {axis} of size {dim} "
                                     f"(shape {shape_str(x.shape)})")
            elif isinstance(i, int):
                requires.append((axis, i + 1 if i >= 0 else -i))
        else:
            shape.append(_slice_length(dim, k[1], k[2], k[3], axis, requires))
        axis += 1
    shape = tuple(shape)
    if all(k == ("s", None, None, None) for k in norm):
        return x
    req = tuple(sorted(set((x.shape[a], m) for a, m in requires if not isinstance(x.shape[a], int))))
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


register("getitem", _getitem_infer, lambda x, key, out_shape, requires: np.asarray(x)[_np_key(key)],
         (lambda g, x, out: slice_grad(g, out.attrs["key"], x.shape),),
         note="d x[key] = zeros with g written into [key]")
register("slice_grad", lambda inputs, attrs: (attrs["shape"], inputs[0].dtype), _np_slice_grad,
         (lambda gg, g, out: _take_key(gg, out.attrs["key"], g.shape),),
         note="d scatter = gather")


def _take_key(x, key, shape):
    node = make("getitem", [x], key=key, out_shape=tuple(shape), requires=())
    return node


# ---------------------------------------------------------------- concatenate / stack


def _concat_infer(inputs, attrs):
    axis = attrs["axis"]
    first = inputs[0]
    for other in inputs[1:]:
        if other.ndim != first.ndim:
            raise ShapeError(f"concatenate: shapes {shape_str(first.shape)} and {shape_str(other.shape)} "
                             "have different ranks")
        for i, (a, b) in enumerate(zip(first.shape, other.shape)):
            if i != axis and not dims_equal(a, b):
                raise ShapeError(f"concatenate along axis {axis}: shapes {shape_str(first.shape)} and "
                                 f"{shape_str(other.shape)} differ in dimension {i}")
    total = 0
    for i in inputs:
        total = total + i.shape[axis]
    if isinstance(total, sympy.Expr):
        total = sympy.expand(total)
        total = int(total) if total.is_Integer else total
    shape = first.shape[:axis] + (total,) + first.shape[axis + 1:]
    from ..graph import promote
    return shape, promote(*[i.dtype for i in inputs])


def _concat_vjp(index, g, *args):
    *inputs, out = args
    axis = out.attrs["axis"]
    start = 0
    for i in inputs[:index]:
        start = start + i.shape[axis]
    stop = start + inputs[index].shape[axis]
    key = tuple(("s", None, None, None) if a != axis else ("s", start, stop, None)
                for a in range(g.ndim))
    return _take_key(g, key, inputs[index].shape)


def concatenate(xs, axis=0):
    """Join expressions along an existing axis."""
    xs = [as_expr(x) for x in xs]
    if not xs:
        raise ShapeError("concatenate needs at least one expression")
    if xs[0].ndim == 0:
        raise ShapeError("concatenate: scalars cannot be concatenated; use stack")
    (axis,) = normalize_axes(axis, xs[0].ndim, where="concatenate")
    if len(xs) == 1:
        return xs[0]
    from .elementwise import cast
    from ..graph import promote
    dtype = promote(*[x.dtype for x in xs])
    xs = [x if x.dtype == dtype else cast(x, dtype) for x in xs]
    return make("concatenate", xs, axis=axis)


register("concatenate", _concat_infer, lambda *xs, axis: np.concatenate(xs, axis=axis),
         vjp_variadic=_concat_vjp, note="d concatenate = the matching slice of g")


def stack(xs, axis=0):
    """Join expressions of one shape along a new axis."""
    xs = [as_expr(x) for x in xs]
    if not xs:
        raise ShapeError("stack needs at least one expression")
    for x in xs[1:]:
        if len(x.shape) != len(xs[0].shape) or not all(dims_equal(a, b) for a, b in zip(x.shape, xs[0].shape)):
            raise ShapeError(f"stack: shapes {shape_str(xs[0].shape)} and {shape_str(x.shape)} differ")
    rank = xs[0].ndim + 1
    (axis,) = normalize_axes(axis, rank, where="stack")
    return concatenate([expand_dims(x, axis) for x in xs], axis=axis)
