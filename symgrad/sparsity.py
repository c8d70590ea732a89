"""Structural sparsity of Jacobians and Hessians, and the sparse Hessian built from it.

The pattern is found by propagating dependency sets element by element through the
graph, inputs first: each node holds a sparse boolean matrix (its elements x the
``wrt`` elements) saying which input elements each of its elements depends on. An
input whose JVP rule is ``None`` (comparisons, masks, ``where``'s condition,
``stop_gradient``) passes no dependency: its derivative is zero.

- elementwise ops: each output element depends on the broadcast-matching element
  of each input;
- ``sum``/``max``/``min``/``prod``: on the elements of its reduced slice;
  ``prod_others`` mixes the elements within each slice;
- an op that only moves the elements of an input (its VJP reads no value: reshape,
  transpose, slicing, padding, concatenate, gathers) is evaluated twice, on the input's
  element numbers and on random values, which shows where each output element comes
  from (a tridiagonal stencil of 10,000 unknowns costs a few array evaluations);
- every other op (matmul, an op that sums moved elements ...) is probed: its numpy definition is evaluated at a random point with one input
  element moved at a time, and the output elements that change are its
  dependencies (exact for the linear and bilinear ops; integer index inputs must be
  constants, otherwise the op is taken as dense).

The Hessian pattern is the Jacobian pattern of the gradient graph, symmetrised. A
structurally zero entry is zero at every point; a structural non-zero may still
evaluate to zero somewhere. Sizes must be concrete.
"""

import numpy as np

from .autodiff import grad
from .errors import UnsupportedError
from .graph import concrete, is_float, shape_str, size_of, topo_order
from .ops.registry import ALL, OPS, POINTWISE

PROBE_LIMIT = 20_000_000  # input elements x output elements a probe may evaluate


def _need_concrete(node, where):
    if not concrete(node.shape):
        raise UnsupportedError(
            f"{where}: a node of symbolic shape {shape_str(node.shape)} "
            "(sparsity patterns need concrete sizes)"
        )


def _reduction_map(x_shape, axes):
    """Sparse (out elements x in elements) matrix: which output slice each input element feeds."""
    import scipy.sparse as sp  # scipy loads only when a sparsity pattern is built

    kept = tuple(1 if i in axes else d for i, d in enumerate(x_shape))
    out_index = np.broadcast_to(np.arange(int(np.prod(kept))).reshape(kept), x_shape).ravel()
    n_in = out_index.size
    return sp.csr_matrix(
        (np.ones(n_in, dtype=bool), (out_index, np.arange(n_in))), shape=(int(np.prod(kept)), n_in)
    )


def _probe(node, index, rng):
    """The local Jacobian pattern of ``node`` in input ``index``, from its numpy definition."""
    import scipy.sparse as sp  # scipy loads only when a sparsity pattern is built

    opdef = OPS[node.op]
    values = []
    for inp in node.inputs:
        if inp.op == "constant":
            values.append(np.array(inp.value))
        elif is_float(inp.dtype):
            values.append(rng.uniform(0.5, 1.5, size=inp.shape).astype(inp.dtype))
        else:
            return None  # an integer input known only at run time: no pattern
    n_in, n_out = size_of(node.inputs[index].shape), size_of(node.shape)
    if opdef.impl is None or n_in * max(n_out, 1) > PROBE_LIMIT:
        return None
    # a copy: the definition may return a view of the input about to be moved
    base = np.array(opdef.impl(*values, **node.attrs), dtype=np.float64).ravel()
    rows, cols = [], []
    moved = values[index].reshape(-1)
    for j in range(n_in):
        old = moved[j]
        moved[j] = old + 1.0
        changed = np.nonzero(np.asarray(opdef.impl(*values, **node.attrs), dtype=np.float64).ravel() != base)[
            0
        ]
        moved[j] = old
        rows.append(changed)
        cols.append(np.full(changed.size, j))
    rows = np.concatenate(rows) if rows else np.zeros(0, int)
    cols = np.concatenate(cols) if cols else np.zeros(0, int)
    return sp.csr_matrix((np.ones(rows.size, dtype=bool), (rows, cols)), shape=(n_out, n_in))


def _moved(node, index):
    """The local pattern of an op that only moves the elements of input ``index`` (its VJP
    reads no value: reshape, transpose, slicing, padding, concatenate, gathers), from two
    evaluations of its numpy definition instead of one per input element: the input
    numbered 1..n (the other float inputs 0) shows where each output element comes from,
    and random values confirm it is a copy. None when the op is not a copy (a sum of
    several elements, an index known only at run time): the caller probes."""
    import scipy.sparse as sp  # scipy loads only when a sparsity pattern is built

    opdef = OPS[node.op]
    moves = opdef.moves_adjoint
    if opdef.impl is None or not (moves == ALL or index in moves):
        return None
    values = []
    for inp in node.inputs:
        if inp.op == "constant":
            values.append(np.array(inp.value))
        elif is_float(inp.dtype):
            values.append(np.zeros(inp.shape, dtype=np.float64))
        else:
            return None
    n_in = size_of(node.inputs[index].shape)
    numbers = np.arange(1.0, n_in + 1.0).reshape(node.inputs[index].shape)
    random = np.random.default_rng(1).uniform(1.0, 2.0, size=numbers.shape)
    values[index] = numbers
    source = np.asarray(opdef.impl(*values, **node.attrs), dtype=np.float64).ravel()
    values[index] = random
    check = np.asarray(opdef.impl(*values, **node.attrs), dtype=np.float64).ravel()
    if source.shape != check.shape or np.any(source != np.round(source)):
        return None
    hit = np.nonzero(source)[0]
    cols = source[hit].astype(np.int64) - 1
    if np.any(cols < 0) or np.any(cols >= n_in) or np.any(check[source == 0] != 0):
        return None
    if not np.array_equal(check[hit], random.ravel()[cols]):
        return None
    return sp.csr_matrix((np.ones(hit.size, dtype=bool), (hit, cols)), shape=(source.size, n_in))


def _local_pattern(node, index, rng):
    """(out elements x input elements) pattern of d node / d node.inputs[index]."""
    import scipy.sparse as sp  # scipy loads only when a sparsity pattern is built

    opdef = OPS[node.op]
    x = node.inputs[index]
    if opdef.jvp == POINTWISE or node.op == "cast":
        n_in = size_of(x.shape)
        source = np.broadcast_to(np.arange(n_in).reshape(x.shape), node.shape).ravel()
        return sp.csr_matrix(
            (np.ones(source.size, dtype=bool), (np.arange(source.size), source)), shape=(source.size, n_in)
        )
    if opdef.reduction:
        return _reduction_map(x.shape, node.attrs["axes"])
    if node.op == "prod_others":
        slices = _reduction_map(x.shape, node.attrs["axes"])
        return (slices.T @ slices).astype(bool)
    pattern = _moved(node, index)
    if pattern is None:
        pattern = _probe(node, index, rng)
    if pattern is None:  # dense: every output element may depend on every input element
        pattern = sp.csr_matrix(np.ones((size_of(node.shape), size_of(x.shape)), dtype=bool))
    return pattern


def jacobian_sparsity(outputs, wrt):
    """Structural pattern of d outputs / d wrt: a boolean CSR matrix, one row per output
    element (outputs flattened and concatenated), one column per ``wrt`` element."""
    import scipy.sparse as sp  # scipy loads only when a sparsity pattern is built

    rng = np.random.default_rng(0)
    offsets = np.cumsum([0] + [size_of(w.shape) for w in wrt])
    for w in wrt:
        _need_concrete(w, f"sparsity w.r.t. {w.name}")
    n = int(offsets[-1])
    deps = {}
    for k, w in enumerate(wrt):
        size = int(offsets[k + 1] - offsets[k])
        deps[id(w)] = sp.csr_matrix(
            (np.ones(size, dtype=bool), (np.arange(size), offsets[k] + np.arange(size))), shape=(size, n)
        )
    for node in topo_order(list(outputs)):
        if not node.inputs or id(node) in deps or not is_float(node.dtype):
            continue
        opdef = OPS[node.op]
        if opdef.tuple_valued and any(id(i) in deps for i in node.inputs):
            raise UnsupportedError(
                f"sparsity through the loop {node.op} (sg.scan, fori_loop, while_loop) is not supported: "
                "its pattern depends on the trip count; use a dense hessian or hvp"
            )
        total = None
        for index, inp in enumerate(node.inputs):
            dep = deps.get(id(inp))
            if dep is None or opdef.jvp_rule(index) is None:
                continue
            _need_concrete(node, f"sparsity through {node.op}")
            part = (_local_pattern(node, index, rng) @ dep).astype(bool)
            total = part if total is None else (total + part).astype(bool)
        if total is not None:
            deps[id(node)] = total.tocsr()
    blocks = [
        deps[id(o)] if id(o) in deps else sp.csr_matrix((size_of(o.shape), n), dtype=bool) for o in outputs
    ]
    return sp.vstack(blocks, format="csr").astype(bool)


def hessian_sparsity(y, wrt):
    """Structural pattern of the Hessian of the scalar ``y``: an (n, n) boolean CSR matrix
    over the ``wrt`` elements flattened and concatenated (C order)."""
    pattern = jacobian_sparsity(grad(y, list(wrt)), wrt)
    pattern = (pattern + pattern.T).astype(bool).tocsr()
    pattern.sort_indices()
    return pattern


def color_columns(pattern):
    """Greedy colouring of the columns so that no two columns of one colour share a row
    (Curtis-Powell-Reid): each colour is one Hessian-vector product."""
    csc = pattern.tocsc()
    csr = pattern.tocsr()
    n = pattern.shape[1]
    colors = np.full(n, -1, dtype=np.int64)
    for j in range(n):
        forbidden = set()
        for i in csc.indices[csc.indptr[j] : csc.indptr[j + 1]]:
            forbidden.update(colors[csr.indices[csr.indptr[i] : csr.indptr[i + 1]]].tolist())
        c = 0
        while c in forbidden:
            c += 1
        colors[j] = c
    return colors


def color_rows(pattern):
    """Greedy colouring of the rows so that no two rows of one colour share a column: each
    colour is one vector-Jacobian product (a reverse pass)."""
    return color_columns(pattern.T)


def jacobian_coloring(pattern):
    """How to recover a Jacobian of this pattern in the fewest passes: ("forward", column
    colours) when colouring the columns needs no more colours than the rows (one JVP per
    colour), else ("reverse", row colours) (one VJP per colour)."""
    columns, rows = color_columns(pattern), color_rows(pattern)
    count = lambda colors: int(colors.max()) + 1 if colors.size else 0  # noqa: E731
    if count(columns) <= count(rows):
        return "forward", columns
    return "reverse", rows


def bidirectional_coloring(pattern, tries=4):
    """A direct bidirectional partition of the pattern, or None when it needs no fewer passes
    than colouring one side: the densest rows are recovered by reverse passes (rows of one
    colour share no column among them) and every other row by forward passes coloured on those
    rows alone (columns of one colour share no such row); and the mirror, the densest columns
    by forward passes and the rest by reverse. An arrow pattern (a dense row, a dense column
    and the diagonal) takes 3 passes instead of n. Not a full star bicolouring: each entry is
    read directly from one pass. Returns (column colours, row colours, side): -1 marks a line
    no pass of its side serves; side "rows" means an entry in a coloured row comes from the
    reverse pass of its row colour (the rest from forward passes), "columns" that an entry in
    a coloured column comes from the forward pass of its column colour (the rest from reverse)."""
    pattern = pattern.tocsr().astype(bool)
    best = None
    for flip in (False, True):
        p = pattern.T.tocsr() if flip else pattern
        counts = np.diff(p.indptr)
        for k in sorted(set(np.unique(counts)[::-1][:tries].tolist()), reverse=True):
            dense = counts >= k
            if dense.all() or not dense.any():
                continue
            keep = np.flatnonzero(~dense)
            by_rows = np.full(p.shape[0], -1, dtype=np.int64)
            by_rows[dense] = color_rows(p[dense])
            by_columns = color_columns(p[keep])
            # columns that no kept row reads need no pass
            by_columns[np.diff(p[keep].tocsc().indptr) == 0] = -1
            total = int(by_rows.max()) + 1 + (int(by_columns.max()) + 1 if (by_columns >= 0).any() else 0)
            if best is None or total < best[0]:
                best = (total, (by_rows, by_columns, "columns") if flip else (by_columns, by_rows, "rows"))
    return None if best is None else best[1]
