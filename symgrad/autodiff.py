"""Derivatives as graphs: reverse mode (``vjp``, ``grad``).

Reverse mode is one pass over the topologically sorted graph, from the output
back: each node hands its adjoint to its inputs through the VJP rules in the op
table. Adjoints of a node used several times are summed; a contribution shaped
by broadcasting is summed back to its input's shape (Repeat/Sum duality). Only
nodes on a path from a ``wrt`` symbol to the output are visited, zero adjoints
are never built, and every rule builds through the interning constructors, so
the gradient graph reuses the forward nodes and has O(N) nodes.
"""

from .errors import ShapeError, UnsupportedError
from .graph import Expr, is_float, shape_str, topo_order
from .ops import OPS, add, broadcast_to, cast, constant, sum_to


def _check_wrt(wrt, where):
    for w in wrt:
        if not isinstance(w, Expr):
            raise UnsupportedError(f"{where}: wrt must be symbols, got {type(w).__name__} {w!r:.60}")
        if w.op != "symbol":
            raise UnsupportedError(f"{where}: wrt must be symbols (sg.scalar / sg.tensor), got the "
                                   f"expression {w!r:.60}")
        if not is_float(w.dtype):
            raise UnsupportedError(f"{where}: cannot differentiate with respect to {w.name}, "
                                   f"which has dtype {w.dtype}; only float symbols get gradients")


def zeros(shape, dtype):
    """Zeros of ``shape`` (symbolic dims allowed)."""
    return broadcast_to(constant(0, dtype), shape)


def vjp(y, wrt, cotangent):
    """The vector-Jacobian product: adjoints of each symbol in ``wrt`` given ``y``'s adjoint."""
    _check_wrt(wrt, "vjp")
    if cotangent.shape != y.shape:
        raise ShapeError(f"vjp: cotangent of shape {shape_str(cotangent.shape)} does not match "
                         f"the output's shape {shape_str(y.shape)}")
    order = topo_order([y])
    forward = {id(n) for n in order}
    wanted = {id(w) for w in wrt}
    # only nodes that depend on some wrt symbol carry an adjoint
    depends = set()
    for node in order:
        if id(node) in wanted or any(id(i) in depends for i in node.inputs):
            depends.add(id(node))
    adjoint = {}
    if id(y) in depends:
        adjoint[id(y)] = cotangent
    for node in reversed(order):
        g = adjoint.get(id(node))
        if g is None or not node.inputs:
            continue
        opdef = OPS[node.op]
        for index, inp in enumerate(node.inputs):
            if id(inp) not in depends or not is_float(inp.dtype):
                continue
            rule = opdef.vjp_rule(index)
            if rule is None:
                continue
            contribution = rule(g, *node.inputs, node)
            if contribution is None:
                continue
            contribution = sum_to(contribution, inp.shape)
            if contribution.dtype != inp.dtype:
                contribution = cast(contribution, inp.dtype)
            if contribution.note is None and id(contribution) not in forward and opdef.note:
                contribution.note = f"{node.op}: {opdef.note}"
            previous = adjoint.get(id(inp))
            adjoint[id(inp)] = contribution if previous is None else add(previous, contribution)
    return [adjoint.get(id(w)) if id(w) in adjoint else zeros(w.shape, w.dtype) for w in wrt]


def grad(y, wrt):
    """Symbolic gradient of the scalar ``y``: one Expr per symbol in ``wrt`` (a list gives a list)."""
    from .ops import as_expr
    y = as_expr(y)
    single = isinstance(wrt, Expr)
    wrt_list = [wrt] if single else list(wrt)
    if y.shape != ():
        raise ShapeError(f"grad needs a scalar expression, got one of shape {shape_str(y.shape)}; "
                         "reduce it first (sg.sum, sg.mean) or use sg.vjp")
    if not is_float(y.dtype):
        raise UnsupportedError(f"grad of an expression of dtype {y.dtype}: only float expressions "
                               "have gradients")
    grads = vjp(y, wrt_list, constant(1, y.dtype))
    return grads[0] if single else grads
