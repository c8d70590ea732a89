"""JAX's function transformations over Python functions of symgrad values.

A ``Spec`` says what a transformation does with a function's output: ``value_and_grad``,
``grad``, ``jacobian`` (``jacfwd``/``jacrev``: its ``mode``), ``hessian``, or ``compile`` (the
output itself). ``evaluate`` applies it to the output of a function already run on symbols,
given the differentiated arguments as pytrees of symbols; the tracer (``frontends/trace.py``)
does that on symbolic stand-ins of numeric arguments, then compiles what ``evaluate`` gives.

``call_symbolic`` runs a transformed function on symgrad values (a transformed function
called inside another trace, as in ``sg.grad(sg.grad(f))``): each differentiated argument
leaf that is not already a symbol of its own becomes a fresh symbol, the derivatives are taken
with respect to those, and the leaf's expression is substituted back. ``jvp_symbolic``,
``vjp_symbolic`` are the same for ``sg.jvp`` and ``sg.vjp`` of a function.
"""

from __future__ import annotations

import inspect
import itertools
import threading
from typing import Any

import numpy as np

from . import autodiff, batching
from .errors import ShapeError, UnsupportedError
from .graph import Expr, dim_str, dims_equal, is_float, shape_str, topo_order
from .ops import as_expr
from .ops.registry import make
from .ops.structure import broadcast_to, transpose
from .pytree import flatten, flatten_with_paths, prefix_leaves, unflatten
from .symbol_constructors import tensor

KINDS = ("compile", "value_and_grad", "grad", "jacobian", "hessian")


def check_argnums(argnums: Any, where: str, fn: Any = None) -> tuple[tuple[int, ...], bool]:
    """``argnums`` as a tuple of ints and whether it was one int (which gives one result)."""
    fn_name = getattr(fn, "__name__", "the function")
    single = not isinstance(argnums, (tuple, list))
    nums = (argnums,) if single else tuple(argnums)
    if not nums:
        raise UnsupportedError(f"{where}: argnums is empty; say which arguments to differentiate")
    for a in nums:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            message = (
                f"{where}: argnums must be an int or a tuple of ints (positions of "
                f"{fn_name}'s parameters, as in JAX), got {a!r:.60}"
            )
            try:
                names = list(inspect.signature(fn).parameters) if fn is not None else []
            except (TypeError, ValueError):
                names = []
            if isinstance(a, str) and a in names:
                message += f"; {a!r} is parameter {names.index(a)}"
            raise UnsupportedError(message)
    nums = tuple(int(a) for a in nums)
    if len(set(nums)) != len(nums):
        raise UnsupportedError(f"{where}: argnums {nums} repeats an argument")
    return nums, single


class Spec:
    """One transformation: its kind, the differentiated arguments and whether the function
    returns ``(output, aux)``."""

    __slots__ = ("kind", "argnums", "single", "has_aux", "mode")

    def __init__(self, kind, argnums=(), single=True, has_aux=False, mode="auto"):
        if kind not in KINDS:
            raise AssertionError(kind)
        if mode not in ("auto", "forward", "reverse"):
            raise UnsupportedError(f"{kind}: mode must be 'auto', 'forward' or 'reverse', got {mode!r}")
        self.kind, self.argnums, self.single = kind, tuple(argnums), single
        self.has_aux, self.mode = bool(has_aux), mode

    @property
    def differentiates(self) -> bool:
        return self.kind != "compile"

    def describe(self, name):
        if self.kind == "compile":
            return f"compile({name})"
        nums = self.argnums[0] if self.single else self.argnums
        extra = ", has_aux=True" if self.has_aux else ""
        kind = {"forward": "jacfwd", "reverse": "jacrev"}.get(self.mode) if self.kind == "jacobian" else None
        return f"{kind or self.kind}({name}, argnums={nums}{extra})"


class Named:
    """A leaf of a transformation's result: the expression and the output name it compiles to."""

    __slots__ = ("name", "expr")

    def __init__(self, name, expr):
        self.name, self.expr = name, expr


class Result:
    """What ``evaluate`` gives: the result as a pytree of ``Named`` leaves, flattened."""

    def __init__(self, spec, tree, title, wrt, plain):
        self.spec = spec
        leaves, self.treedef = flatten(tree)
        self.outputs = [leaf.expr for leaf in leaves]
        self.names = _unique([leaf.name for leaf in leaves])
        self.title = title
        self.wrt = wrt  # the differentiated symbols, flat
        self.plain = plain  # (value, grad) or (value, (grads...)) of plain arguments: no pytree, no aux
        self.notes = None

    @property
    def tree(self):
        return unflatten(self.treedef, self.outputs)


def _unique(names):
    seen, out = set(), []
    for n in names:
        m, k = n, 1
        while m in seen:
            m, k = f"{n}_{k}", k + 1
        seen.add(m)
        out.append(m)
    return out


def _label(path):
    return "_".join(str(p) for p in path)


def _expr_leaf(value, where, name):
    """A leaf of a function's output as an Expr (numbers become constants)."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, (bool, int, float, np.ndarray, np.number, np.bool_)):
        return as_expr(value)
    raise UnsupportedError(
        f"{name} returned a {type(value).__name__} ({value!r:.40}) inside its output; "
        f"{where} compiles arrays and numbers only"
    )


def split_aux(spec, out, name):
    if not spec.has_aux:
        return out, None
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise UnsupportedError(
            f"{name} is transformed with has_aux=True, so it must return a pair (output, aux); "
            f"it returned {_what(out)}"
        )
    return out[0], out[1]


def _what(out):
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)}"
    return f"a {type(out).__name__}"


def _loss(spec, out, name):
    where = spec.kind
    if isinstance(out, (tuple, list, dict)):
        raise UnsupportedError(
            f"{name} returned a {type(out).__name__}; {where} needs the function to return one scalar "
            "(to return auxiliary data too, return (loss, aux) and pass has_aux=True)"
        )
    out = as_expr(out)
    if out.shape != ():
        raise ShapeError(
            f"{name} returned a value of shape {shape_str(out.shape)}; {where} needs a scalar "
            "(reduce it with np.sum or np.mean; for the derivative of an array use sg.jacobian)"
        )
    if not is_float(out.dtype):
        raise UnsupportedError(f"{name} returned a value of dtype {out.dtype}; {where} needs a float")
    return out


def _aux_tree(aux, name):
    leaves, paths, td = flatten_with_paths(aux)
    return unflatten(
        td,
        [
            Named("aux" + ("_" + _label(p) if p else ""), _expr_leaf(v, "has_aux", name))
            for v, p in zip(leaves, paths)
        ],
    )


def _arg_tree(spec, treedefs, values):
    """``values`` (one per differentiated leaf, flat) in the structure of the argnums:
    one argument's tree for an int argnums, a tuple of trees for a tuple."""
    trees, start = [], 0
    for td in treedefs:
        trees.append(unflatten(td, values[start : start + td.num_leaves]))
        start += td.num_leaves
    return trees[0] if spec.single else tuple(trees)


def evaluate(spec: Spec, out: Any, wrt_trees: list[Any], name: str, notes=None) -> Result:
    """Apply ``spec`` to ``out``, the output of ``name`` run on symbols; ``wrt_trees`` are the
    differentiated arguments (one pytree of symbols per argnum)."""
    title = spec.describe(name)
    if spec.kind == "compile":
        leaves, paths, td = flatten_with_paths(out)
        if not leaves:
            raise UnsupportedError(f"{title}: {name} returned {out!r:.40}, which holds no array or number")
        single = td.is_leaf
        tree = unflatten(
            td,
            [
                Named("out" if single else "out_" + _label(p), _expr_leaf(v, "compile", name))
                for v, p in zip(leaves, paths)
            ],
        )
        return Result(spec, tree, title, [], False)
    out, aux = split_aux(spec, out, name)
    wrt, treedefs = [], []
    for t in wrt_trees:
        leaves, td = flatten(t)
        wrt.extend(leaves)
        treedefs.append(td)
    plain = not spec.has_aux and all(td.is_leaf for td in treedefs)
    if spec.kind in ("value_and_grad", "grad"):
        loss = _loss(spec, out, name)
        grads = autodiff.grad(loss, wrt, notes)
        g = _arg_tree(spec, treedefs, [Named(f"d_{w.name}", e) for w, e in zip(wrt, grads)])
        if spec.kind == "grad":
            tree = g if aux is None else (g, _aux_tree(aux, name))
        else:
            value = Named("value", loss)
            tree = (value if aux is None else (value, _aux_tree(aux, name)), g)
        return Result(spec, tree, title, wrt, plain and spec.kind == "value_and_grad")
    if spec.kind == "jacobian":
        leaves, paths, td = flatten_with_paths(out)
        per_leaf = []
        for v, p in zip(leaves, paths):
            y = autodiff.float_expr(_expr_leaf(v, "jacobian", name), "jacobian")
            blocks = autodiff.jacobian(y, wrt, spec.mode, notes)
            prefix = "jac" + ("_" + _label(p) if p else "")
            per_leaf.append(
                _arg_tree(spec, treedefs, [Named(f"{prefix}_{w.name}", b) for w, b in zip(wrt, blocks)])
            )
        tree = unflatten(td, per_leaf)
    else:  # hessian
        loss = _loss(spec, out, name)
        blocks = autodiff.hessian(loss, wrt, notes)
        rows = [
            _arg_tree(spec, treedefs, [Named(f"h_{a.name}_{b.name}", e) for b, e in zip(wrt, row)])
            for a, row in zip(wrt, blocks)
        ]
        tree = _arg_tree(spec, treedefs, rows)
    if aux is not None:
        tree = (tree, _aux_tree(aux, name))
    return Result(spec, tree, title, wrt, False)


# ---------------------------------------------------------------- on symgrad values


_fresh_lock = threading.Lock()
_fresh_count = itertools.count()


def _fresh_symbol(shape, dtype):
    with _fresh_lock:
        n = next(_fresh_count)
    return tensor(f"_arg{n}", shape, dtype)


def has_expr(*trees: Any) -> bool:
    """Does any leaf of these pytrees hold a symgrad expression?"""
    for t in trees:
        for leaf in flatten(t)[0]:
            if isinstance(leaf, Expr):
                return True
    return False


def substitute(outputs: list[Expr], mapping: dict[int, Expr]) -> list[Expr]:
    """``outputs`` with each node whose id is in ``mapping`` replaced by its value (of the same
    shape and dtype), every node above it rebuilt through the op builders."""
    if not mapping:
        return list(outputs)
    new = dict(mapping)
    for node in topo_order(list(outputs)):
        if id(node) in new or not node.inputs:
            continue
        inputs = [new.get(id(i), i) for i in node.inputs]
        if any(a is not b for a, b in zip(inputs, node.inputs)):
            new[id(node)] = make(node.op, inputs, **node.attrs)
    return [new.get(id(o), o) for o in outputs]


def _bind(fn, args, kwargs):
    """Positional and keyword arguments as a call of ``fn`` binds them (argnums count the former)."""
    if not kwargs:
        return list(args), {}
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return list(args), dict(kwargs)
    return list(bound.args), dict(bound.kwargs)


def _differentiable(value, where):
    """A differentiated argument leaf as an Expr of a float dtype."""
    if isinstance(value, (list, tuple)):
        value = np.asarray(value, dtype=np.float64)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
    try:
        e = as_expr(value)
    except Exception as exc:
        raise UnsupportedError(f"{where} is differentiated but is a {type(value).__name__}: {exc}") from None
    if not is_float(e.dtype):
        raise UnsupportedError(
            f"{where} is differentiated (argnums) but has dtype {e.dtype}; only float arguments get gradients"
        )
    return e


def _stand_ins(args, kwargs, positions, where):
    """Replace the leaves of ``args[p]`` for p in ``positions`` by symbols: a leaf that is a
    symbol used nowhere else is kept, any other becomes a fresh symbol to substitute back.
    Returns (new args, the per-position trees of symbols, {id(fresh): value})."""
    others = []
    for i, a in enumerate(args):
        if i not in positions:
            others.extend(x for x in flatten(a, True)[0] if isinstance(x, Expr))
    others.extend(x for x in flatten(kwargs)[0] if isinstance(x, Expr))
    taken = {id(s) for s in topo_order(others) if s.op == "symbol"} if others else set()
    counts = {}
    for p in positions:
        for leaf in flatten(args[p], True)[0]:
            if isinstance(leaf, Expr):
                counts[id(leaf)] = counts.get(id(leaf), 0) + 1
    new_args, trees, mapping = list(args), [], {}
    for p in positions:
        leaves, paths, td = flatten_with_paths(args[p], True)
        symbols = []
        for leaf, path in zip(leaves, paths):
            e = _differentiable(leaf, f"argument {p}{''.join(f'[{k!r}]' for k in path)} of {where}")
            if e.op == "symbol" and id(e) not in taken and counts.get(id(e), 0) == 1:
                symbols.append(e)
                continue
            s = _fresh_symbol(e.shape, e.dtype)
            mapping[id(s)] = e
            symbols.append(s)
        tree = unflatten(td, symbols)
        new_args[p] = tree
        trees.append(tree)
    return new_args, trees, mapping


def _positions(argnums, n, where):
    out = []
    for a in argnums:
        if not -n <= a < n:
            raise UnsupportedError(
                f"{where}: argnums {a} is out of range for a call with {n} positional arguments"
            )
        out.append(a % n)
    return out


def _substituted(tree, mapping):
    leaves, td = flatten(tree)
    exprs = [leaf if isinstance(leaf, Expr) else as_expr(leaf) for leaf in leaves]
    return unflatten(td, substitute(exprs, mapping))


def call_symbolic(spec: Spec, fn: Any, args: tuple, kwargs: dict, name: str) -> Any:
    """``fn`` transformed by ``spec`` and called on symgrad values: the result as Exprs."""
    args, kwargs = _bind(fn, args, kwargs)
    positions = _positions(spec.argnums, len(args), spec.describe(name)) if spec.differentiates else []
    new_args, trees, mapping = _stand_ins(args, kwargs, positions, name)
    result = evaluate(spec, fn(*new_args, **kwargs), trees, name)
    return _substituted(result.tree, mapping)


def _tangents_like(primal_tree, tangents, what, where):
    p_leaves, p_td = flatten(primal_tree)
    t_leaves, t_td = flatten(tangents, True)
    if t_td != p_td:
        raise UnsupportedError(f"{where}: the {what}s have structure {t_td}, but the primals have {p_td}")
    out = []
    for p, t in zip(p_leaves, t_leaves):
        t = as_expr(np.asarray(t, dtype=p.dtype) if not isinstance(t, Expr) else t, like=p)
        if t.shape != p.shape:
            raise ShapeError(
                f"{where}: a {what} of shape {shape_str(t.shape)} for a primal of shape {shape_str(p.shape)}"
            )
        out.append(t)
    return out


def as_tuple(value, what, where):
    if not isinstance(value, (tuple, list)):
        raise UnsupportedError(
            f"{where}: {what} must be a tuple or list with one entry per argument of the function "
            f"(as in JAX), got a {type(value).__name__}"
        )
    return tuple(value)


def jvp_symbolic(fn: Any, primals: Any, tangents: Any, name: str) -> tuple[Any, Any]:
    """``(fn(*primals), the tangent of its output)``, as Exprs (forward mode)."""
    primals = as_tuple(primals, "primals", "jvp")
    tangents = as_tuple(tangents, "tangents", "jvp")
    if len(tangents) != len(primals):
        raise UnsupportedError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    positions = list(range(len(primals)))
    new_args, trees, mapping = _stand_ins(list(primals), {}, positions, name)
    out = fn(*new_args)
    wrt = [s for t in trees for s in flatten(t)[0]]
    dirs = [d for t, tan in zip(trees, tangents) for d in _tangents_like(t, tan, "tangent", "jvp")]
    leaves, td = flatten(out)
    ys = [autodiff.float_expr(_expr_leaf(v, "jvp", name), "jvp") for v in leaves]
    outs = autodiff.jvp(ys, wrt, dirs)
    return _substituted(unflatten(td, ys), mapping), _substituted(unflatten(td, outs), mapping)


def vjp_symbolic(fn: Any, primals: Any, cotangent: Any, name: str, has_aux: bool = False) -> Any:
    """The cotangent of each primal (a tuple, one per primal) given the output's cotangent."""
    primals = tuple(primals)
    positions = list(range(len(primals)))
    new_args, trees, mapping = _stand_ins(list(primals), {}, positions, name)
    out = fn(*new_args)
    if has_aux:
        out = split_aux(Spec("grad", has_aux=True), out, name)[0]
    leaves, td = flatten(out)
    ys = [autodiff.float_expr(_expr_leaf(v, "vjp", name), "vjp") for v in leaves]
    c_leaves, c_td = flatten(cotangent, True)
    if c_td != td and not (td.is_leaf and c_td.is_leaf):
        raise UnsupportedError(f"vjp: the cotangent has structure {c_td}, but {name}'s output has {td}")
    wrt = [s for t in trees for s in flatten(t)[0]]
    total = None
    for y, c in zip(ys, c_leaves):
        c = as_expr(np.asarray(c, dtype=y.dtype) if not isinstance(c, Expr) else c, like=y)
        if c.shape != y.shape:
            raise ShapeError(
                f"vjp: a cotangent of shape {shape_str(c.shape)} for an output of shape {shape_str(y.shape)}"
            )
        part = autodiff.vjp(y, wrt, c)
        total = part if total is None else [a + b for a, b in zip(total, part)]
    if total is None:
        total = [autodiff.zeros(w.shape, w.dtype) for w in wrt]
    result, start = [], 0
    for t in trees:
        n = len(flatten(t)[0])
        result.append(_substituted(unflatten(flatten(t)[1], total[start : start + n]), mapping))
        start += n
    return tuple(result)


# ---------------------------------------------------------------- vmap


def is_axis(value: Any) -> bool:
    """An entry of in_axes/out_axes that applies to a whole subtree: an int or None."""
    return value is None or (isinstance(value, (int, np.integer)) and not isinstance(value, bool))


def check_axes(axes: Any, what: str, where: str) -> None:
    """Refuse an in_axes/out_axes holding anything but ints and None (in a pytree)."""
    leaves = [axes] if is_axis(axes) else flatten(axes)[0]
    for leaf in leaves:
        if not is_axis(leaf):
            raise UnsupportedError(
                f"{where}: {what} must be an int, None, or a pytree of them (as in JAX), "
                f"got {leaf!r:.60} in {axes!r:.80}"
            )


def arg_axes(in_axes: Any, nargs: int, where: str) -> list[Any]:
    """``in_axes`` as one axes prefix per positional argument."""
    if is_axis(in_axes):
        return [in_axes] * nargs
    if not isinstance(in_axes, (tuple, list)):
        raise UnsupportedError(
            f"{where}: in_axes must be an int, None, or a tuple with one entry per positional argument "
            f"(as in JAX), got a {type(in_axes).__name__}"
        )
    if len(in_axes) != nargs:
        raise UnsupportedError(
            f"{where}: in_axes has {len(in_axes)} entries but the function was called with "
            f"{nargs} positional argument{'' if nargs == 1 else 's'}"
        )
    return list(in_axes)


def leaf_axes(axes: Any, value: Any, what: str, where: str) -> list[Any]:
    """One axis (or None) per leaf of ``value``, ``axes`` being a tree prefix of it."""
    try:
        return prefix_leaves(axes, value, is_axis, numbers_leaf=True)
    except ValueError as exc:
        raise UnsupportedError(f"{where}: {what} {exc}") from None


def _axis_index(axis, rank, what, where):
    if not -rank <= axis < rank:
        raise ShapeError(
            f"{where}: {what} {axis} is out of range for {rank} dimension{'' if rank == 1 else 's'}"
        )
    return int(axis) % rank


def _move_axis(x, source, dest):
    if source == dest:
        return x
    order = [a for a in range(x.ndim) if a != source]
    order.insert(dest, source)
    return transpose(x, tuple(order))


def vmap_symbolic(fn: Any, in_axes: Any, out_axes: Any, args: tuple, name: str) -> Any:
    """``fn`` mapped over an axis of its arguments (``sg.vmap``), on symgrad values: ``fn`` runs
    once on one example's stand-in symbols and its graph is rebuilt for the whole batch
    (``symgrad.batching``). The batch axis of each output is at ``out_axes``."""
    where = f"vmap({name})"
    args = list(args)
    size, first, mapping, new_args = None, None, {}, []
    for p, (value, axes) in enumerate(zip(args, arg_axes(in_axes, len(args), where))):
        leaves, paths, td = flatten_with_paths(value, True)
        per_leaf = leaf_axes(axes, value, f"in_axes[{p}]" if not is_axis(in_axes) else "in_axes", where)
        stand_ins = []
        for leaf, path, axis in zip(leaves, paths, per_leaf):
            if axis is None:
                stand_ins.append(leaf)
                continue
            label = f"argument {p}{''.join(f'[{k!r}]' for k in path)}"
            e = as_expr(np.asarray(leaf) if isinstance(leaf, (list, tuple)) else leaf)
            if e.ndim == 0:
                raise ShapeError(
                    f"{where}: in_axes maps axis {axis} of {label}, a scalar; use None for an argument "
                    "that is not mapped"
                )
            moved = _move_axis(e, _axis_index(axis, e.ndim, "in_axes", f"{where}, {label}"), 0)
            if size is None:
                size, first = moved.shape[0], label
            elif not dims_equal(size, moved.shape[0]):
                raise ShapeError(
                    f"{where}: the mapped axes have different sizes: {dim_str(size)} in {first}, "
                    f"{dim_str(moved.shape[0])} in {label}"
                )
            stand_in = _fresh_symbol(moved.shape[1:], moved.dtype)
            mapping[id(stand_in)] = moved
            stand_ins.append(stand_in)
        new_args.append(unflatten(td, stand_ins))
    if size is None:
        raise UnsupportedError(
            f"{where}: in_axes maps no argument (every entry is None); map at least one axis"
        )
    out = fn(*new_args)
    leaves, paths, td = flatten_with_paths(out)
    exprs = [_expr_leaf(v, "vmap", name) for v in leaves]
    batched = batching.batch(exprs, mapping, size)
    results = []
    for e, b, path, axis in zip(exprs, batched, paths, leaf_axes(out_axes, out, "out_axes", where)):
        label = "output" + "".join(f"[{k!r}]" for k in path)
        if axis is None:
            if b is not None:
                raise UnsupportedError(
                    f"{where}: out_axes is None for {label}, but it depends on the mapped arguments "
                    "(None is for an output that is the same for every example)"
                )
            results.append(e)
            continue
        if b is None:  # the same for every example: repeated along the batch axis, as JAX does
            b = broadcast_to(e, (size,) + e.shape)
        results.append(_move_axis(b, 0, _axis_index(axis, b.ndim, "out_axes", f"{where}, {label}")))
    return unflatten(td, results)


__all__ = [
    "Spec",
    "evaluate",
    "call_symbolic",
    "jvp_symbolic",
    "vjp_symbolic",
    "substitute",
    "has_expr",
    "vmap_symbolic",
]
