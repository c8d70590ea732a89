"""numpy's array functions: cumulative sums and products, sorting, flipping, rolling, padding,
tiling, repeating, splitting, moving axes, stacking helpers, ``select``, ``linspace`` and a few
elementwise composites (``fmax``, ``sinc``, ``nan_to_num``, ...).

Three are ops of their own, each along the last axis (the builders move the axis there and
back): ``cumsum`` and ``cumprod`` (numba's ``np.cumsum`` takes no axis: ``_rt.cumsum_last``)
and ``argsort`` (integer indices, no gradient; stable, so ties keep their order on both
backends). Everything else is a composite of existing ops, so its derivatives (of any order)
and fusion come from theirs: ``sort`` is ``take_along_axis(x, argsort(x))``, so the gradient
flows back through the permutation; ``flip`` is the slice ``x[..., ::-1]``; ``roll`` gathers
with the rolled indices; ``pad``, ``split`` and ``tile`` are slices, concatenations and
broadcasts.

Conventions at the non-smooth points: ``cumprod``'s derivative divides by ``x`` (a zero entry
gives an infinite or NaN gradient; the value is exact); ``sort`` at ties routes each
adjoint to the element the stable sort put there; ``fmax``/``fmin`` as ``maximum``/``minimum``
(a NaN operand gets no gradient); ``sinc``'s derivative at 0 is 0 (its second derivative
there is not computed exactly); ``nan_to_num`` passes the gradient where ``x`` is finite.
"""

import math

import numpy as np
import sympy

from ..errors import ShapeError, UnsupportedError
from ..graph import Expr, is_float, normalize_axes, shape_str
from .registry import register, make, as_expr, constant, count
from . import elementwise as ew
from .structure import (
    arange,
    broadcast_to,
    concatenate,
    expand_dims,
    getitem,
    reshape,
    take,
    take_along_axis,
    transpose,
)


def _axis(x, axis, where):
    (axis,) = normalize_axes(axis, x.ndim, where=where)
    return axis


def _along_last(x, axis, fn):
    """``fn`` (which works along the last axis) applied along ``axis``."""
    if axis == x.ndim - 1:
        return fn(x)
    perm = tuple(i for i in range(x.ndim) if i != axis) + (axis,)
    inverse = tuple(int(i) for i in np.argsort(perm))
    return transpose(fn(transpose(x, perm)), inverse)


def _int_arg(value, what):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise UnsupportedError(
            f"{what} must be a Python int known when the graph is built, got {value!r:.60}"
        )
    return int(value)


# ---------------------------------------------------------------- flip, rot90, roll


def flip(x, axis=None):
    """``x`` reversed along ``axis`` (every axis by default): the slice ``x[..., ::-1]``."""
    x = as_expr(x)
    axes = normalize_axes(axis, x.ndim, where="flip")
    if not axes:
        return x
    return getitem(x, tuple(slice(None, None, -1) if i in axes else slice(None) for i in range(x.ndim)))


def fliplr(x):
    x = as_expr(x)
    if x.ndim < 2:
        raise ShapeError(f"fliplr needs at least 2 dimensions, got shape {shape_str(x.shape)}")
    return flip(x, 1)


def flipud(x):
    x = as_expr(x)
    if x.ndim < 1:
        raise ShapeError("flipud needs at least 1 dimension, got a scalar")
    return flip(x, 0)


def rot90(x, k=1, axes=(0, 1)):
    """``x`` rotated by 90 degrees ``k`` times in the plane of ``axes`` (numpy's ``rot90``)."""
    x = as_expr(x)
    k = _int_arg(k, "rot90: k") % 4
    if len(axes) != 2:
        raise ShapeError("rot90: axes must name 2 axes")
    a0, a1 = (_ordered_axes(a, x.ndim, "rot90")[0] for a in axes)
    if a0 == a1:
        raise ShapeError(f"rot90: the axes {tuple(axes)} must differ")
    if k == 0:
        return x
    if k == 2:
        return flip(flip(x, a0), a1)
    perm = list(range(x.ndim))
    perm[a0], perm[a1] = perm[a1], perm[a0]
    if k == 1:
        return transpose(flip(x, a1), tuple(perm))
    return flip(transpose(x, tuple(perm)), a1)


def _roll_axis(x, shift, axis):
    n = x.shape[axis]
    if isinstance(n, int):
        if n == 0:
            return x
        idx = constant(np.roll(np.arange(n, dtype=np.int64), shift))
    else:
        # out[i] = x[(i - shift) mod n], with n known when the compiled function is called
        idx = ew.mod(arange(n) - shift, count([n], "int64"))
    return take(x, idx, axis)


def roll(x, shift, axis=None):
    """numpy's ``roll``: elements shifted by ``shift`` along ``axis`` (the flattened array by default),
    those pushed past the end coming back at the start."""
    x = as_expr(x)
    if axis is None:
        return reshape(roll(reshape(x, (-1,)), shift, 0), x.shape)
    shifts = tuple(shift) if isinstance(shift, (tuple, list)) else None
    axes = tuple(axis) if isinstance(axis, (tuple, list)) else None
    if shifts is None and axes is None:
        return _roll_axis(x, _int_arg(shift, "roll: shift"), _axis(x, axis, "roll"))
    shifts = shifts if shifts is not None else (shift,) * len(axes)
    axes = axes if axes is not None else (axis,) * len(shifts)
    if len(shifts) != len(axes):
        raise ShapeError(f"roll: {len(shifts)} shifts for {len(axes)} axes")
    for s, a in zip(shifts, axes):
        x = _roll_axis(x, _int_arg(s, "roll: shift"), _axis(x, a, "roll"))
    return x


# ---------------------------------------------------------------- cumulative sums and products


def _same_infer(inputs, attrs):
    return inputs[0].shape, inputs[0].dtype


def _reverse_last(x):
    return getitem(x, (Ellipsis, slice(None, None, -1)))


def _cumsum_last(x):
    return make("cumsum", [x])


def _reverse_cumsum_last(g):
    """sum_{j >= i} g_j along the last axis."""
    return _reverse_last(_cumsum_last(_reverse_last(g)))


def _along_last_axis(node, args, batched):
    """Batching rule of an op along the last axis (any leading axes): the same op."""
    return make(node.op, args, **node.attrs)


register(
    "cumsum",
    _same_infer,
    lambda x: np.cumsum(x, axis=-1, dtype=np.asarray(x).dtype),
    (lambda g, x, out: _reverse_cumsum_last(g),),
    jvp=(lambda t, x, out: _cumsum_last(t),),
    note="d cumsum = the reversed cumulative sum of g",
    lower="np.cumsum({0}, axis=-1)",
    lowerings={"numba": "_rt.cumsum_last({0})"},
    batch=_along_last_axis,
)


def _cumprod_vjp(g, x, out):
    # d out_j / d x_i = out_j / x_i for j >= i (x_i != 0)
    return _reverse_cumsum_last(g * out) / x


register(
    "cumprod",
    _same_infer,
    lambda x: np.cumprod(x, axis=-1, dtype=np.asarray(x).dtype),
    (_cumprod_vjp,),
    jvp=(lambda t, x, out: out * _cumsum_last(t / x),),
    note="d cumprod: d out_j = out_j sum_{i <= j} dx_i / x_i",
    lower="np.cumprod({0}, axis=-1)",
    lowerings={"numba": "_rt.cumprod_last({0})"},
    batch=_along_last_axis,
)

_WIDE = {"bool": "int64", "int8": "int64", "int16": "int64", "int32": "int64", "uint8": "uint64"}
_WIDE.update({"uint16": "uint64", "uint32": "uint64"})


def _cumulative(op, x, axis, dtype):
    x = as_expr(x)
    if dtype is not None:
        x = ew.cast(x, dtype)
    elif x.dtype in _WIDE:
        x = ew.cast(x, _WIDE[x.dtype])  # numpy accumulates narrow ints in 64 bits
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    elif x.ndim == 0:
        raise ShapeError(f"{op} of a scalar along axis {axis}")
    return _along_last(x, _axis(x, axis, op), lambda v: make(op, [v]))


def cumsum(x, axis=None, dtype=None):
    """numpy's ``cumsum``: running sums along ``axis`` (of the flattened array by default)."""
    return _cumulative("cumsum", x, axis, dtype)


def cumprod(x, axis=None, dtype=None):
    """numpy's ``cumprod``: running products along ``axis`` (of the flattened array by default).
    Its derivative divides by ``x``: not defined where ``x`` has a zero."""
    return _cumulative("cumprod", x, axis, dtype)


# ---------------------------------------------------------------- sorting

register(
    "argsort",
    lambda inputs, attrs: (inputs[0].shape, "int64"),
    lambda x: np.argsort(x, axis=-1, kind="stable").astype(np.int64),
    note="integer indices: not differentiable",
    lower="np.argsort({0}, axis=-1, kind='stable')",
    lowerings={"numba": "_rt.argsort_last({0})"},
    batch=_along_last_axis,
)


def argsort(x, axis=-1):
    """numpy's ``argsort`` (stable: equal values keep their order), int64; no gradient."""
    x = as_expr(x)
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    if x.ndim == 0:
        raise ShapeError("argsort of a scalar")
    if x.dtype == "bool":
        x = ew.cast(x, "int64")
    return _along_last(x, _axis(x, axis, "argsort"), lambda v: make("argsort", [v]))


def sort(x, axis=-1):
    """numpy's ``sort``: ``x`` picked in the order ``argsort`` gives, so the gradient of each sorted
    element goes back to the element it came from."""
    x = as_expr(x)
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    if x.ndim == 0:
        raise ShapeError("sort of a scalar")
    axis = _axis(x, axis, "sort")
    return take_along_axis(x, argsort(x, axis), axis)


def top_k(x, k):
    """The ``k`` largest values along the last axis, largest first, and their indices (as JAX's
    ``lax.top_k``: at ties the lower index first); the gradient goes to the picked elements."""
    x = as_expr(x)
    k = _int_arg(k, "top_k: k")
    if x.ndim == 0:
        raise ShapeError("top_k of a scalar")
    n = x.shape[-1]
    if k < 0 or (isinstance(n, int) and k > n):
        raise ShapeError(f"top_k: k = {k} for a last axis of length {n}")
    # a stable sort of -x puts the larger values first and, among equal ones, the lower index
    order = getitem(
        argsort(ew.neg(x) if x.dtype != "bool" else ew.logical_not(x), -1), (Ellipsis, slice(0, k))
    )
    return take_along_axis(x, order, -1), order


# ---------------------------------------------------------------- padding, tiling, repeating


def _pairs(value, ndim, what):
    if isinstance(value, Expr):  # one symbolic fill value for every side
        return [(value, value)] * ndim
    try:
        arr = np.broadcast_to(np.asarray(value, dtype=object), (ndim, 2))
    except ValueError:
        raise ShapeError(f"pad: {what} {value!r:.60} does not fit {ndim} axes") from None
    return [tuple(arr[i]) for i in range(ndim)]


def _block(x, axis, key):
    return getitem(x, tuple(key if i == axis else slice(None) for i in range(x.ndim)))


def pad(x, pad_width, mode="constant", constant_values=0):
    """numpy's ``pad`` in the modes ``constant``, ``edge``, ``reflect``, ``symmetric`` and ``wrap``
    (``reflect``/``symmetric``/``wrap`` by at most the axis' length)."""
    x = as_expr(x)
    widths = _pairs(pad_width, x.ndim, "pad_width")
    values = _pairs(constant_values, x.ndim, "constant_values") if mode == "constant" else None
    if mode not in ("constant", "edge", "reflect", "symmetric", "wrap"):
        raise UnsupportedError(
            f"np.pad(..., mode={mode!r}) on a symbolic value: only the modes constant, edge, "
            "reflect, symmetric and wrap are supported"
        )
    for axis in range(x.ndim):
        before, after = (_int_arg(w, "pad: pad_width") for w in widths[axis])
        if before < 0 or after < 0:
            raise ShapeError(f"pad: negative pad width {widths[axis]} on axis {axis}")
        n = x.shape[axis]
        parts = []
        for side, width in (("before", before), ("after", after)):
            if width == 0:
                parts.append(None)
                continue
            if mode == "constant":
                shape = tuple(width if i == axis else d for i, d in enumerate(x.shape))
                value = values[axis][0 if side == "before" else 1]
                fill = as_expr(value, like=x)
                fill = ew.cast(fill, x.dtype) if fill.dtype != x.dtype else fill
                parts.append(broadcast_to(fill, shape))
                continue
            if isinstance(n, int) and (n == 0 or (mode == "reflect" and width >= n) or width > n):
                raise UnsupportedError(
                    f"np.pad(..., mode={mode!r}) by {width} on axis {axis} of length {n}: padding by "
                    "more than the axis' length is not supported"
                )
            if mode == "edge":
                end = slice(0, 1) if side == "before" else slice(-1, None)
                shape = tuple(width if i == axis else d for i, d in enumerate(x.shape))
                parts.append(broadcast_to(_block(x, axis, end), shape))
            elif mode == "reflect":
                span = slice(1, width + 1) if side == "before" else slice(-width - 1, -1)
                parts.append(flip(_block(x, axis, span), axis))
            elif mode == "symmetric":
                span = slice(0, width) if side == "before" else slice(-width, None)
                parts.append(flip(_block(x, axis, span), axis))
            else:  # wrap
                span = slice(-width, None) if side == "before" else slice(0, width)
                parts.append(_block(x, axis, span))
        if parts[0] is not None or parts[1] is not None:
            x = concatenate([p for p in (parts[0], x, parts[1]) if p is not None], axis)
    return x


def tile(x, reps):
    """numpy's ``tile``: ``x`` repeated ``reps`` times along each axis (a broadcast and a reshape)."""
    x = as_expr(x)
    reps = tuple(reps) if isinstance(reps, (tuple, list)) else (reps,)
    reps = tuple(_int_arg(r, "tile: reps") for r in reps)
    if any(r < 0 for r in reps):
        raise ShapeError(f"tile: negative repetitions {reps}")
    rank = max(x.ndim, len(reps))
    x = reshape(x, (1,) * (rank - x.ndim) + x.shape)
    reps = (1,) * (rank - len(reps)) + reps
    spread = reshape(x, tuple(v for d in x.shape for v in (1, d)))
    wide = broadcast_to(spread, tuple(v for r, d in zip(reps, x.shape) for v in (r, d)))
    return reshape(wide, tuple(r * d for r, d in zip(reps, x.shape)))


def repeat(x, repeats, axis=None):
    """numpy's ``repeat``: each element repeated ``repeats`` times along ``axis`` (of the flattened
    array by default). ``repeats`` is an int, or a list of ints, one per element of a concrete axis."""
    x = as_expr(x)
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    axis = _axis(x, axis, "repeat")
    if isinstance(repeats, Expr):
        raise UnsupportedError(
            "np.repeat with symbolic repeats: the result's length would depend on their values; "
            "give repeats as Python ints"
        )
    counts = np.asarray(repeats)
    if counts.ndim == 0 or counts.size == 1:
        r = _int_arg(counts.reshape(-1)[0].item(), "repeat: repeats")
        if r < 0:
            raise ShapeError(f"repeat: negative repeats {r}")
        wide = expand_dims(x, axis + 1)
        shape = x.shape[: axis + 1] + (r,) + x.shape[axis + 1 :]
        merged = x.shape[axis] * r
        return reshape(broadcast_to(wide, shape), x.shape[:axis] + (merged,) + x.shape[axis + 1 :])
    n = x.shape[axis]
    if counts.ndim != 1 or counts.dtype.kind not in "iu" or not isinstance(n, int) or counts.size != n:
        raise ShapeError(
            f"repeat: repeats {repeats!r:.60} must be one int, or one int per element of axis {axis} "
            f"(of concrete length; shape {shape_str(x.shape)})"
        )
    if (counts < 0).any():
        raise ShapeError("repeat: negative repeats")
    return take(x, constant(np.repeat(np.arange(n, dtype=np.int64), counts)), axis)


# ---------------------------------------------------------------- splitting


def array_split(x, indices_or_sections, axis=0, *, where="array_split", even=False):
    """numpy's ``array_split``: ``x`` cut along ``axis`` at the given indices, or into that many
    nearly equal sections (a section count needs a concrete length)."""
    x = as_expr(x)
    axis = _axis(x, axis, where)
    n = x.shape[axis]
    if isinstance(indices_or_sections, (int, np.integer)) and not isinstance(indices_or_sections, bool):
        sections = int(indices_or_sections)
        if sections <= 0:
            raise ShapeError(f"{where}: the number of sections must be larger than 0, got {sections}")
        if not isinstance(n, int):
            raise UnsupportedError(
                f"np.{where} into {sections} sections of the symbolic dimension {n}: the section "
                "lengths would depend on it; give the split indices (a list of ints) instead"
            )
        if even and n % sections:
            raise ShapeError(f"{where}: an axis of length {n} does not split into {sections} equal sections")
        size, extra = divmod(n, sections)
        bounds = np.cumsum([0] + extra * [size + 1] + (sections - extra) * [size]).tolist()
    else:
        indices = [_int_arg(i, f"{where}: a split index") for i in np.asarray(indices_or_sections).ravel()]
        bounds = [0] + indices + [None]
    return [_block(x, axis, slice(lo, hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def split(x, indices_or_sections, axis=0):
    """numpy's ``split``: as ``array_split``, but a section count must divide the axis' length."""
    return array_split(x, indices_or_sections, axis, where="split", even=True)


def hsplit(x, indices_or_sections):
    x = as_expr(x)
    if x.ndim == 0:
        raise ShapeError("hsplit only works on arrays of 1 or more dimensions")
    return array_split(x, indices_or_sections, 1 if x.ndim > 1 else 0, where="hsplit", even=True)


def vsplit(x, indices_or_sections):
    x = as_expr(x)
    if x.ndim < 2:
        raise ShapeError("vsplit only works on arrays of 2 or more dimensions")
    return array_split(x, indices_or_sections, 0, where="vsplit", even=True)


def dsplit(x, indices_or_sections):
    x = as_expr(x)
    if x.ndim < 3:
        raise ShapeError("dsplit only works on arrays of 3 or more dimensions")
    return array_split(x, indices_or_sections, 2, where="dsplit", even=True)


# ---------------------------------------------------------------- axes and ranks


def _ordered_axes(axes, rank, where):
    """An int or a sequence of ints as axes in the given order (negatives counted from the end)."""
    axes = [axes] if isinstance(axes, (int, np.integer)) else list(axes)
    normalize_axes(tuple(axes), rank, where=where)  # checks: ints, in range, no repeats
    return [int(a) % rank for a in axes]


def moveaxis(x, source, destination):
    """numpy's ``moveaxis``: the axes ``source`` moved to ``destination``, the others in order."""
    x = as_expr(x)
    source = _ordered_axes(source, x.ndim, "moveaxis source")
    destination = _ordered_axes(destination, x.ndim, "moveaxis destination")
    if len(source) != len(destination):
        raise ShapeError("moveaxis: source and destination must have the same number of axes")
    order = [i for i in range(x.ndim) if i not in source]
    for dest, src in sorted(zip(destination, source)):
        order.insert(dest, src)
    return transpose(x, tuple(order))


def rollaxis(x, axis, start=0):
    """numpy's ``rollaxis``: ``axis`` moved to just before position ``start``."""
    x = as_expr(x)
    n = x.ndim
    (axis,) = _ordered_axes(axis, n, "rollaxis")
    start = _int_arg(start, "rollaxis: start")
    if not -n <= start <= n:
        raise ShapeError(f"rollaxis: start {start} is out of range for rank {n}")
    start = start + n if start < 0 else start
    if axis < start:
        start -= 1
    if axis == start:
        return x
    order = [i for i in range(n) if i != axis]
    order.insert(start, axis)
    return transpose(x, tuple(order))


def _at_least(x, rank):
    x = as_expr(x)
    if x.ndim >= rank:
        return x
    if x.ndim == 0:
        return reshape(x, (1,) * rank)
    if rank == 2 or x.ndim == 2:  # (n,) -> (1, n); for rank 3: (n,) -> (1, n, 1), (m, n) -> (m, n, 1)
        shape = (1,) + x.shape if x.ndim == 1 else x.shape
        return reshape(x, shape + (1,) * (rank - len(shape)))
    return reshape(x, (1,) + x.shape + (1,))


def _each(arrays, rank):
    out = [_at_least(a, rank) for a in arrays]
    return out[0] if len(out) == 1 else out


def atleast_1d(*arrays):
    return _each(arrays, 1)


def atleast_2d(*arrays):
    return _each(arrays, 2)


def atleast_3d(*arrays):
    return _each(arrays, 3)


# ---------------------------------------------------------------- joining


def _joined(arrays, where):
    """A sequence of arrays; an Expr given as the sequence is the list of its slices along axis 0."""
    if isinstance(arrays, Expr):
        if arrays.ndim == 0:
            raise ShapeError(f"{where}: a scalar is not a sequence of arrays")
        n = arrays.shape[0]
        if not isinstance(n, int):
            raise UnsupportedError(
                f"{where} of one array whose first dimension {n} is symbolic: it stands for that many "
                "arrays; pass a list of arrays"
            )
        return [arrays[i] for i in range(n)]
    if not isinstance(arrays, (list, tuple)):
        raise UnsupportedError(f"{where} takes a list or tuple of arrays, got {type(arrays).__name__}")
    return [as_expr(a) for a in arrays]


def hstack(arrays):
    """numpy's ``hstack``: join along the second axis (the first, for 1-d arrays)."""
    arrays = [_at_least(a, 1) for a in _joined(arrays, "hstack")]
    return concatenate(arrays, 0 if arrays[0].ndim == 1 else 1)


def vstack(arrays):
    """numpy's ``vstack`` (and ``row_stack``): join along the first axis, 1-d arrays as rows."""
    return concatenate([_at_least(a, 2) for a in _joined(arrays, "vstack")], 0)


def dstack(arrays):
    return concatenate([_at_least(a, 3) for a in _joined(arrays, "dstack")], 2)


def column_stack(arrays):
    """numpy's ``column_stack``: 1-d arrays as columns, joined along the second axis."""
    arrays = [as_expr(a) for a in _joined(arrays, "column_stack")]
    cols = [reshape(a, (a.shape[0], 1)) if a.ndim == 1 else _at_least(a, 2) for a in arrays]
    return concatenate(cols, 1)


def append(x, values, axis=None):
    """numpy's ``append``: ``values`` joined after ``x`` (both flattened when axis is None)."""
    x, values = as_expr(x), as_expr(values, like=as_expr(x))
    if axis is None:
        return concatenate([reshape(x, (-1,)), reshape(values, (-1,))], 0)
    return concatenate([x, values], axis)


def select(condlist, choicelist, default=0):
    """numpy's ``select``: for each element, the choice of the first condition that holds, else
    ``default`` (nested ``where``, so the gradient goes to the chosen value)."""
    if len(condlist) != len(choicelist):
        raise ShapeError(
            f"select: {len(condlist)} conditions for {len(choicelist)} choices; give one choice per condition"
        )
    if not condlist:
        raise ShapeError("select needs at least one condition")
    out = default
    for cond, choice in reversed(list(zip(condlist, choicelist))):
        cond = as_expr(cond)
        if cond.dtype != "bool":
            raise UnsupportedError(f"select: conditions must be bool, got dtype {cond.dtype}")
        out = ew.where(cond, choice, out)
    return as_expr(out)


# ---------------------------------------------------------------- linspace


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    """numpy's ``linspace``: ``num`` evenly spaced values from ``start`` to ``stop``. ``num`` may be
    a symbolic size (``x.shape[0]``); ``start`` and ``stop`` may be expressions (scalars, or
    arrays: the samples go along a new ``axis``)."""
    if isinstance(num, Expr):
        raise UnsupportedError("linspace: num must be an int or a size (x.shape[0]), not a symbolic value")
    if isinstance(num, sympy.Expr) and num.is_Integer:
        num = int(num)
    n = num if isinstance(num, sympy.Expr) else _int_arg(num, "linspace: num")
    if isinstance(n, int) and n < 0:
        raise ShapeError(f"linspace: number of samples {n} must be non-negative")
    start, stop = as_expr(start), as_expr(stop)
    ftype = "float32" if start.dtype == stop.dtype == "float32" else "float64"
    start, stop = ew.cast(start, ftype), ew.cast(stop, ftype)
    delta = stop - start
    rank = delta.ndim
    i = ew.cast(arange(n), ftype)
    i = reshape(i, (i.shape[0],) + (1,) * rank)
    size = count([n], ftype)
    div = size - 1 if endpoint else size
    step = delta / ew.maximum(div, 1.0)  # one sample: start (numpy's step is nan there)
    y = i * step + start
    if endpoint:
        # the last sample is stop itself, as numpy writes it
        y = ew.where(ew.logical_and(ew.equal(i, size - 1), ew.greater(i, 0)), stop, y)
    if rank:
        y = moveaxis(y, 0, axis)
    if dtype is not None:
        target = np.dtype(dtype).name
        y = ew.cast(ew.floor(y) if np.dtype(target).kind in "iu" else y, target)
    return (y, step) if retstep else y


# ---------------------------------------------------------------- elementwise composites


def isnan(x):
    """True where ``x`` is NaN (the one value for which ``|x| <= inf`` fails)."""
    x = as_expr(x)
    if not is_float(x.dtype):
        return broadcast_to(constant(False), x.shape)
    return ew.logical_not(ew.less_equal(ew.abs(x), np.inf))


def fmax(a, b):
    """numpy's ``fmax``: the larger value, ignoring a NaN operand (NaN only when both are)."""
    a, b = as_expr(a), as_expr(b)
    return ew.where(isnan(b), a, ew.where(isnan(a), b, ew.maximum(a, b)))


def fmin(a, b):
    """numpy's ``fmin``: the smaller value, ignoring a NaN operand (NaN only when both are)."""
    a, b = as_expr(a), as_expr(b)
    return ew.where(isnan(b), a, ew.where(isnan(a), b, ew.minimum(a, b)))


def degrees(x):
    return ew.mul(x, 180 / math.pi)


def radians(x):
    return ew.mul(x, math.pi / 180)


def sinc(x):
    """sin(pi x) / (pi x), 1 at 0 (numpy's normalised ``sinc``); its derivative at 0 is 0."""
    x = as_expr(x)
    if not is_float(x.dtype):
        x = ew.cast(x, "float64")
    zero = ew.equal(x, 0)
    px = ew.where(zero, 1.0, x) * math.pi
    return ew.where(zero, 1.0, ew.sin(px) / px)


def nan_to_num(x, nan=0.0, posinf=None, neginf=None):
    """numpy's ``nan_to_num``: NaN -> ``nan``, +inf -> ``posinf`` (the largest finite value by
    default), -inf -> ``neginf`` (the most negative); the gradient passes where x is finite."""
    x = as_expr(x)
    if not is_float(x.dtype):
        return x
    big = float(np.finfo(x.dtype).max)
    hi = big if posinf is None else posinf
    lo = -big if neginf is None else neginf
    out = ew.where(isnan(x), nan, x)
    out = ew.where(ew.equal(x, np.inf), hi, out)
    return ew.where(ew.equal(x, -np.inf), lo, out)


def real(x):
    """The real part of real data: ``x`` itself."""
    return as_expr(x)


def imag(x):
    """The imaginary part of real data: zeros of ``x``'s shape."""
    x = as_expr(x)
    return broadcast_to(constant(0, x.dtype), x.shape)


def conjugate(x):
    """The complex conjugate of real data: ``x`` itself."""
    return as_expr(x)


# ---------------------------------------------------------------- gradient


def _diff_along(f, axis, h, edge_order):
    n = f.shape[axis]
    if isinstance(n, int) and n < edge_order + 1:
        raise ShapeError(
            f"gradient: axis {axis} of length {n} is too short for edge_order={edge_order} "
            f"(it needs at least {edge_order + 1} values)"
        )

    def at(key):
        return _block(f, axis, key)

    interior = (at(slice(2, None)) - at(slice(None, -2))) / (2.0 * h)
    if edge_order == 1:
        first = (at(slice(1, 2)) - at(slice(0, 1))) / h
        last = (at(slice(-1, None)) - at(slice(-2, -1))) / h
    else:
        first = (-1.5 * at(slice(0, 1)) + 2.0 * at(slice(1, 2)) - 0.5 * at(slice(2, 3))) / h
        last = (0.5 * at(slice(-3, -2)) - 2.0 * at(slice(-2, -1)) + 1.5 * at(slice(-1, None))) / h
    return concatenate([first, interior, last], axis)


def _diff_along_coordinates(f, axis, x, edge_order):
    """numpy's gradient along ``axis`` at the concrete coordinates ``x`` (non-uniform spacing):
    its second-order differences inside and at the ends (``edge_order`` 2), first-order ones at
    the ends (1); the weights are numbers, so it is linear in ``f``."""
    n = f.shape[axis]
    if not isinstance(n, int) or x.shape != (n,):
        raise ShapeError(
            f"gradient: coordinates of shape {x.shape} for axis {axis} of length {n} "
            "(they must be one value per element, and the axis' length known)"
        )
    if n < edge_order + 1:
        raise ShapeError(
            f"gradient: axis {axis} of length {n} is too short for edge_order={edge_order} "
            f"(it needs at least {edge_order + 1} values)"
        )
    dx = np.diff(x)
    shape = [1] * f.ndim

    def weights(w):
        shape[axis] = w.size
        return constant(np.reshape(w, shape), f.dtype)

    def at(key):
        return _block(f, axis, key)

    dx1, dx2 = dx[:-1], dx[1:]
    interior = (
        weights(-dx2 / (dx1 * (dx1 + dx2))) * at(slice(None, -2))
        + weights((dx2 - dx1) / (dx1 * dx2)) * at(slice(1, -1))
        + weights(dx1 / (dx2 * (dx1 + dx2))) * at(slice(2, None))
    )
    if edge_order == 1:
        first = (at(slice(1, 2)) - at(slice(0, 1))) / float(dx[0])
        last = (at(slice(-1, None)) - at(slice(-2, -1))) / float(dx[-1])
    else:
        d1, d2 = float(dx[0]), float(dx[1])
        first = (
            (-(2.0 * d1 + d2) / (d1 * (d1 + d2))) * at(slice(0, 1))
            + ((d1 + d2) / (d1 * d2)) * at(slice(1, 2))
            + (-d1 / (d2 * (d1 + d2))) * at(slice(2, 3))
        )
        d1, d2 = float(dx[-2]), float(dx[-1])
        last = (
            (d2 / (d1 * (d1 + d2))) * at(slice(-3, -2))
            + (-(d2 + d1) / (d1 * d2)) * at(slice(-2, -1))
            + ((2.0 * d2 + d1) / (d2 * (d1 + d2))) * at(slice(-1, None))
        )
    return concatenate([first, interior, last], axis)


def gradient(f, *varargs, axis=None, edge_order=1):
    """numpy's ``gradient``: one spacing per axis (or one for all, or none: 1), each a scalar
    or an array of concrete coordinates (non-uniform spacing); central differences inside,
    one-sided differences of ``edge_order`` 1 or 2 at the ends, numpy's formulas."""
    f = as_expr(f)
    if not is_float(f.dtype):
        f = ew.cast(f, "float64")
    axes = list(range(f.ndim)) if axis is None else _ordered_axes(axis, f.ndim, "gradient")
    if edge_order not in (1, 2):
        raise ShapeError(f"gradient: edge_order must be 1 or 2, got {edge_order!r}")
    if len(varargs) == 0:
        spacing = [1.0] * len(axes)
    elif len(varargs) == 1:
        spacing = list(varargs) * len(axes)
    elif len(varargs) == len(axes):
        spacing = list(varargs)
    else:
        raise ShapeError(f"gradient: {len(varargs)} spacings for {len(axes)} axes")
    out = []
    for a, h in zip(axes, spacing):
        if isinstance(h, Expr):
            raise UnsupportedError(
                "np.gradient with traced coordinates or spacing: give concrete numbers (the "
                "spacing is a constant of the difference formula, not a differentiated value)"
            )
        if isinstance(h, (np.ndarray, list, tuple)) and np.ndim(h) > 0:
            out.append(_diff_along_coordinates(f, a, np.asarray(h, dtype=np.float64), edge_order))
        else:
            out.append(_diff_along(f, a, h, edge_order))
    return out[0] if len(out) == 1 else out


# the public builders (star-imported by symgrad.ops and symgrad)
__all__ = [
    "cumsum",
    "cumprod",
    "argsort",
    "sort",
    "top_k",
    "flip",
    "fliplr",
    "flipud",
    "rot90",
    "roll",
    "pad",
    "tile",
    "repeat",
    "split",
    "array_split",
    "hsplit",
    "vsplit",
    "dsplit",
    "moveaxis",
    "rollaxis",
    "atleast_1d",
    "atleast_2d",
    "atleast_3d",
    "hstack",
    "vstack",
    "dstack",
    "column_stack",
    "append",
    "select",
    "linspace",
    "isnan",
    "fmax",
    "fmin",
    "degrees",
    "radians",
    "sinc",
    "nan_to_num",
    "real",
    "imag",
    "conjugate",
    "gradient",
]
