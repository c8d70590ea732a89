"""Contractions and matrix structure, all composites of existing ops (no op of their own).

- ``einsum``: explicit and implicit output, ``...``, a label repeated within one operand (a
  diagonal), any number of operands. Labels only one operand has and the output lacks are
  summed first; the operands are then contracted two at a time, the pair whose result is
  smallest first (sizes of named dims guessed at ``_GUESS``), each pair as a transpose, a
  reshape and one ``matmul`` (BLAS) over (batch, free, contracted) groups; a pair that shares no
  summed label, or whose batch elements are dot or matrix-vector products, is a broadcast
  multiply (summed over its last axes), which fusion makes one loop. The gradient, the JVP and
  fusion come from those ops.
- ``tensordot``, ``inner``, ``dot`` of any rank and ``matmul`` with any number of batch
  dimensions (numpy's broadcasting of them) are written on the same pairwise contraction or
  on the one-batch-dimension ``matmul`` op of ``linalg``.
- ``diagonal`` (and ``trace``) gathers the flat positions ``i * (m + 1)`` with ``take`` (its
  adjoint scatters back); ``diag`` of a vector, ``tril`` and ``triu`` select with a mask built
  from ``arange``; ``kron`` is a broadcast product reshaped; ``cross`` combines the components.

Named (symbolic) sizes work throughout; a diagonal of a non-square block of named sizes whose
length (the smaller side) is not known when the graph is built is refused.
"""

import itertools

import numpy as np
import sympy

from ..errors import ParseError, ShapeError, UnsupportedError
from ..graph import broadcast_shapes, dim_product, dim_str, dims_equal, float_of, normalize_axes, promote
from ..graph import shape_str
from .registry import as_expr, constant
from . import elementwise as ew
from . import linalg
from .reduce import count, sum
from .structure import arange, broadcast_to, concatenate, expand_dims, getitem, reshape, stack, take
from .structure import transpose

__all__ = [
    "einsum",
    "tensordot",
    "inner",
    "dot",
    "matmul",
    "kron",
    "cross",
    "trace",
    "diag",
    "diagonal",
    "tril",
    "triu",
]

# the size a named dim is taken to have when choosing the order of contractions
_GUESS = 100


def _permute(x, axes):
    axes = tuple(axes)
    return x if axes == tuple(range(x.ndim)) else transpose(x, axes)


def _reshape(x, shape):
    shape = tuple(shape)
    return (
        x
        if len(shape) == x.ndim and all(dims_equal(a, b) for a, b in zip(x.shape, shape))
        else reshape(x, shape)
    )


def _is_one(d):
    return isinstance(d, int) and d == 1


# ---------------------------------------------------------------- diagonal, trace, diag, tril, triu


def _square_length(n, m, where):
    """The diagonal length of an (n, m) block: the smaller side."""
    if isinstance(n, int) and isinstance(m, int):
        return min(n, m)
    gap = sympy.expand(sympy.sympify(m) - n)
    if gap.is_Integer:
        return n if gap >= 0 else m
    raise UnsupportedError(
        f"{where} of a block of named sizes {dim_str(n)} x {dim_str(m)}: its length, the smaller "
        "of the two, is not known when the graph is built; slice the block square first"
    )


def diagonal(x, offset=0, axis1=0, axis2=1):
    """numpy's ``diagonal``: the diagonal of the (axis1, axis2) blocks, as the last axis."""
    x = as_expr(x)
    if x.ndim < 2:
        raise ShapeError(f"diagonal of shape {shape_str(x.shape)}: it needs at least two dimensions")
    if not isinstance(offset, (int, np.integer)) or isinstance(offset, bool):
        raise UnsupportedError(f"diagonal: offset must be a Python int, got {offset!r}")
    a1, a2 = (
        normalize_axes(axis1, x.ndim, where="diagonal axis1")[0],
        normalize_axes(axis2, x.ndim, where="diagonal axis2")[0],
    )
    if a1 == a2:
        raise ShapeError(f"diagonal of shape {shape_str(x.shape)}: axis1 and axis2 are both {a1}")
    rest = tuple(i for i in range(x.ndim) if i not in (a1, a2))
    x = _permute(x, rest + (a1, a2))
    offset = int(offset)
    # the offset diagonal is the main diagonal of a slice (the slice checks named sizes at the call)
    if offset > 0:
        x = getitem(x, (Ellipsis, slice(offset, None)))
    elif offset < 0:
        x = getitem(x, (Ellipsis, slice(-offset, None), slice(None)))
    lead, (n, m) = x.shape[:-2], x.shape[-2:]
    length = _square_length(n, m, "diagonal")
    flat = reshape(x, lead + (dim_product((n, m)),))
    i = arange(length)
    width = m + 1 if isinstance(m, int) else ew.add(count([m], "int64"), 1)
    return take(flat, ew.mul(i, width), axis=-1)


def trace(x, offset=0, axis1=0, axis2=1):
    """numpy's ``trace``: the sum of the diagonal."""
    return sum(diagonal(x, offset, axis1, axis2), axis=-1)


def _band_mask(n, m, offset, keep):
    """(n, m) bool: j - i <= offset (``keep="lower"``), j - i >= offset (upper), == offset (diag)."""
    i = reshape(arange(n), (n, 1))
    j = reshape(arange(m), (1, m))
    shifted = ew.add(i, int(offset)) if offset else i
    return {"lower": ew.less_equal, "upper": ew.greater_equal, "diag": ew.equal}[keep](j, shifted)


def _zero(x):
    return constant(0, x.dtype)


def _triangle(x, k, keep, name):
    x = as_expr(x)
    if x.ndim < 2:
        raise ShapeError(f"{name} of shape {shape_str(x.shape)}: it needs at least two dimensions")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
        raise UnsupportedError(f"{name}: k must be a Python int, got {k!r}")
    return ew.where(_band_mask(x.shape[-2], x.shape[-1], int(k), keep), x, _zero(x))


def tril(x, k=0):
    """numpy's ``tril``: zeros above the k-th diagonal of the last two axes."""
    return _triangle(x, k, "lower", "tril")


def triu(x, k=0):
    """numpy's ``triu``: zeros below the k-th diagonal of the last two axes."""
    return _triangle(x, k, "upper", "triu")


def diag(v, k=0):
    """numpy's ``diag``: a vector's square matrix with it on the k-th diagonal, or a matrix's
    k-th diagonal."""
    v = as_expr(v)
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
        raise UnsupportedError(f"diag: k must be a Python int, got {k!r}")
    k = int(k)
    if v.ndim == 2:
        return diagonal(v, k)
    if v.ndim != 1:
        raise ShapeError(f"diag of shape {shape_str(v.shape)}: it takes a vector or a matrix")
    size = v.shape[0] + abs(k)
    if k:  # the vector padded to the matrix's side, then placed along the rows (k > 0) or columns
        v = concatenate([v, broadcast_to(_zero(v), (abs(k),))])
    along = reshape(v, (size, 1) if k >= 0 else (1, size))
    return ew.where(_band_mask(size, size, k, "diag"), along, _zero(v))


# ---------------------------------------------------------------- kron, cross


def kron(a, b):
    """numpy's ``kron``: the block matrix of a[i, j] * b (any rank; the lower one gets leading 1s)."""
    a, b = as_expr(a), as_expr(b)
    rank = max(a.ndim, b.ndim)
    sa = (1,) * (rank - a.ndim) + a.shape
    sb = (1,) * (rank - b.ndim) + b.shape
    wide_a = reshape(a, tuple(itertools.chain.from_iterable((d, 1) for d in sa)))
    wide_b = reshape(b, tuple(itertools.chain.from_iterable((1, d) for d in sb)))
    return reshape(ew.mul(wide_a, wide_b), tuple(dim_product((p, q)) for p, q in zip(sa, sb)))


def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """numpy's ``cross`` of 3-vectors along ``axisa``/``axisb`` (or ``axis``), broadcasting the rest."""
    a, b = as_expr(a), as_expr(b)
    if axis is not None:
        axisa = axisb = axisc = axis
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError("cross: both operands need at least one dimension (the vectors' axis)")
    (axa,) = normalize_axes(axisa, a.ndim, where="cross axisa")
    (axb,) = normalize_axes(axisb, b.ndim, where="cross axisb")
    a = _permute(a, tuple(i for i in range(a.ndim) if i != axa) + (axa,))
    b = _permute(b, tuple(i for i in range(b.ndim) if i != axb) + (axb,))
    for name, v in (("a", a), ("b", b)):
        if not (isinstance(v.shape[-1], int) and v.shape[-1] == 3):
            raise UnsupportedError(
                f"cross: the vectors of {name} have length {dim_str(v.shape[-1])}; only 3-vectors are "
                "supported (numpy's 2-vectors are deprecated)"
            )
    a0, a1, a2 = (getitem(a, (Ellipsis, i)) for i in range(3))
    b0, b1, b2 = (getitem(b, (Ellipsis, i)) for i in range(3))
    parts = [a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0]
    rank = len(broadcast_shapes(a.shape[:-1], b.shape[:-1], what="cross operands")) + 1
    (axc,) = normalize_axes(axisc, rank, where="cross axisc")
    return stack(parts, axis=axc)


# ---------------------------------------------------------------- pairwise contraction


def _sum_labels(x, labels, drop):
    """Sum ``x`` over the axes whose label is in ``drop``."""
    axes = tuple(i for i, label in enumerate(labels) if label in drop)
    if not axes:
        return x, labels
    return sum(x, axes), [label for label in labels if label not in drop]


def _contract_pair(a, la, b, lb, keep):
    """a (labels la) times b (labels lb), summed over the shared labels not in ``keep``:
    (result, its labels). Shared labels in ``keep`` are batch axes."""
    a, la = _sum_labels(a, la, set(la) - set(lb) - keep)
    b, lb = _sum_labels(b, lb, set(lb) - set(la) - keep)
    shared = [label for label in la if label in lb]
    batch = [label for label in shared if label in keep]
    summed = [label for label in shared if label not in keep]
    free_a = [label for label in la if label not in lb]
    free_b = [label for label in lb if label not in la]
    size = {**dict(zip(la, a.shape)), **dict(zip(lb, b.shape))}
    dims = (
        [size[label] for label in batch],
        [size[label] for label in free_a],
        [size[label] for label in free_b],
    )
    labels = batch + free_a + free_b
    if not summed or (batch and not (free_a and free_b)):
        # an outer product per batch element, or a batch of dot products / matrix-vector products
        # (too small for a BLAS call each): a broadcast multiply summed over the last axes, which
        # fusion turns into one loop
        a = _permute(a, [la.index(label) for label in batch + free_a + summed])
        b = _permute(b, [lb.index(label) for label in batch + free_b + summed])
        tail = tuple(size[label] for label in summed)
        a = _reshape(a, tuple(dims[0]) + tuple(dims[1]) + (1,) * len(free_b) + tail)
        b = _reshape(b, tuple(dims[0]) + (1,) * len(free_a) + tuple(dims[2]) + tail)
        product = ew.mul(a, b)
        if summed:
            product = sum(product, tuple(range(product.ndim - len(summed), product.ndim)))
        return product, labels
    a = _permute(a, [la.index(label) for label in batch + free_a + summed])
    b = _permute(b, [lb.index(label) for label in batch + summed + free_b])
    k = dim_product([size[label] for label in summed])
    groups = [dim_product(d) for d in dims]
    # (batch, M, K) @ (batch, K, N); a side with no free label is a vector, no batch: 2-D
    left = ([groups[0]] if batch else []) + ([groups[1]] if free_a or batch else []) + [k]
    right = ([groups[0]] if batch else []) + [k] + ([groups[2]] if free_b or batch else [])
    product = linalg.matmul(_reshape(a, left), _reshape(b, right))
    return _reshape(product, tuple(dims[0] + dims[1] + dims[2])), labels


def _floats(operands):
    """The operands in their common float dtype (integers and bools in float64, as matmul computes
    them), so a contraction has one dtype whichever products it is lowered to."""
    dtype = float_of(promote(*[x.dtype for x in operands]))
    return [x if x.dtype == dtype else ew.cast(x, dtype) for x in operands]


def _guess(d):
    if isinstance(d, int):
        return d
    return int(sympy.sympify(d).subs({s: _GUESS for s in sympy.sympify(d).free_symbols}))


def _contract_all(terms, output):
    """Contract [(expr, labels)] to the labels ``output`` (in that order)."""
    terms = list(terms)
    while len(terms) > 1:
        best = None
        for i, j in itertools.combinations(range(len(terms)), 2):
            keep = set(output).union(*(terms[t][1] for t in range(len(terms)) if t not in (i, j)))
            labels_i, labels_j = terms[i][1], terms[j][1]
            sizes = {**dict(zip(labels_i, terms[i][0].shape)), **dict(zip(labels_j, terms[j][0].shape))}
            kept = [label for label in sizes if label in keep]
            cost = (int(np.prod([_guess(sizes[label]) for label in kept], dtype=float)), i, j)
            if best is None or cost < best[0]:
                best = (cost, keep)
        (_, i, j), keep = best
        merged = _contract_pair(*terms[i], *terms[j], keep)
        terms = [t for n, t in enumerate(terms) if n not in (i, j)] + [merged]
    (x, labels) = terms[0]
    x, labels = _sum_labels(x, labels, set(labels) - set(output))
    return _permute(x, [labels.index(label) for label in output])


# ---------------------------------------------------------------- einsum


def _subscript_error(message, subscripts, column=None):
    return ParseError(f"einsum subscripts {subscripts!r}: {message}", subscripts, column)


def _parse_term(term, subscripts, start):
    """A term's labels, with "..." as one item; characters checked, columns named."""
    labels, i = [], 0
    while i < len(term):
        ch = term[i]
        if term.startswith("...", i):
            if "..." in labels:
                raise _subscript_error("an operand has two ellipses", subscripts, start + i)
            labels.append("...")
            i += 3
            continue
        if ch == " ":
            i += 1
            continue
        if not (ch.isascii() and ch.isalpha()):
            raise _subscript_error(
                f"{ch!r} is not a subscript (a letter a-z, A-Z or '...')", subscripts, start + i
            )
        labels.append(ch)
        i += 1
    return labels


def _parse_subscripts(subscripts, count_operands):
    if not isinstance(subscripts, str):
        raise UnsupportedError(f"einsum: subscripts must be a string, got {type(subscripts).__name__}")
    if subscripts.count("->") > 1:
        raise _subscript_error("more than one '->'", subscripts, subscripts.rfind("->"))
    lhs, arrow, rhs = subscripts.partition("->")
    for bad in ("-", ">"):
        where = lhs.find(bad) if bad in lhs else rhs.find(bad)
        if where >= 0:
            at = where if bad in lhs else len(lhs) + 2 + where
            raise _subscript_error(f"a stray {bad!r} (the output follows '->')", subscripts, at)
    terms, start = [], 0
    for term in lhs.split(","):
        terms.append(_parse_term(term, subscripts, start))
        start += len(term) + 1
    if len(terms) != count_operands:
        raise _subscript_error(
            f"{len(terms)} operand term{'s' if len(terms) != 1 else ''} for {count_operands} "
            f"operand{'s' if count_operands != 1 else ''}",
            subscripts,
        )
    output = _parse_term(rhs, subscripts, len(lhs) + 2) if arrow else None
    if output is not None:
        if "," in rhs:
            raise _subscript_error("the output has a ','", subscripts, len(lhs) + 2 + rhs.index(","))
        seen = set()
        for label in output:
            if label in seen:
                raise _subscript_error(f"the output repeats {label!r}", subscripts)
            seen.add(label)
    return terms, output


def _sublist_letters(sublist, where):
    letters = []
    for item in sublist:
        if item is Ellipsis:
            letters.append("...")
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool) and 0 <= item < 52:
            letters.append("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[int(item)])
        else:
            raise ParseError(f"einsum: {where} holds {item!r}; subscripts are ints 0..51 or Ellipsis")
    return "".join(letters)


def _interleaved(args):
    """einsum(op0, sublist0, op1, sublist1, ..., [sublistout]) as (subscripts, operands)."""
    operands, terms = list(args[0::2]), list(args[1::2])
    output = None
    if len(operands) > len(terms):  # a trailing output sublist
        output = operands.pop()
    text = ",".join(_sublist_letters(t, f"operand {i}'s sublist") for i, t in enumerate(terms))
    if output is not None:
        text += "->" + _sublist_letters(output, "the output sublist")
    return text, operands


def einsum(subscripts, *operands):
    """numpy's ``einsum``: ``"ij,jk->ik"``, implicit output (``"ij,jk"``), ``...``, repeated labels
    (``"ii->i"``, ``"ii"``), any number of operands; also the interleaved
    ``einsum(a, [0, 1], b, [1, 2], [0, 2])`` form. Integer and bool operands are computed in
    float64, as ``matmul`` computes them."""
    if not isinstance(subscripts, str):
        subscripts, operands = _interleaved((subscripts,) + operands)
    if not operands:
        raise _subscript_error("no operands given", subscripts)
    operands = _floats([as_expr(x) for x in operands])
    terms, output = _parse_subscripts(subscripts, len(operands))

    # give the ellipsis dims labels of their own, right-aligned across operands (they broadcast)
    rank_e = 0
    for n, (labels, x) in enumerate(zip(terms, operands)):
        named = len([label for label in labels if label != "..."])
        if ("..." in labels and named > x.ndim) or ("..." not in labels and named != x.ndim):
            raise ShapeError(
                f"einsum {subscripts!r}: operand {n} has shape {shape_str(x.shape)} but its "
                f"subscripts {''.join(labels)!r} name {named} dimension{'s' if named != 1 else ''}"
            )
        if "..." in labels:
            rank_e = max(rank_e, x.ndim - named)
    ellipsis = [f"...{i}" for i in range(rank_e)]
    expanded = []
    for labels, x in zip(terms, operands):
        if "..." in labels:
            k = labels.index("...")
            e = x.ndim - (len(labels) - 1)
            labels = labels[:k] + ellipsis[rank_e - e :] + labels[k + 1 :]
        expanded.append(labels)

    counts = {}
    for labels in expanded:
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
    if output is None:
        letters = sorted(label for label, c in counts.items() if c == 1 and not label.startswith("..."))
        output = ellipsis + letters
    else:
        if rank_e and "..." not in output:
            raise ShapeError(
                f"einsum {subscripts!r}: the operands have '...' dimensions, so the output needs '...'"
            )
        k = output.index("...") if "..." in output else len(output)
        output = output[:k] + (ellipsis if "..." in output else []) + output[k + 1 :]
        for label in output:
            if label not in counts:
                raise _subscript_error(f"the output's {label!r} is in no operand", subscripts)

    # each label's size, with numpy's broadcasting of size 1 (across operands, not within one)
    size = {}
    for n, (labels, x) in enumerate(zip(expanded, operands)):
        own = {}
        for label, d in zip(labels, x.shape):
            if label in own and not dims_equal(own[label], d):
                raise ShapeError(
                    f"einsum {subscripts!r}: operand {n} (shape {shape_str(x.shape)}) repeats subscript "
                    f"{label!r} over dimensions of sizes {dim_str(own[label])} and {dim_str(d)}"
                )
            own[label] = d
        for label, d in zip(labels, x.shape):
            have = size.get(label)
            if have is None or _is_one(have):
                size[label] = d
            elif not _is_one(d) and not dims_equal(have, d):
                shown = "..." if label.startswith("...") else repr(label)
                raise ShapeError(
                    f"einsum {subscripts!r}: subscript {shown} has size {dim_str(have)} in one operand "
                    f"and {dim_str(d)} in operand {n} (shape {shape_str(x.shape)})"
                )

    terms = []
    for labels, x in zip(expanded, operands):
        # an axis of size 1 under a longer label broadcasts: it is dropped and the label left to the others
        ones = [
            i for i, (label, d) in enumerate(zip(labels, x.shape)) if _is_one(d) and not _is_one(size[label])
        ]
        if ones:
            x = reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in ones))
            labels = [label for i, label in enumerate(labels) if i not in ones]
        # a label repeated within the operand: its diagonal
        while len(set(labels)) < len(labels):
            label = next(lab for lab in labels if labels.count(lab) > 1)
            p = labels.index(label)
            q = labels.index(label, p + 1)
            x = diagonal(x, 0, p, q)
            labels = [lab for i, lab in enumerate(labels) if i not in (p, q)] + [label]
        terms.append((x, labels))

    # labels one operand has alone and the output lacks are summed before any product
    for n, (x, labels) in enumerate(terms):
        others = set(output).union(*(t[1] for m, t in enumerate(terms) if m != n))
        terms[n] = _sum_labels(x, labels, set(labels) - others)
    return _contract_all(terms, output)


# ---------------------------------------------------------------- tensordot, inner, dot, matmul


def tensordot(a, b, axes=2):
    """numpy's ``tensordot``: sum over ``a``'s last ``axes`` and ``b``'s first, or over the pairs
    ``axes=(axes_a, axes_b)``."""
    a, b = _floats([as_expr(a), as_expr(b)])
    if isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
        k = int(axes)
        if k < 0 or k > min(a.ndim, b.ndim):
            raise ShapeError(
                f"tensordot of shapes {shape_str(a.shape)} and {shape_str(b.shape)}: cannot sum over {k} axes"
            )
        axes_a, axes_b = tuple(range(a.ndim - k, a.ndim)), tuple(range(k))
    else:
        try:
            axes_a, axes_b = axes
        except (TypeError, ValueError):
            raise ShapeError(
                f"tensordot: axes must be an int or a pair of axis lists, got {axes!r}"
            ) from None
        axes_a = (axes_a,) if isinstance(axes_a, (int, np.integer)) else tuple(axes_a)
        axes_b = (axes_b,) if isinstance(axes_b, (int, np.integer)) else tuple(axes_b)
        if len(axes_a) != len(axes_b):
            raise ShapeError(f"tensordot: {len(axes_a)} axes of a paired with {len(axes_b)} axes of b")
        axes_a = tuple(normalize_axes(x, a.ndim, where="tensordot axes of a")[0] for x in axes_a)
        axes_b = tuple(normalize_axes(x, b.ndim, where="tensordot axes of b")[0] for x in axes_b)
    for i, j in zip(axes_a, axes_b):
        if not dims_equal(a.shape[i], b.shape[j]):
            raise ShapeError(
                f"tensordot of shapes {shape_str(a.shape)} and {shape_str(b.shape)}: axis {i} of a "
                f"({dim_str(a.shape[i])}) and axis {j} of b ({dim_str(b.shape[j])}) differ"
            )
    la = [("a", i) for i in range(a.ndim)]
    lb = [("b", j) for j in range(b.ndim)]
    for i, j in zip(axes_a, axes_b):
        lb[j] = la[i]
    output = [label for label in la if label not in lb] + [label for label in lb if label not in la]
    return _contract_all([(a, la), (b, lb)], output)


def inner(a, b):
    """numpy's ``inner``: the sum over the last axis of both."""
    a, b = as_expr(a), as_expr(b)
    if a.ndim == 0 or b.ndim == 0:
        return ew.mul(a, b)
    return tensordot(a, b, ([-1], [-1]))


def dot(a, b):
    """numpy's ``dot``: a product for scalars, ``matmul`` up to matrices, else the sum over ``a``'s
    last axis and ``b``'s second-to-last."""
    a, b = as_expr(a), as_expr(b)
    if a.ndim == 0 or b.ndim == 0 or (a.ndim <= 2 and b.ndim <= 2):
        return linalg.dot(a, b)
    return tensordot(a, b, ([-1], [0 if b.ndim == 1 else -2]))


def _drop_unit_batch(x):
    """An operand whose batch dims are all 1 as the plain matrix (it broadcasts the same)."""
    return reshape(x, x.shape[-2:]) if x.ndim > 2 and all(_is_one(d) for d in x.shape[:-2]) else x


def matmul(a, b):
    """numpy's ``matmul`` (``@``) with any number of batch dimensions, broadcast as numpy does."""
    a, b = as_expr(a), as_expr(b)
    if a.ndim <= 3 and b.ndim <= 3 or a.ndim == 0 or b.ndim == 0:
        return linalg.matmul(a, b)
    if a.ndim == 1:
        out = matmul(expand_dims(a, 0), b)
        return reshape(out, out.shape[:-2] + out.shape[-1:])
    if b.ndim == 1:
        out = matmul(a, expand_dims(b, 1))
        return reshape(out, out.shape[:-1])
    batch = broadcast_shapes(
        a.shape[:-2],
        b.shape[:-2],
        what=f"matmul batch dimensions of {shape_str(a.shape)} and {shape_str(b.shape)}",
    )
    if not dims_equal(a.shape[-1], b.shape[-2]):
        return linalg.matmul(a, b)  # its shape rule names both shapes
    (n, k), m = a.shape[-2:], b.shape[-1]
    a, b = _drop_unit_batch(a), _drop_unit_batch(b)
    if b.ndim == 2:  # every batch row of a against one matrix: one (B*n, k) @ (k, m) product
        out = linalg.matmul(reshape(a, (dim_product(a.shape[:-1]), k)), b)
    elif a.ndim == 2:
        out = linalg.matmul(a, reshape(b, (dim_product(b.shape[:-2]), k, m)))
    else:
        full = [x if x.shape[:-2] == batch else broadcast_to(x, batch + x.shape[-2:]) for x in (a, b)]
        flat = dim_product(batch)
        out = linalg.matmul(reshape(full[0], (flat, n, k)), reshape(full[1], (flat, k, m)))
    return reshape(out, batch + (n, m))
