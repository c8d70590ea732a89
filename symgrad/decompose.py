"""Splitting a loss over blocks of rows: the analysis behind value-and-grad on Dask arrays.

A loss decomposes over the rows of its data when it is built from *per-row terms*
(each row of the result depends only on the same row of the data: elementwise
ops, reductions and gathers along other axes, ``X @ w``) that are summed over the
rows, and the sums are combined *affinely* with terms of the parameters alone::

    mean(logaddexp(0, -y * (X @ w))) + 1e-3 * w @ w
         \\_____ per-row term ______/
    \\____ a sum over rows / n ____/    \\_ parameters _/

Write the loss as ``F(theta, S_1, ..., S_k)`` where each ``S_j`` is one of those
sums over rows. ``F`` is affine in the sums, so ``G_j = dF/dS_j`` depends on the
parameters only, and with the rows split into blocks ``b``::

    S_j      = sum_b s_jb(theta)                          (one pass over the data)
    dL/dtheta = dF/dtheta (S held fixed) + sum_b d/dtheta <G_j, s_jb(theta)>

so one kernel per block returns its partial sums ``s_jb`` and the gradient of
``<G_j, s_jb>`` (with ``G_j`` computed once, before the pass), the partials are
added, and ``F`` and its gradient are evaluated once on the summed values. The
global row count (``n`` in ``mean``) is an input of the kernels, so each block is
computed with the whole data set's ``n``.

``plan_rows`` does the analysis and builds the three graphs; anything that
couples rows (a shift ``x[1:] - x[:-1]``, a max over rows, a product of two sums,
``x - mean(x)`` inside a per-row term) is an ``UnsupportedError`` naming the op.
Nothing here needs Dask.
"""

from dataclasses import dataclass

import sympy

from . import autodiff
from .errors import UnsupportedError
from .graph import Expr, free_symbols, is_float, shape_str, topo_order
from .ops import OPS, cast, make
from .ops import count as count_of
from .printing import expr_str
from .symbol_constructors import scalar, tensor


def is_elementwise(op):
    return OPS[op].elementwise or op == "cast"


@dataclass
class RowPlan:
    """How a loss splits over row blocks; see the module docstring.

    - ``row_dim``: the dimension symbol the rows are counted by (``n``);
    - ``row_inputs`` / ``params``: the inputs with and without that leading dimension;
    - ``count``: the scalar symbol standing for the global row count in the kernels;
    - ``sums``: the symbols ``S_j`` that stand for the sums over rows in ``combine``;
    - ``weights``: the symbols that carry ``G_j`` into the block kernel;
    - ``combine``: the loss as a function of ``params``, ``sums`` and ``count``;
    - ``cotangents``: ``G_j = dF/dS_j`` (None for a sum of ints, which has no gradient);
    - ``block_sums``: ``s_jb``, the partial sums over the rows given to the block kernel.
    """

    row_dim: object
    row_inputs: list
    params: list
    count: Expr
    sums: list
    weights: list
    combine: Expr
    cotangents: list
    block_sums: list


def row_dimension(symbols):
    """The dimension the given row inputs share on axis 0, or an UnsupportedError."""
    dims = {}
    for s in symbols:
        if s.ndim == 0:
            raise UnsupportedError(f"{s.name} is a scalar; only arrays can be split into row blocks")
        dims.setdefault(s.shape[0], []).append(s.name)
    if len(dims) > 1:
        listing = "; ".join(f"{', '.join(names)} by {d}" for d, names in dims.items())
        raise UnsupportedError(
            f"arrays split into row blocks must share their first dimension; "
            f"here the rows are counted differently: {listing} (only the data, "
            "with the rows first, can be Dask arrays; pass parameters as numpy "
            "arrays)"
        )
    (dim,) = dims
    if isinstance(dim, int) or not dim.is_Symbol:
        names = dims[dim]
        raise UnsupportedError(
            f"{names[0]} is split into row blocks, but its first dimension is {dim}, not a name: "
            f"declare it by name (e.g. sg.tensor({names[0]!r}, ('n', ...))) so that one kernel "
            "serves blocks of every size"
        )
    return dim


def _unique_name(base, taken):
    name = base
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def plan_rows(loss, inputs, row_dim):
    """Split ``loss`` (a scalar over ``inputs``) into per-block sums over rows counted by
    ``row_dim`` and an affine combination of them; see the module docstring."""
    row_inputs = [s for s in inputs if s.ndim and s.shape[0] == row_dim]
    params = [s for s in inputs if not (s.ndim and s.shape[0] == row_dim)]
    for s in inputs:
        if any(d == row_dim for d in s.shape[1:]):
            raise UnsupportedError(
                f"{s.name} {shape_str(s.shape)} has the row dimension {row_dim} "
                "on an axis other than the first; rows must come first"
            )
    taken = {s.name for s in free_symbols([loss])} | {s.name for s in inputs}
    count = scalar(_unique_name("rows", taken))

    def count_expr(node):
        """dimsize over dims involving the row dim: the global count, an input of every kernel."""
        total = sympy.Mul(*node.attrs["dims"])
        if row_dim not in total.free_symbols:
            return node
        rest = sympy.simplify(total / row_dim)
        if row_dim in rest.free_symbols or not rest.is_polynomial():
            raise UnsupportedError(
                f"a size {total} that is not a multiple of the row count "
                f"{row_dim}: cannot split it over row blocks"
            )
        n = cast(count, node.dtype) if node.dtype != "float64" else count
        if rest == 1:
            return n
        return n * count_of(
            list(sympy.Mul.make_args(rest)) if not rest.is_Integer else [int(rest)], node.dtype
        )

    def where_of(node):
        return f"{node.op} in {expr_str(node)[:80]}"

    def coupling(node, why):
        return UnsupportedError(
            f"the loss does not split over the rows of {', '.join(s.name for s in row_inputs)}: "
            f"{why} ({where_of(node)}). A loss splits when it is a sum or mean over rows of "
            "per-row terms, combined affinely with terms of the parameters alone"
        )

    kind = {}  # id -> "free" | "row" | "sum"
    block = {}  # id -> the node in the block kernel's graph (free and row nodes)
    combined = {}  # id -> the node in F's graph (free and sum nodes)
    sums, sum_symbols, block_sums = [], [], []
    for node in topo_order([loss]):
        ins = node.inputs
        kinds = [kind[id(i)] for i in ins]
        row_shaped = node.ndim > 0 and node.shape[0] == row_dim
        if any(d == row_dim for d in node.shape[1:]):
            raise coupling(
                node, f"the row dimension {row_dim} ends up on another axis {shape_str(node.shape)}"
            )
        if node.op == "symbol":
            kind[id(node)] = "row" if row_shaped else "free"
            block[id(node)] = combined[id(node)] = node
            continue
        if node.op == "dimsize":
            kind[id(node)] = "free"
            block[id(node)] = combined[id(node)] = count_expr(node)
            continue
        if row_shaped:
            if "sum" in kinds:
                raise coupling(node, "a sum over rows is used inside a per-row term")
            _check_row_local(node, kinds, coupling)
            kind[id(node)] = "row"
            block[id(node)] = _rebuild(node, [block[id(i)] for i in ins])
            continue
        if "row" in kinds:
            if not _sums_rows(node, kinds):
                raise coupling(node, _coupling_reason(node))
            if "sum" in kinds:
                raise coupling(node, "a sum over rows is used inside a per-row term")
            partial = _rebuild(node, [block[id(i)] for i in ins])
            symbol = tensor(_unique_name(f"rowsum{len(sums)}", taken), node.shape, node.dtype)
            sums.append(node)
            sum_symbols.append(symbol)
            block_sums.append(partial)
            kind[id(node)] = "sum"
            combined[id(node)] = symbol
            continue
        if "sum" in kinds:
            _check_affine(node, kinds, coupling)
            kind[id(node)] = "sum"
            combined[id(node)] = _rebuild(node, [combined[id(i)] for i in ins])
            continue
        kind[id(node)] = "free"
        block[id(node)] = combined[id(node)] = _rebuild(node, [block[id(i)] for i in ins])

    combine = combined[id(loss)]
    float_sums = [s for s in sum_symbols if is_float(s.dtype)]
    gradients = autodiff.grad(combine, float_sums) if float_sums else []
    by_symbol = dict(zip(map(id, float_sums), gradients))
    cotangents, weights = [], []
    for s in sum_symbols:
        g = by_symbol.get(id(s))
        if g is not None:
            stray = [u.name for u in free_symbols([g]) if any(u is t for t in sum_symbols)]
            if stray:  # the degree tracking above should make this impossible
                raise UnsupportedError(
                    f"the loss is not affine in the sums over rows "
                    f"({', '.join(stray)}); it cannot be split over row blocks"
                )
            weights.append(tensor(_unique_name(f"{s.name}_weight", taken), s.shape, s.dtype))
        else:
            weights.append(None)
        cotangents.append(g)
    return RowPlan(row_dim, row_inputs, params, count, sum_symbols, weights, combine, cotangents, block_sums)


def _rebuild(node, inputs):
    if all(a is b for a, b in zip(inputs, node.inputs)):
        return node
    return make(node.op, inputs, **node.attrs)


def _check_row_local(node, kinds, coupling):
    """``node`` has the rows on axis 0: is each of its rows computed from the same rows only?"""
    ins = node.inputs
    rows = [i for i, k in zip(ins, kinds) if k == "row"]
    op = node.op
    if is_elementwise(op):
        for i in rows:
            if i.ndim != node.ndim:
                raise coupling(
                    node,
                    f"an operand of shape {shape_str(i.shape)} broadcasts the rows "
                    f"onto another axis of {shape_str(node.shape)}",
                )
        return
    if not OPS[op].keeps_rows:
        if rows:
            raise coupling(node, f"{op} mixes rows")
        return
    if OPS[op].along_axes:
        if 0 in node.attrs["axes"]:
            raise coupling(node, f"{op} over the rows")
    elif op == "getitem":
        key = [k for k in node.attrs["key"] if k[0] != "n"]
        if key and key[0] != ("s", None, None, None):
            raise coupling(node, "indexing picks some rows")
    elif op == "take0" and kinds[0] == "row":
        raise coupling(node, "gathering rows by index")
    elif op == "take_last" and any(i.ndim != 2 for i in rows):
        raise coupling(node, "take_along_axis across rows")
    elif op == "matmul":
        a, b = ins
        if kinds[0] != "row" or a.ndim == 1 or (kinds[1] == "row" and b.ndim != a.ndim):
            raise coupling(node, "a matrix product across rows")
    elif op == "broadcast_to":
        x = ins[0]
        if kinds[0] == "row" and x.ndim != node.ndim:
            raise coupling(node, "broadcasting moves the rows to another axis")
    elif op == "concatenate" and node.attrs["axis"] == 0:
        raise coupling(node, "concatenating along the rows")


def _sums_rows(node, kinds):
    """Is ``node`` (without the row dim) a sum over the rows of per-row terms?"""
    if node.op == "sum":  # (sum_to builds a sum)
        return True
    if node.op == "matmul":
        a, b = node.inputs
        # r @ X and r @ r: the contraction runs over the rows
        return a.ndim == 1 and kinds[0] == "row" and kinds[1] == "row"
    return False


def _coupling_reason(node):
    if OPS[node.op].along_axes and not OPS[node.op].linear:
        return f"a {node.op} over the rows (only sums and means over rows split into blocks)"
    if node.op == "getitem":
        return "indexing selects some of the rows"
    if node.op == "take0":
        return "gathering rows by index"
    return f"{node.op} combines rows"


def _check_affine(node, kinds, coupling):
    """Sums over rows may enter the loss only affinely: through linear ops, a product with
    a parameter term, a division by one, or a where with a condition on parameters only."""
    op = node.op
    n_sum = sum(k == "sum" for k in kinds)
    if OPS[op].linear or (op == "cast" and is_float(node.dtype)):
        return
    if OPS[op].bilinear and n_sum == 1:
        return
    if op == "div" and kinds[1] != "sum":
        return
    if op == "where" and kinds[0] != "sum":
        return
    if OPS[op].bilinear:
        raise coupling(node, "a product of two sums over rows")
    raise coupling(
        node,
        f"{op} of a sum over rows (sums over rows may only be added, scaled "
        "and divided by terms of the parameters)",
    )
