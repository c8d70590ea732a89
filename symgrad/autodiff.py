"""Derivatives as graphs: reverse mode (``vjp``, ``grad``).

Reverse mode is one pass over the topologically sorted graph, from the output
back: each node hands its adjoint to its inputs through the VJP rules in the op
table. Adjoints of a node used several times are summed when the node is reached (the
terms of an op with a ``sum_joint`` rule in one piece by it: the adjoints of an array's rows
read one by one, a loop's ``xs[t]``, are one stack of the rows); a contribution shaped
by broadcasting is summed back to its input's shape (Repeat/Sum duality). Only
nodes on a path from a ``wrt`` symbol to the output are visited, zero adjoints
are never built, and every rule builds through the interning constructors, so
the gradient graph reuses the forward nodes and has O(N) nodes.

NaN-safe ``where``: the branch ``where(c, a, b)`` did not take may be nan or inf
(``where(x > 0, sqrt(x), 0)`` at x = -1), and a rule such as sqrt's ``g / (2 out)``
turns the zero adjoint it gets there into ``0 / nan = nan``. So the pass tracks a
*mask* per adjoint: a bool expression outside of which the adjoint is exactly 0.
``where`` gives its branches the masks ``c`` and ``~c`` (and'ed with its own mask);
a node with a mask re-masks each contribution it sends, ``where(mask, contribution, 0)``,
which is exact because every rule is linear in ``g``; adjoints summed from several
users get the ``or`` of their masks (none if any user has none). A scalar mask
crosses any op. A tensor mask crosses an elementwise op (reduced over the axes an
input was broadcast along); an op linear in an input (reshape, transpose, slicing,
broadcast_to, concatenate, gathers, sum, cast), whose VJP only moves and adds the
adjoint, as that VJP applied to the mask's indicator; a max/min/prod reduction as
the mask repeated over the reduced axes; matmul as "some product term is unmasked".
Below a reduction or matmul the contribution is re-masked too (``prod_others``
may be inf where the slice is masked out), and matmul's rule gets the other
operand with its masked-out entries zeroed (else ``0 * nan`` enters the sum).
Elsewhere the mask is dropped, which is still correct but no longer NaN-safe.
"""

import numpy as np

from .errors import ShapeError, UnsupportedError
from .graph import Expr, is_float, shape_str, size_of, topo_order
from .graph import broadcast_shapes
from .ops import (
    OPS,
    add,
    as_expr,
    broadcast_to,
    cast,
    concatenate,
    constant,
    expand_dims,
    reshape,
    stack,
    sum_to,
)
from .ops import sum as sum_over, transpose
from .ops import logical_and, logical_not, logical_or, where
from .ops.registry import ALL, POINTWISE
from .ops.linalg import eye
from .ops.structure import slice_grad


class RuleNotes:
    """The rule notes of one derivative computation: which op's VJP or JVP rule built a node,
    as the one-line maths of the op table (``"sin: d/dx sin(x) = cos(x)"``), for the comments
    of the generated source.

    Nodes are interned and shared by every expression of the process, so a note cannot live
    on the node (it would depend on which gradient first built it). The derivative functions
    record into the table they are given (``notes=``), and the caller hands it to
    ``compile_graph`` with the outputs: what the comments say depends on this computation
    alone. The first rule to record a node keeps it. The table holds its nodes, so an id it
    keys by is never reused while it lives."""

    __slots__ = ("_by_id",)

    def __init__(self):
        self._by_id = {}

    def record(self, node, text):
        self._by_id.setdefault(id(node), (node, text))

    def get(self, node):
        """The note of ``node``, or None."""
        entry = self._by_id.get(id(node))
        return None if entry is None else entry[1]

    def __len__(self):
        return len(self._by_id)


class NoForwardRule(UnsupportedError):
    """An op has no forward-mode (JVP) rule at this node: a user's VJP rule that is not linear
    in its cotangent (``sg.custom_vjp``). ``hessian`` then differentiates in reverse twice."""


def _check_wrt(wrt, where):
    for w in wrt:
        if isinstance(w, str):
            raise UnsupportedError(
                f"{where}: wrt must be symbols, got the name {w!r:.60}; pass the symbol itself "
                f"(sg.scalar({w!r:.60}) is the same object as the {w:.60} in a parsed expression)"
            )
        if not isinstance(w, Expr):
            raise UnsupportedError(f"{where}: wrt must be symbols, got {type(w).__name__} {w!r:.60}")
        if w.op != "symbol":
            raise UnsupportedError(
                f"{where}: wrt must be symbols (sg.scalar / sg.tensor), got the expression {w!r:.60}"
            )
        if not is_float(w.dtype):
            raise UnsupportedError(
                f"{where}: cannot differentiate with respect to {w.name}, "
                f"which has dtype {w.dtype}; only float symbols get gradients"
            )


def zeros(shape, dtype):
    """Zeros of ``shape`` (symbolic dims allowed)."""
    return broadcast_to(constant(0, dtype), shape)


def _branch_mask(node, index, m):
    """The mask of the adjoint ``node`` sends to input ``index``, given its own mask ``m``."""
    if node.op != "where" or index == 0:
        return m
    c = node.inputs[0] if index == 1 else logical_not(node.inputs[0])
    return c if m is None else logical_and(m, c)


def _reads_values(opdef):
    """A reduction whose VJP reads values (max, min, prod), not one that only moves the adjoint (sum)."""
    return opdef.reduction and not opdef.moves_adjoint


def _indicator(m, dtype, shape):
    """1 where the mask ``m`` holds, else 0, broadcast to ``shape`` (a condition may be smaller)."""
    ones = where(m, constant(1, dtype), constant(0, dtype))
    return ones if ones.shape == tuple(shape) else broadcast_to(ones, shape)


def _matmul_hits(ind, a, b, index):
    """For ``out = a @ b`` and ``ind`` (1 where out's adjoint is unmasked, shaped like out):
    a count per element of input ``index`` that is > 0 where some product term it enters
    is unmasked (row sums of ``ind`` for a, column sums for b: no second matmul)."""
    out_shape = ind.shape
    if index == 0:
        k = a.shape[-1]
        if b.ndim == 1:  # out (..., i): a row meets one output element
            return broadcast_to(expand_dims(ind, -1), out_shape + (k,))
        return sum_to(broadcast_to(sum_over(ind, -1, keepdims=True), out_shape[:-1] + (k,)), a.shape)
    if b.ndim == 1:  # out (i,): b meets every output element
        return broadcast_to(sum_over(ind, -1, keepdims=True), b.shape)
    k = b.shape[-2]
    if a.ndim == 1:  # out (..., j): a column of b meets one output element
        cols, batch = expand_dims(ind, -2), out_shape[:-1]
    else:
        cols, batch = sum_over(ind, -2, keepdims=True), out_shape[:-2]
    return sum_to(broadcast_to(cols, batch + (k, out_shape[-1])), b.shape)


def _input_mask(m, node, index, inp, opdef):
    """The mask ``m`` (of ``node``'s adjoint) carried to the adjoint of input ``index``, or None.

    A scalar mask bounds every input; an elementwise op passes a mask on as it is, or,
    where ``inp`` was broadcast, as "some element it was broadcast to is unmasked";
    other ops map it as the module docstring says."""
    if m is None or m.ndim == 0:
        return m
    dtype = inp.dtype
    if opdef.jvp == POINTWISE:
        if inp.shape == node.shape and broadcast_shapes(m.shape, inp.shape) == inp.shape:
            return m
        hits = sum_to(_indicator(m, dtype, node.shape), inp.shape)
    elif opdef.moves_adjoint == ALL or index in opdef.moves_adjoint:
        hits = opdef.vjp_rule(index)(_indicator(m, node.dtype, node.shape), *node.inputs, node)
    elif _reads_values(opdef):
        # the adjoint of x is a weight times the output's adjoint, repeated over the reduced axes
        hits = OPS["sum"].vjp_rule(0)(_indicator(m, dtype, node.shape), inp, node)
    elif node.op == "matmul":
        hits = _matmul_hits(_indicator(m, dtype, node.shape), *node.inputs, index)
    else:
        return None
    if hits is None:
        return None
    if hits.shape != inp.shape:
        hits = sum_to(hits, inp.shape)
    return hits > 0


def vjp(y, wrt, cotangent, notes=None):
    """The vector-Jacobian product: adjoints of each symbol in ``wrt`` given ``y``'s adjoint.

    ``notes`` (a ``RuleNotes``) records which rule built each adjoint node."""
    return vjp_outputs([y], [cotangent], wrt, notes)


def vjp_outputs(ys, cotangents, wrt, notes=None):
    """``vjp`` of several outputs at once: the adjoints of ``wrt`` given one cotangent per output
    (None: zero), in one reverse pass (a loop body's step, ``symgrad.loops``)."""
    _check_wrt(wrt, "vjp")
    for y, cotangent in zip(ys, cotangents):
        if cotangent is not None and cotangent.shape != y.shape:
            raise ShapeError(
                f"vjp: cotangent of shape {shape_str(cotangent.shape)} does not match "
                f"the output's shape {shape_str(y.shape)}"
            )
    order = topo_order(list(ys))
    forward = {id(n) for n in order}
    wanted = {id(w) for w in wrt}
    # only nodes that depend on some wrt symbol carry an adjoint
    depends = set()
    for node in order:
        if id(node) in wanted or any(id(i) in depends for i in node.inputs):
            depends.add(id(node))
    # contributions[id]: the adjoint's terms in the order they came, summed (_total) when the
    # node is reached, all its users done; mask[id]: outside it the adjoint is exactly 0 (None: no mask)
    contributions, mask = {}, {}
    results = {}  # id(tuple-valued node) -> {result index: adjoint}
    for y, cotangent in zip(ys, cotangents):
        if cotangent is not None and id(y) in depends:
            contributions.setdefault(id(y), []).append(cotangent)
    for node in reversed(order):
        if not node.inputs:
            continue  # a symbol's adjoint is summed at the end, a constant's never
        opdef = OPS[node.op]
        if opdef.tuple_valued:
            parts = results.pop(id(node), None)
            if parts is not None:
                _tuple_vjp(node, opdef, parts, depends, contributions, mask)
            continue
        g = _total(contributions.pop(id(node), None))
        if g is None:
            continue
        if opdef.part and OPS[node.inputs[0].op].tuple_valued:
            # one adjoint per result of a tuple-valued node, handed to its rule all at once
            parts = results.setdefault(id(node.inputs[0]), {})
            k = node.attrs["index"]
            parts[k] = g if k not in parts else add(parts[k], g)
            continue
        m = mask.get(id(node))
        for index, inp in enumerate(node.inputs):
            if id(inp) not in depends or not is_float(inp.dtype):
                continue
            rule = opdef.vjp_rule(index)
            if rule is None:
                continue
            args = node.inputs
            if node.op == "matmul" and m is not None and m.ndim:
                # entries of the other operand that meet only masked-out outputs may be nan
                # (0 * nan in the sum): zero them, which leaves every unmasked term as it was
                other = 1 - index
                keep = _input_mask(m, node, other, args[other], opdef)
                args = [where(keep, a, 0) if k == other else a for k, a in enumerate(args)]
            contribution = rule(g, *args, node)
            if contribution is None:
                continue
            if m is not None and node.op != "where" and (m.ndim == 0 or opdef.jvp == POINTWISE):
                contribution = where(m, contribution, 0)  # 0 * nan from the untaken branch -> 0
            m_in = _input_mask(_branch_mask(node, index, m), node, index, inp, opdef)
            contribution = sum_to(contribution, inp.shape)
            if m_in is not None and m_in.ndim and (_reads_values(opdef) or node.op == "matmul"):
                contribution = where(m_in, contribution, 0)
            if contribution.dtype != inp.dtype:
                contribution = cast(contribution, inp.dtype)
            if notes is not None and opdef.note and id(contribution) not in forward:
                notes.record(contribution, f"{node.op}: {opdef.note}")
            previous = contributions.get(id(inp))
            if previous is None:
                contributions[id(inp)], mask[id(inp)] = [contribution], m_in
            else:
                previous.append(contribution)
                m_prev = mask.get(id(inp))
                mask[id(inp)] = None if m_prev is None or m_in is None else logical_or(m_prev, m_in)
    adjoint = {id(w): _total(contributions.get(id(w))) for w in wrt}
    return [zeros(w.shape, w.dtype) if adjoint[id(w)] is None else adjoint[id(w)] for w in wrt]


def _total(terms):
    """The sum of one node's adjoint ``terms`` (None: no adjoint): the terms of an op with a
    ``sum_joint`` rule summed in one piece by it (the slice_grads of a loop's reads ``xs[t]``: one
    stack of rows), the rest added one by one in the order they came."""
    if not terms:
        return None
    by_op = {}
    for term in terms:
        if OPS[term.op].sum_joint is not None:
            by_op.setdefault(term.op, []).append(term)
    taken, joined = set(), []
    for op, nodes in by_op.items():
        found = OPS[op].sum_joint(nodes) if len(nodes) > 1 else None
        if found is not None:
            joined.append(found[0])
            taken.update(id(n) for n in found[1])
    total = None
    for term in [t for t in terms if id(t) not in taken] + joined:
        total = term if total is None else add(total, term)
    return total


def _tuple_vjp(node, opdef, parts, depends, terms, mask):
    """The adjoints a tuple-valued node (a loop) sends its inputs (appended to ``terms``), from
    its rule given the adjoint of each of its results (no NaN-safe mask crosses it)."""
    sent = opdef.tuple_vjp(node, parts, [id(i) in depends for i in node.inputs])
    for inp, contribution in zip(node.inputs, sent):
        if contribution is None or id(inp) not in depends or not is_float(inp.dtype):
            continue
        contribution = sum_to(contribution, inp.shape)
        if contribution.dtype != inp.dtype:
            contribution = cast(contribution, inp.dtype)
        terms.setdefault(id(inp), []).append(contribution)
        mask[id(inp)] = None


def float_expr(y, where):
    """``y`` as an Expr that can be differentiated (a float dtype), or an error naming ``where``."""
    y = as_expr(y)
    if not is_float(y.dtype):
        raise UnsupportedError(
            f"{where} of an expression of dtype {y.dtype}: only float expressions have derivatives"
        )
    return y


def scalar_loss(y, where):
    """``y`` as a float scalar Expr (a loss), or an error naming its shape or dtype."""
    y = as_expr(y)
    if y.shape != ():
        raise ShapeError(
            f"{where} needs a scalar expression, got one of shape {shape_str(y.shape)}; "
            "reduce it first (sg.sum, sg.mean) or use sg.vjp"
        )
    return float_expr(y, where)


def grad(y, wrt, notes=None):
    """Symbolic gradient of the scalar ``y``: one Expr per symbol in ``wrt`` (a list gives a list)."""
    y = scalar_loss(y, "grad")
    single = isinstance(wrt, Expr)
    wrt_list = [wrt] if single else list(wrt)
    grads = vjp(y, wrt_list, constant(1, y.dtype), notes)
    return grads[0] if single else grads


# ---------------------------------------------------------------- forward mode

# value_and_grad of a scalar chain: with at most this many scalar inputs to differentiate
# and a graph of scalar elementwise statements at least this deep, and no wider than
# FORWARD_MAX_WIDTH statements per level of depth on average (one state x = f(x, c) over
# many steps), the gradient is taken in forward mode: each input's tangent is computed beside
# the value, step by step (one loop when the steps roll, nothing stored for a second pass),
# where reverse mode walks the chain a second time, backwards, reading what the first stored.
# (Two states a step, a, b = b, f(a, b), are twice as wide: their tangents' loops start late,
# after steps whose constants fold, and reverse mode's kernel is shorter.)
FORWARD_MAX_INPUTS = 2
FORWARD_MIN_HEIGHT = 64
FORWARD_MAX_WIDTH = 1.5


def gradient_mode(y, wrt):
    """``"forward"`` or ``"reverse"``: how ``value_and_grad`` differentiates the scalar ``y``
    with respect to ``wrt`` (see FORWARD_MAX_INPUTS)."""
    if len(wrt) > FORWARD_MAX_INPUTS or y.ndim or y.height < FORWARD_MIN_HEIGHT:
        return "reverse"
    if any(w.ndim or w.dtype != y.dtype for w in wrt):
        return "reverse"  # (a tangent of y has y's dtype, a gradient its symbol's)
    statements = 0
    for node in topo_order([y]):
        opdef = OPS[node.op]
        if opdef.given:
            continue
        if node.ndim or not opdef.elementwise:
            return "reverse"
        statements += 1
    return "forward" if statements <= FORWARD_MAX_WIDTH * y.height else "reverse"


def grad_forward(y, wrt, notes=None):
    """The gradient of the scalar ``y`` with respect to scalar symbols, in forward mode: one
    JVP per symbol (a unit tangent on it, none on the others)."""
    y = scalar_loss(y, "grad")
    return [jvp([y], [w], [constant(1, w.dtype)], notes)[0] for w in wrt]


def jvp(outputs, wrt, tangents, notes=None):
    """The Jacobian-vector product: the tangent of each output given a tangent per ``wrt`` symbol.

    One pass over the topologically sorted graph, inputs first: each node sums the
    contributions of its inputs' tangents through the JVP rules in the op table and
    broadcasts the sum to its own shape. Nodes whose inputs carry no tangent get none
    (zeros never generate code); integer and bool nodes never carry one."""
    _check_wrt(wrt, "jvp")
    tangent = {}
    for w, t in zip(wrt, tangents):
        if t.shape != w.shape:
            raise ShapeError(
                f"jvp: the tangent of {w.name} has shape {shape_str(t.shape)}, but "
                f"{w.name} has shape {shape_str(w.shape)}"
            )
        if t.dtype != w.dtype:
            t = cast(t, w.dtype)
        if t.op == "constant" and not t.value.any():
            continue  # a zero tangent, like a zero adjoint, never generates code
        tangent[id(w)] = t
    order = topo_order(list(outputs))
    forward = {id(n) for n in order}
    for node in order:
        if not node.inputs or id(node) in tangent:
            continue
        opdef = OPS[node.op]
        if opdef.tuple_valued:
            # a loop: its rule gives the tangent of every result at once
            given = [tangent.get(id(i)) for i in node.inputs]
            if any(t is not None for t in given):
                tangent[id(node)] = opdef.tuple_jvp(node, given)
            continue
        if opdef.part and OPS[node.inputs[0].op].tuple_valued:
            results = tangent.get(id(node.inputs[0]))
            t = None if results is None else results[node.attrs["index"]]
            if t is not None and is_float(node.dtype):
                tangent[id(node)] = t
            continue
        if not is_float(node.dtype):
            continue
        total = None
        if opdef.jvp_joint is not None:
            total = opdef.jvp_joint(node, [tangent.get(id(i)) for i in node.inputs])
        for index, inp in enumerate(node.inputs if total is None else ()):
            t = tangent.get(id(inp))
            if t is None:
                continue
            rule = opdef.jvp_rule(index)
            contribution = None if rule is None else rule(t, *node.inputs, node)
            if contribution is None:
                continue
            total = contribution if total is None else add(total, contribution)
        if total is None:
            continue
        if total.shape != node.shape:
            total = broadcast_to(total, node.shape)
        if total.dtype != node.dtype:
            total = cast(total, node.dtype)
        if notes is not None and opdef.note and id(total) not in forward:
            notes.record(total, f"{node.op} (forward): {opdef.note}")
        tangent[id(node)] = total
    return [tangent[id(o)] if id(o) in tangent else zeros(o.shape, o.dtype) for o in outputs]


# ---------------------------------------------------------------- Jacobians and Hessians


def _concrete_size(shape, what):
    size = size_of(shape)
    if not isinstance(size, int):
        raise UnsupportedError(
            f"{what} has the symbolic size {size}; a Jacobian or Hessian needs "
            "one derivative pass per element, so give it concrete dimensions"
        )
    return size


def unit(shape, dtype, flat_index):
    """The one-hot array of ``shape`` with a 1 at ``flat_index`` (C order), as a graph node."""
    if not shape:
        return constant(1, dtype)
    key = tuple(("i", int(i)) for i in np.unravel_index(flat_index, tuple(shape)))
    return slice_grad(constant(1, dtype), key, shape)


def jacobian_mode(y, wrt):
    """Which mode ``jacobian(mode="auto")`` picks, and the sizes it compared: (mode, n_in, n_out).

    Forward mode costs one JVP per input element, reverse one VJP per output element
    (the seeds' rule: reverse when n > m). A symbolic size cannot be compared: the
    side that is concrete is chosen (its pass count is known); with both symbolic it is
    ``"whole"``: the Jacobian is carried forward as one array (``_jacobian_whole``)."""
    n_in = 0
    for w in wrt:
        n_in = n_in + size_of(w.shape)
    n_out = size_of(y.shape)
    in_known, out_known = isinstance(n_in, int), isinstance(n_out, int)
    if in_known and out_known:
        return ("forward" if n_in < n_out else "reverse"), n_in, n_out
    if in_known:
        return "forward", n_in, n_out
    if out_known:
        return "reverse", n_in, n_out
    # neither pass count is known: the Jacobian is carried forward whole (_jacobian_whole)
    return "whole", n_in, n_out


def _jacobian_whole(y, w, notes=None):
    """d y / d w for sizes that are symbolic on both sides, where no pass count is known: each
    node's Jacobian (shape ``node.shape + w.shape``, starting from the identity at ``w``) is
    carried forward through the ops whose derivative stays an array expression of the same
    ops: elementwise ops (their pointwise factor times the Jacobian), sums over axes, basic
    slices and integer indices, concatenate, and products of a vector with a matrix that does
    not depend on ``w``. Any other op on the path is refused, naming it."""
    if w.ndim > 1:
        raise UnsupportedError(
            f"jacobian: {w.name} of shape {shape_str(w.shape)} and the output of shape "
            f"{shape_str(y.shape)} both have symbolic sizes; without a concrete side the Jacobian is "
            "built for vector inputs only (give one side concrete dimensions)"
        )
    extra = (1,) * w.ndim
    jac = {id(w): eye(w.shape[0], w.dtype) if w.ndim else constant(1, w.dtype)}

    def placed(j, inp, shape):
        """The Jacobian ``j`` of ``inp`` aligned with an output of ``shape`` (leading axes added)."""
        lead = len(shape) - inp.ndim
        return reshape(j, (1,) * lead + tuple(j.shape)) if lead else j

    for node in topo_order([y]):
        if id(node) in jac or not any(id(i) in jac for i in node.inputs):
            continue
        if not is_float(node.dtype):
            continue
        opdef = OPS[node.op]
        full = tuple(node.shape) + tuple(w.shape)
        parts = []
        for index, inp in enumerate(node.inputs):
            j = jac.get(id(inp))
            if j is None or opdef.jvp_rule(index) is None:
                continue
            if opdef.jvp == POINTWISE:
                factor = opdef.vjp_rule(index)(constant(1, node.dtype), *node.inputs, node)
                factor = reshape(factor, (1,) * (node.ndim - factor.ndim) + tuple(factor.shape) + extra)
                parts.append(factor * placed(j, inp, node.shape))
            elif opdef.reduction and opdef.linear:
                parts.append(sum_over(j, axis=node.attrs["axes"], keepdims=node.attrs["keepdims"]))
            elif node.op == "getitem" and all(k[0] in ("s", "i") for k in node.attrs["key"]):
                key = tuple(slice(*k[1:]) if k[0] == "s" else k[1] for k in node.attrs["key"])
                parts.append(j[key])
            elif node.op == "concatenate":
                blocks = [
                    jac[id(i)] if id(i) in jac else zeros(tuple(i.shape) + tuple(w.shape), node.dtype)
                    for i in node.inputs
                ]
                parts.append(concatenate(blocks, axis=node.attrs["axis"]))
                break
            elif node.op == "matmul" and inp.ndim == 1 and w.ndim == 1:
                other = node.inputs[1 - index]
                if id(other) in jac or other.ndim > 2:
                    parts = None
                    break
                # d(A @ x) = A @ dx; d(x @ B) = B^T @ dx; d(x @ v) = v @ dx
                parts.append(other @ j if index == 1 or other.ndim == 1 else transpose(other) @ j)
            else:
                parts = None
                break
        if parts is None:
            raise UnsupportedError(
                f"jacobian: the input size {size_of(w.shape)} and the output size {size_of(y.shape)} "
                f"are both symbolic, and the Jacobian through {node.op} (shape {shape_str(node.shape)}) "
                "cannot be written for every size; give one side concrete dimensions"
            )
        if not parts:
            continue
        total = parts[0]
        for part in parts[1:]:
            total = add(total, part)
        if tuple(total.shape) != full:
            total = broadcast_to(total, full)
        if notes is not None and opdef.note:
            notes.record(total, f"{node.op} (Jacobian): {opdef.note}")
        jac[id(node)] = total
    found = jac.get(id(y))
    return found if found is not None else zeros(tuple(y.shape) + tuple(w.shape), y.dtype)


def jacobian(y, wrt, mode="auto", notes=None):
    """d y / d w for each symbol: an Expr of shape ``y.shape + w.shape`` per symbol.

    ``forward`` builds one JVP per input element (unit tangents), ``reverse`` one VJP
    per output element (unit cotangents); each pass is O(N) nodes and they share the
    forward graph, so the Jacobian graph has O(N * passes) nodes."""
    if mode not in ("auto", "forward", "reverse"):
        raise UnsupportedError(f"jacobian: mode must be 'auto', 'forward' or 'reverse', got {mode!r}")
    _check_wrt(wrt, "jacobian")
    y = float_expr(y, "jacobian")
    if mode == "auto":
        mode = jacobian_mode(y, wrt)[0]
    if mode == "whole":
        blocks = []
        for w in wrt:
            if isinstance(size_of(w.shape), int):  # a concrete input: its columns by forward passes
                blocks.extend(jacobian(y, [w], "forward", notes))
            else:
                blocks.append(_jacobian_whole(y, w, notes))
        return blocks
    blocks = []
    if mode == "forward":
        for w in wrt:
            n = _concrete_size(w.shape, f"jacobian(mode='forward'): input {w.name}")
            columns = [jvp([y], [w], [unit(w.shape, w.dtype, j)], notes)[0] for j in range(n)]
            if not columns:
                blocks.append(zeros(y.shape + w.shape, y.dtype))
                continue
            blocks.append(reshape(stack(columns, axis=-1) if y.ndim else stack(columns), y.shape + w.shape))
        return blocks
    m = _concrete_size(y.shape, "jacobian(mode='reverse'): the output")
    rows = [vjp(y, wrt, unit(y.shape, y.dtype, i), notes) for i in range(m)]
    for k, w in enumerate(wrt):
        if not rows:
            blocks.append(zeros(y.shape + w.shape, w.dtype))
            continue
        blocks.append(reshape(stack([r[k] for r in rows]), y.shape + w.shape))
    return blocks


def hvp(y, wrt, vectors, notes=None):
    """Hessian-vector products of the scalar ``y``, forward over reverse: the JVP of the
    gradient graph along ``vectors`` (one per symbol). The result is O(N) nodes, a small
    constant times the gradient, and no Hessian is formed."""
    return jvp(grad(y, list(wrt), notes), wrt, vectors, notes)


def hessian(y, wrt, notes=None):
    """The Hessian of the scalar ``y`` as blocks ``H[i][j]`` of shape ``wi.shape + wj.shape``.

    Forward over reverse: the gradient graph is built once, then one JVP of it per
    input element (a unit tangent). Symmetry is used: the JVP for an element of
    ``wrt[j]`` differentiates only the gradient blocks ``i >= j``; the blocks above the
    diagonal are transposes of those below, and a diagonal block keeps its lower
    triangle and mirrors it, so it is exactly symmetric. With scalar symbols every
    off-diagonal entry is one expression computed once. O(N * n) nodes for N graph
    nodes and n input elements."""
    y = scalar_loss(y, "hessian")
    _check_wrt(wrt, "hessian")
    sizes = [_concrete_size(w.shape, f"hessian: input {w.name}") for w in wrt]
    grads = grad(y, list(wrt), notes)
    try:
        return _hessian_forward(grads, wrt, sizes, y.dtype, notes)
    except NoForwardRule:
        # a user's reverse rule with no forward mode (a clipped gradient): reverse over reverse,
        # one VJP of the gradient per element of it
        return [jacobian(g, list(wrt), mode="reverse", notes=notes) for g in grads]


def _hessian_forward(grads, wrt, sizes, dtype, notes):
    k = len(wrt)
    blocks = [[None] * k for _ in range(k)]
    for j, wj in enumerate(wrt):
        # columns[i][e]: d grads[i] / d wj[e], for i >= j
        columns = [[] for _ in range(k)]
        for e in range(sizes[j]):
            tangents = jvp(grads[j:], [wj], [unit(wj.shape, wj.dtype, e)], notes)
            for i, t in zip(range(j, k), tangents):
                columns[i].append(t)
        for i in range(j, k):
            wi = wrt[i]
            if sizes[j] == 0:
                blocks[i][j] = zeros(wi.shape + wj.shape, dtype)
                continue
            cols = columns[i]
            block = stack(cols, axis=-1) if wi.ndim else stack(cols)
            if i == j and sizes[j] > 1:
                # keep the lower triangle (row >= column) and mirror it
                flat = reshape(block, (sizes[i], sizes[j]))
                lower = constant(np.tril(np.ones((sizes[i], sizes[j]), dtype=bool)))
                block = where(lower, flat, transpose(flat))
            blocks[i][j] = reshape(block, wi.shape + wj.shape)
    for j in range(k):
        for i in range(j):
            # H[i][j] = H[j][i] with its two halves of axes swapped
            lower = blocks[j][i]
            nj, ni = wrt[j].ndim, wrt[i].ndim
            axes = tuple(range(nj, nj + ni)) + tuple(range(nj))
            blocks[i][j] = transpose(lower, axes) if lower.ndim else lower
    return blocks
