"""Loops that stay loops: ``sg.scan``, ``sg.fori_loop`` and ``sg.while_loop`` (JAX's semantics).

A loop is one node of the graph, ``scan``, whose inputs are the initial carry leaves, the
stacked ``xs`` leaves and the loop's constants (``consts``), and whose static attributes are
the trip count ``length`` (an int or a symbolic dim: one compile serves every length), the
direction ``reverse`` and ``body``, a ``Body``: the graph of one step, over placeholder symbols
for the carry leaves, one step's slice of each ``xs`` leaf and each constant. A scan node has
several results (the final carry leaves, then the stacked ``ys`` leaves), each a ``part`` node
reading it (``OpDef.tuple_valued``), so the loop runs once for all of them.

The body is built by calling the user's step function on the placeholders. Whatever it reads
from outside (a weight it closes over, a value of the enclosing function) is a maximal
placeholder-independent subexpression of the body: each becomes a constant input of the node
(a placeholder inside the body), which both hoists the loop invariant and gives the graph an
edge along which derivatives reach the weights.

Derivatives (op-agnostic autodiff asks the op's ``tuple_vjp``/``tuple_jvp``):

- reverse mode: the forward loop is run again with the carry entering each step stacked as an
  extra ``ys`` (T carries kept: memory ``T * size(carry)``), then one reverse scan runs the
  body's VJP per step from the last step to the first, carrying the carry's cotangent and the
  sum of the constants' cotangents; the ``xs`` cotangents are its stacked ``ys``. The reverse
  body is built by running autodiff on the forward body's graph, so gradients of gradients
  need nothing more;
- forward mode: one scan over (carry, tangent carry), the tangent body the body's JVP.

The compiler lowers a scan to a ``For`` block of the kernel IR (``codegen/ir.py``) whose body
is the body graph's statements: ``.source`` shows one loop whatever the trip count.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Optional

import sympy

from . import autodiff
from .errors import ShapeError, UnsupportedError
from .graph import Expr, as_dim, dim_str, dims_equal, is_float, shape_str, topo_order
from .ops import as_expr, broadcast_to, concatenate, constant, logical_and, reshape, where as select
from .ops.registry import count, make, register
from .pytree import flatten, unflatten
from .symbol_constructors import tensor
from .transforms import substitute

# ---------------------------------------------------------------- the body of a loop


class Body:
    """One step of a loop as a graph: placeholder symbols for the carry leaves (``carry``), one
    step's slice of each ``xs`` leaf (``xs``) and the constants (``consts``); ``outputs`` are the
    new carry leaves (the first ``len(carry)``) then the ``ys`` leaves. ``level`` numbers the
    placeholders (``scan<level>_carry0``): a loop built inside another's body, or from another's
    derivative, has a higher level, so its placeholders are never the other's symbols.

    Interned with the node that holds it: equal when its symbols and outputs are the same nodes."""

    __slots__ = ("carry", "xs", "consts", "outputs", "level", "_key")

    def __init__(self, carry, xs, consts, outputs, level):
        self.carry, self.xs, self.consts = tuple(carry), tuple(xs), tuple(consts)
        self.outputs, self.level = tuple(outputs), level
        self._key = tuple(id(n) for n in self.carry + self.xs + self.consts + self.outputs)

    @property
    def new_carry(self):
        return self.outputs[: len(self.carry)]

    @property
    def ys(self):
        return self.outputs[len(self.carry) :]

    def __eq__(self, other):
        return isinstance(other, Body) and self._key == other._key and self.level == other.level

    def __hash__(self):
        return hash(self._key)

    def __str__(self):
        counts = (len(self.carry), len(self.xs), len(self.consts), len(self.ys))
        return "<body: {} carry, {} xs, {} const, {} ys>".format(*counts)

    def __repr__(self):
        # the same text in every process (a node's digest hashes it): structural fingerprints
        parts = [len(self.carry), len(self.xs), len(self.consts), self.level]
        return f"Body({parts}, {[o.digest for o in self.outputs]})"


_tracing = threading.local()


@contextlib.contextmanager
def recording_lengths():
    """Collect the trip count of every loop built in this thread while the context is open
    (nested ones and those of derivatives too): the tracer learns from it which argument axes
    are loop lengths (``frontends/trace.py``: such an axis stays symbolic at size 1)."""
    previous = getattr(_tracing, "lengths", None)
    _tracing.lengths = found = []
    try:
        yield found
    finally:
        _tracing.lengths = previous


def _level(minimum=1):
    return max(getattr(_tracing, "level", 0) + 1, minimum)


def _placeholders(level, role, leaves, shape_of):
    return [tensor(f"scan{level}_{role}{k}", shape_of(v), v.dtype) for k, v in enumerate(leaves)]


def _lift_consts(outputs, placeholders):
    """The body's maximal subexpressions that read no placeholder (constants stay inline):
    (outer values, the outputs with each replaced by a placeholder symbol)."""
    own = {id(p) for p in placeholders}
    order = topo_order(list(outputs))
    dependent = set(own)
    for node in order:
        if any(id(i) in dependent for i in node.inputs):
            dependent.add(id(node))
    found, seen = [], set()

    def lift(node):
        if id(node) not in dependent and id(node) not in seen and node.op != "constant":
            seen.add(id(node))
            found.append(node)

    for node in order:
        if id(node) in dependent:
            for i in node.inputs:
                lift(i)
    for o in outputs:
        lift(o)
    return found


def _body_step(level, init, xs, step):
    carry_ph = _placeholders(level, "carry", init, lambda v: v.shape)
    x_ph = _placeholders(level, "x", xs, lambda v: v.shape[1:])
    previous = getattr(_tracing, "level", 0)
    _tracing.level = level
    try:
        new_carry, ys = step(carry_ph, x_ph)
    finally:
        _tracing.level = previous
    return carry_ph, x_ph, list(new_carry), list(ys)


def scan_leaves(step, init, xs, length, reverse=False, level=1, where="scan"):
    """The loop over leaves: ``step(carry leaves, x leaves) -> (new carry leaves, y leaves)``
    called once on placeholders. Returns (final carry leaves, stacked ys leaves)."""
    level = _level(level)
    recorded = getattr(_tracing, "lengths", None)
    if recorded is not None:
        recorded.append(length)
    carry_ph, x_ph, new_carry, ys = _body_step(level, init, xs, step)
    for k, (c, new) in enumerate(zip(carry_ph, new_carry)):
        if new.shape != c.shape:
            raise ShapeError(
                f"{where}: the body changes the shape of carry leaf {k} from {shape_str(c.shape)} "
                f"to {shape_str(new.shape)}; a carry keeps its shape from step to step"
            )
        if new.dtype != c.dtype:
            raise UnsupportedError(
                f"{where}: the body changes the dtype of carry leaf {k} from {c.dtype} to {new.dtype}; "
                "a carry keeps its dtype from step to step (cast it, or start from that dtype)"
            )
    outputs = new_carry + ys
    consts = _lift_consts(outputs, carry_ph + x_ph)
    const_ph = _placeholders(level, "const", consts, lambda v: v.shape)
    outputs = substitute(outputs, {id(c): p for c, p in zip(consts, const_ph)})
    body = Body(carry_ph, x_ph, const_ph, outputs, level)
    node = make("scan", [*init, *xs, *consts], body=body, length=length, reverse=bool(reverse))
    parts = [make("part", [node], index=k) for k in range(len(outputs))]
    return parts[: len(init)], parts[len(init) :]


# ---------------------------------------------------------------- the op


def _infer(inputs, attrs):
    return (), "float64"  # nominal: the results are the part nodes'


def _infer_part(inputs, attrs):
    node, k = inputs[0], attrs["index"]
    body = node.attrs["body"]
    out = body.outputs[k]
    if k < len(body.carry):
        return out.shape, out.dtype
    return (node.attrs["length"],) + out.shape, out.dtype


def _split(node):
    body = node.attrs["body"]
    nc, nx = len(body.carry), len(body.xs)
    inputs = node.inputs
    return body, inputs[:nc], inputs[nc : nc + nx], inputs[nc + nx :]


def _zeros(like):
    return broadcast_to(constant(0, like.dtype), like.shape)


def _scan_vjp(node, cotangents, needed):
    """One reverse scan for every cotangent (see the module docstring); the ``xs`` and constants
    whose adjoint is not ``needed`` get none."""
    body, init, xs, consts = _split(node)
    length, reverse = node.attrs["length"], node.attrs["reverse"]
    nc = len(body.carry)
    # the forward loop again, stacking the carry entering each step
    stacked = make(
        "scan",
        node.inputs,
        body=Body(body.carry, body.xs, body.consts, body.outputs + body.carry, body.level),
        length=length,
        reverse=reverse,
    )
    n_out = len(body.outputs)
    carries = [make("part", [stacked], index=n_out + k) for k in range(nc)]
    float_carry = [k for k in range(nc) if is_float(body.carry[k].dtype)]
    nx = len(xs)
    float_x = [k for k in range(nx) if is_float(body.xs[k].dtype) and needed[nc + k]]
    float_const = [k for k in range(len(consts)) if is_float(body.consts[k].dtype) and needed[nc + nx + k]]
    ys_cot = [k for k in range(len(body.ys)) if cotangents.get(nc + k) is not None]
    carry_cot = [cotangents.get(k) for k in range(nc)]
    init_rev = [carry_cot[k] if carry_cot[k] is not None else _zeros(body.carry[k]) for k in float_carry]
    init_rev += [_zeros(body.consts[k]) for k in float_const]
    xs_rev = carries + list(xs) + [cotangents[nc + k] for k in ys_cot]
    wrt = [body.carry[k] for k in float_carry] + [body.xs[k] for k in float_x]
    wrt += [body.consts[k] for k in float_const]

    def step(carry, x):
        g_carry, acc = carry[: len(float_carry)], carry[len(float_carry) :]
        c_t, x_t, g_y = x[:nc], x[nc : nc + len(xs)], x[nc + len(xs) :]
        outs = [body.new_carry[k] for k in float_carry] + [body.ys[k] for k in ys_cot]
        grads = autodiff.vjp_outputs(outs, list(g_carry) + list(g_y), wrt)
        mapping = {id(p): v for p, v in zip(body.carry, c_t)}
        mapping.update({id(p): v for p, v in zip(body.xs, x_t)})
        mapping.update({id(p): v for p, v in zip(body.consts, consts)})
        grads = substitute(grads, mapping)
        n1, n2 = len(float_carry), len(float_carry) + len(float_x)
        new_acc = [a + g for a, g in zip(acc, grads[n2:])]
        return list(grads[:n1]) + new_acc, grads[n1:n2]

    final, d_xs = scan_leaves(step, init_rev, xs_rev, length, not reverse, body.level + 1, "scan (reverse)")
    out = [None] * len(node.inputs)
    for j, k in enumerate(float_carry):
        out[k] = final[j]
    for j, k in enumerate(float_const):
        out[nc + len(xs) + k] = final[len(float_carry) + j]
    for j, k in enumerate(float_x):
        out[nc + k] = d_xs[j]
    return out


def _scan_jvp(node, tangents):
    """One scan over (carry, tangent carry) (see the module docstring)."""
    body, init, xs, consts = _split(node)
    nc, nx = len(body.carry), len(xs)
    t_init, t_xs, t_consts = tangents[:nc], tangents[nc : nc + nx], tangents[nc + nx :]
    float_carry = [k for k in range(nc) if is_float(body.carry[k].dtype)]
    moving_x = [k for k in range(nx) if t_xs[k] is not None and is_float(body.xs[k].dtype)]
    moving_const = [
        k for k in range(len(consts)) if t_consts[k] is not None and is_float(body.consts[k].dtype)
    ]
    float_ys = [k for k in range(len(body.ys)) if is_float(body.ys[k].dtype)]
    init2 = list(init) + [t_init[k] if t_init[k] is not None else _zeros(body.carry[k]) for k in float_carry]
    xs2 = list(xs) + [t_xs[k] for k in moving_x]
    wrt = [body.carry[k] for k in float_carry] + [body.xs[k] for k in moving_x]
    wrt += [body.consts[k] for k in moving_const]
    outs = [body.new_carry[k] for k in float_carry] + [body.ys[k] for k in float_ys]

    def step(carry, x):
        c, tc = carry[:nc], carry[nc:]
        x_t, tx = x[:nx], x[nx:]
        directions = list(tc) + list(tx) + [t_consts[k] for k in moving_const]
        dirs = autodiff.jvp(outs, wrt, directions)
        mapping = {id(p): v for p, v in zip(body.carry, c)}
        mapping.update({id(p): v for p, v in zip(body.xs, x_t)})
        mapping.update({id(p): v for p, v in zip(body.consts, consts)})
        primal = substitute(list(body.outputs), mapping)
        dirs = substitute(dirs, mapping)
        n1 = len(float_carry)
        return primal[:nc] + dirs[:n1], primal[nc:] + dirs[n1:]

    final, ys = scan_leaves(
        step, init2, xs2, node.attrs["length"], node.attrs["reverse"], body.level + 1, "scan (forward mode)"
    )
    out = [None] * len(body.outputs)
    for j, k in enumerate(float_carry):
        out[k] = final[nc + j]
    n_ys = len(body.ys)
    for j, k in enumerate(float_ys):
        out[nc + k] = ys[n_ys + j]
    return out


def _show(node, args):
    length = node.attrs["length"]
    text = dim_str(length)
    return f"scan({', '.join(args)}, length={text}{', reverse=True' if node.attrs['reverse'] else ''})"


def _show_part(node, args):
    return f"{args[0]}[{node.attrs['index']}]"


register(
    "scan",
    infer=_infer,
    note="a loop (sg.scan)",
    doc="a loop: the body graph run length times over a carry, stacking ys (sg.scan)",
    tuple_valued=True,
    tuple_vjp=_scan_vjp,
    tuple_jvp=_scan_jvp,
    show=_show,
    batch="its body is built for one example's shapes (sg.vmap of a loop is not supported yet)",
)
register(
    "part",
    infer=_infer_part,
    doc="one result of a loop (sg.scan): a final carry leaf or a stacked ys leaf",
    part=True,
    show=_show_part,
    batch="it reads a loop's result (sg.vmap of a loop is not supported yet)",
)


# ---------------------------------------------------------------- the public functions


def _leaves(tree, what, where):
    leaves, treedef = flatten(tree)
    out = []
    for v in leaves:
        try:
            out.append(as_expr(v))
        except UnsupportedError:
            raise UnsupportedError(
                f"{where}: a leaf of {what} is a {type(v).__name__} ({v!r:.60}), not an array or a number"
            ) from None
    return out, treedef


def _length(xs_leaves, length, where):
    for k, x in enumerate(xs_leaves):
        if x.ndim == 0:
            raise ShapeError(
                f"{where}: xs leaf {k} is a scalar; each xs leaf is stacked along a leading axis"
            )
    lengths = [x.shape[0] for x in xs_leaves]
    for k, n in enumerate(lengths[1:], 1):
        if not dims_equal(n, lengths[0]):
            raise ShapeError(
                f"{where}: xs leaves have different leading lengths: leaf 0 has {dim_str(lengths[0])}, "
                f"leaf {k} has {dim_str(n)}"
            )
    if length is not None:
        if (
            isinstance(length, bool)
            or not isinstance(length, (int, str))
            and not hasattr(length, "free_symbols")
        ):
            raise UnsupportedError(f"{where}: length must be an int or a dim, got {length!r:.60}")
        length = as_dim(length, where)
        if lengths and not dims_equal(length, lengths[0]):
            raise ShapeError(
                f"{where}: length={dim_str(length)} does not match the xs leading length {dim_str(lengths[0])}"
            )
        return length
    if not lengths:
        raise UnsupportedError(f"{where}: with no xs, give the number of steps: length=")
    return lengths[0]


def scan(
    f: Callable,
    init: Any,
    xs: Any = None,
    length: Any = None,
    reverse: bool = False,
    checkpoint: Optional[int] = None,
) -> tuple[Any, Any]:
    """Loop ``f(carry, x) -> (carry, y)`` over the leading axis of ``xs``, as ``jax.lax.scan``:
    returns the final carry and the ``y``s stacked along a new leading axis (``None`` leaves
    none). ``init`` and ``xs`` are pytrees (dicts, lists, tuples, dataclasses) of arrays or
    symgrad values; ``length`` is the step count when ``xs`` is None (an int or a dim name);
    ``reverse=True`` runs from the last step to the first (``ys[t]`` still belongs to ``xs[t]``).

    The loop stays a loop in the graph and in ``.source``, whatever its length (a symbolic
    length: one compile serves every T).

    Memory of reverse mode: by default the forward loop stores the carry entering every step,
    ``T * size(carry)`` elements (besides the stacked ``xs`` cotangents the gradient returns).
    ``checkpoint=k`` stores only the carry entering every k-th step, ``ceil(T/k) * size(carry)``
    (for a symbolic length the number of blocks is computed when the kernel runs), and the reverse pass recomputes one block of ``k`` carries at a
    time from it (``k * size(carry)`` more): about one more forward pass of compute for
    ``(T/k + k) * size(carry)`` memory, least at ``k ~ sqrt(T)``. The values are the same.
    """
    where = "scan"
    if not callable(f):
        raise UnsupportedError(f"{where}: f must be a function (carry, x) -> (carry, y), got {f!r:.60}")
    init_leaves, init_td = _leaves(init, "init", where)
    xs_leaves, xs_td = _leaves(xs, "xs", where)
    n = _length(xs_leaves, length, where)
    if checkpoint is not None:
        return _checkpointed(f, init, xs_leaves, xs_td, n, reverse, checkpoint)
    y_td = []

    def step(carry_ph, x_ph):
        out = f(unflatten(init_td, carry_ph), unflatten(xs_td, x_ph) if xs is not None else None)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise UnsupportedError(
                f"{where}: f must return a pair (carry, y), got {type(out).__name__}"
                + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else "")
            )
        new_carry, y = out
        new_leaves, new_td = flatten(new_carry)
        if new_td != init_td:
            raise UnsupportedError(
                f"{where}: f returns a carry of structure {new_td}, but init has structure {init_td}; "
                "the carry keeps its structure from step to step"
            )
        new_leaves = [as_expr(v, like=c) for v, c in zip(new_leaves, carry_ph)]
        y_leaves, td = _leaves(y, "y", where)
        y_td.append(td)
        return new_leaves, y_leaves

    final, ys = scan_leaves(step, init_leaves, xs_leaves, n, reverse, where=where)
    return unflatten(init_td, final), unflatten(y_td[0], ys)


def _checkpointed(f, init, xs_leaves, xs_td, n, reverse, k):
    """``scan`` with ``checkpoint=k``: an outer scan over blocks of ``k`` steps whose body is an
    inner scan of one block. Reverse mode then stores the carry entering each block (the outer
    loop's), and recomputes one block's carries from it (the inner loop's VJP, inside the outer
    reverse step). The steps past ``n`` that fill the last block leave the carry as it is. A
    symbolic ``n`` has ``floor((n + k - 1) / k)`` blocks, a dim the kernel computes when it runs."""
    where = "scan"
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UnsupportedError(f"{where}: checkpoint must be a positive int (steps per block), got {k!r:.60}")
    if isinstance(n, int):
        blocks = max(-(-n // k), 1) if n else 0
    else:  # a symbolic length: the number of blocks is computed when the kernel runs
        blocks = as_dim(sympy.floor((n + k - 1) / k), where)
    pad = blocks * k - n
    padded = not isinstance(pad, int) or pad > 0
    blocked = []
    for x in xs_leaves:
        rest = tuple(x.shape[1:])
        if padded:
            x = concatenate([x, broadcast_to(constant(0, x.dtype), (pad,) + rest)], axis=0)
        blocked.append(reshape(x, (blocks, k) + rest))
    step = -1 if reverse else 1

    def inner(state, x):
        carry, t = state
        new_carry, y = f(carry, x)
        if padded:  # the steps that fill the last block keep the carry
            old, td = flatten(carry)
            new = [as_expr(v, like=o) for v, o in zip(flatten(new_carry)[0], old)]
            last = count([n], "int64")
            new_carry = unflatten(td, [select(t < last, v, o) for v, o in zip(new, old)])
        return (new_carry, t + step), y

    def block(state, x):
        return scan(inner, state, None if x is None else unflatten(xs_td, x), length=k, reverse=reverse)

    first = count([blocks * k], "int64") - 1 if reverse else constant(0, "int64")
    xs_blocks = unflatten(xs_td, blocked) if xs_leaves else None
    (carry, _), ys = scan(
        lambda state, x: block(state, None if x is None else flatten(x)[0]),
        (init, first),
        xs_blocks,
        length=blocks,
        reverse=reverse,
    )
    ys_leaves, ys_td = flatten(ys)
    flat = []
    for y in ys_leaves:
        y = reshape(y, (blocks * k,) + tuple(y.shape[2:]))
        flat.append(y[:n] if padded else y)
    return carry, unflatten(ys_td, flat)


def fold(
    body: Any,
    carry: Expr,
    init: Any,
    x: Optional[Expr] = None,
    xs: Any = None,
    length: Any = None,
    history: bool = False,
) -> Expr:
    """The recurrence ``carry = body`` from ``init``, once per row ``x`` of ``xs`` (or ``length``
    times): the final carry, or with ``history=True`` the carry after every step, stacked along
    a new leading axis. ``carry`` and ``x`` are symbols ``body`` reads (the step's carry and row):
    a loop written as one expression, the string parser's form of ``scan``:
    ``sg.parse("fold(tanh(W @ h + x), h, h0, x, xs)", shapes={...})``."""
    where = "fold"
    for name, v in (("carry", carry), ("x", x)):
        if v is not None and (not isinstance(v, Expr) or v.op != "symbol"):
            raise UnsupportedError(
                f"{where}: {name} must be a name (the symbol the body reads for it), got {v!r:.60}"
            )
    if (x is None) != (xs is None):
        raise UnsupportedError(f"{where}: give x and xs together (the name of one step's row, and the rows)")
    if not isinstance(history, bool):
        raise UnsupportedError(f"{where}: history must be True or False, got {history!r:.60}")
    body = as_expr(body)
    init = as_expr(init, like=carry)
    if init.shape != carry.shape:
        raise ShapeError(
            f"{where}: init has shape {shape_str(init.shape)} but the carry {carry.attrs['name']} has "
            f"{shape_str(carry.shape)}"
        )
    xs = None if xs is None else as_expr(xs)
    if xs is not None and (xs.ndim == 0 or xs.shape[1:] != x.shape):
        raise ShapeError(
            f"{where}: a row of xs has shape {shape_str(xs.shape[1:])} but x ({x.attrs['name']}) has "
            f"{shape_str(x.shape)}"
        )

    def step(c, row):
        mapping = {id(carry): c}
        if x is not None:
            mapping[id(x)] = row
        new = substitute([body], mapping)[0]
        return new, (new if history else None)

    final, stacked = scan(step, init, xs, length=length)
    return stacked if history else final


def fori_loop(lower: Any, upper: Any, body_fun: Callable, init_val: Any) -> Any:
    """``for i in range(lower, upper): val = body_fun(i, val)`` as one loop (``jax.lax.fori_loop``);
    ``i`` is an int64 scalar. ``upper - lower`` may be a symbolic size (``x.shape[0]``)."""
    where = "fori_loop"
    for name, b in (("lower", lower), ("upper", upper)):
        if isinstance(b, Expr):
            raise UnsupportedError(
                f"{where}: {name} is a computed value; the bounds must be ints or sizes known when "
                "the function is called (use while_loop with max_steps for a computed bound)"
            )
    if not isinstance(lower, int):
        raise UnsupportedError(f"{where}: lower must be an int, got {lower!r:.60}")
    if isinstance(upper, int):
        span = max(upper - lower, 0)
    else:
        span = as_dim(as_dim(upper, where) - lower, where)

    def step(carry, _):
        i, val = carry
        return (i + 1, body_fun(i, val)), None

    (_, val), _ = scan(step, (constant(lower, "int64"), init_val), length=span)
    return val


def while_loop(cond_fun: Callable, body_fun: Callable, init_val: Any, max_steps: Optional[int] = None) -> Any:
    """``while cond_fun(val): val = body_fun(val)``, at most ``max_steps`` times
    (``jax.lax.while_loop`` with a bound, so that reverse mode can go through it): a scan of
    ``max_steps`` steps whose carry stops changing once the condition is false. Every step
    runs (the finished ones compute and discard), so choose ``max_steps`` near the need."""
    where = "while_loop"
    if max_steps is None:
        raise UnsupportedError(
            f"{where}: give max_steps=, the most steps the loop may take (an unbounded loop has no "
            "reverse mode and no static shape)"
        )

    def step(carry, _):
        val, active = carry
        go = as_expr(cond_fun(val))
        if go.shape != () or go.dtype != "bool":
            raise ShapeError(
                f"{where}: cond_fun must return a bool scalar, got shape {shape_str(go.shape)} {go.dtype}"
            )
        go = logical_and(active, go)
        new = body_fun(val)
        old_leaves, td = flatten(val)
        new_leaves, new_td = flatten(new)
        if new_td != td:
            raise UnsupportedError(
                f"{where}: body_fun returns structure {new_td}, but the value has structure {td}"
            )
        kept = [select(go, as_expr(n, like=o), o) for n, o in zip(new_leaves, old_leaves)]
        return (unflatten(td, kept), go), None

    (val, _), _ = scan(step, (init_val, constant(True, "bool")), length=max_steps)
    return val


__all__ = ["scan", "fold", "fori_loop", "while_loop", "scan_leaves", "Body", "recording_lengths"]
