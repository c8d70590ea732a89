"""The public surface: symbols, compile, value_and_grad, grad, check_grad."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Union, overload

import inspect
import weakref

import numpy as np

from .errors import InputError, ShapeError, UnsupportedError
from .graph import (
    Expr,
    check_symbol_names,
    free_symbols,
    name_order,
    shape_str,
)
from .ops import as_expr
from .symbol_constructors import tensor, scalar, scalars, symbols  # noqa: F401  (the symbol constructors, re-exported)
from . import autodiff, pytree, sparsity, transforms
from .codegen import compile_graph
from .codegen.progress import building
from .frontends.trace import TracedFunction, traced

if TYPE_CHECKING:  # for the hints only: importing these here would load the compiler and SciPy
    import scipy.sparse

    from .codegen.runtime import Compiled
    from .graph import Dim

# what the functions take as an expression: an Expr, or a number or array (a constant)
ExprLike = Union[Expr, float, int, np.ndarray, np.number]
# what wrt takes: one symbol (giving one result) or a sequence of them (giving a list)
Wrt = Union[Expr, Sequence[Expr]]

DEFAULT_BACKEND = "numba"


# ---------------------------------------------------------------- symbolic derivatives


# ---------------------------------------------------------------- functions, as JAX takes them


def _is_function(f):
    return callable(f) and not isinstance(f, Expr)


def _function_spec(kind, fn, second, argnums, has_aux, where, mode="auto", default=0):
    """The transforms.Spec of ``kind`` for a Python function: the second positional argument is
    argnums (as in JAX), or argnums= is."""
    if second is not None:
        if argnums is not None:
            raise UnsupportedError(
                f"{where}: with a function, the second positional argument is argnums; "
                f"got both {second!r:.40} and argnums={argnums!r:.40}"
            )
        argnums = second
    if kind == "compile":
        return transforms.Spec("compile")
    nums, single = transforms.check_argnums(default if argnums is None else argnums, where, fn)
    return transforms.Spec(kind, nums, single, has_aux, mode)


def _traced(kind, fn, second, argnums, has_aux, backend, where, mode="auto"):
    spec = _function_spec(kind, fn, second, argnums, has_aux, where, mode)
    if fn is None:  # a decorator with arguments
        return lambda f: traced(f, _compile_result, spec, backend or DEFAULT_BACKEND)
    return traced(fn, _compile_result, spec, backend or DEFAULT_BACKEND)


def _refuse_function_options(where, argnums, has_aux):
    if argnums is not None or has_aux:
        raise UnsupportedError(
            f"{where}: argnums and has_aux are for Python functions; with an expression, pass wrt="
        )


def _compile_result(result, inputs, backend):
    """How a traced function compiles what its transformation gave (a transforms.Result):
    (the Compiled, None); the Compiled returns the result's structure."""
    if result.plain:
        # a value_and_grad of plain arguments: the expression API's own compile
        wrt = result.wrt[0] if result.spec.single else result.wrt
        # (the trace took the gradient: result.outputs are the value and the gradients)
        return _value_and_grad_expr(
            result.outputs[0], wrt, inputs, backend, result.outputs[1:], result.notes
        ), None
    kind = result.spec.kind
    primary = len(result.outputs) if kind == "compile" else 1 if kind == "value_and_grad" else 0
    compiled = _compile_tree(
        result.outputs,
        result.treedef,
        result.names,
        inputs,
        backend,
        result.title,
        notes=result.notes,
        primary=primary,
    )
    return compiled, None


def _compile_tree(outputs, treedef, names, inputs, backend, title, notes=None, primary=None):
    """Compile ``outputs`` (the leaves of ``treedef``) so that a call returns that structure:
    built in the generated entry's return statement when it can be, else unflattened after it."""
    if treedef.kind == "tuple" and all(c.is_leaf for c in treedef.children):
        code = "out"  # the kernel's tuple as it is
    else:
        code = pytree.structure_code(treedef, [f"out[{i}]" for i in range(len(outputs))])
    compiled = compile_graph(
        outputs,
        inputs,
        output_names=names,
        structure=code or "out",
        primary=len(outputs) if primary is None else primary,
        backend=backend or DEFAULT_BACKEND,
        title=title,
        notes=notes,
    )
    if code is None:
        entry = compiled._entry

        def unflattened(*args):
            return pytree.unflatten(treedef, entry(*args))

        compiled._entry = unflattened  # the Compiled calls this: the structure holds a type by name
    return compiled


# per function: the traced helpers sg.jvp / sg.vjp / sg.hvp compile for it (held weakly)
_helpers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _helper(fn, key, make):
    try:
        table = _helpers.setdefault(fn, {})
    except TypeError:  # not weakly referable: made for this call alone
        return make()
    found = table.get(key)
    if found is None:
        found = table[key] = make()
    return found


def _weak_call(fn):
    """A call of ``fn`` that does not keep it alive (the helpers above are values of a weak table)."""
    try:
        ref = weakref.ref(fn)
    except TypeError:
        return fn
    return lambda *args, **kwargs: ref()(*args, **kwargs)


def _jvp_helper(fn, backend):
    name = getattr(fn, "__name__", "fn")
    call = _weak_call(fn)

    def jvp_of(primals, tangents):
        return transforms.jvp_symbolic(call, primals, tangents, name)

    return _helper(
        fn, ("jvp", backend), lambda: traced(jvp_of, _compile_result, transforms.Spec("compile"), backend)
    )


def _function_jvp(fn, primals, tangents, backend):
    if transforms.has_expr(primals, tangents):
        return transforms.jvp_symbolic(fn, primals, tangents, getattr(fn, "__name__", "fn"))
    primals = transforms.as_tuple(primals, "primals", "jvp")
    tangents = transforms.as_tuple(tangents, "tangents", "jvp")
    return _jvp_helper(fn, backend or DEFAULT_BACKEND)(primals, tangents)


def _function_vjp(fn, primals, has_aux, backend):
    backend = backend or DEFAULT_BACKEND
    name = getattr(fn, "__name__", "fn")
    if transforms.has_expr(primals):
        out = fn(*primals)
        aux = None
        if has_aux:
            out, aux = transforms.split_aux(transforms.Spec("grad", has_aux=True), out, name)

        def vjp_fn(cotangent):
            return transforms.vjp_symbolic(fn, primals, cotangent, name, has_aux)

        return (out, vjp_fn, aux) if has_aux else (out, vjp_fn)
    forward = _helper(
        fn, ("compile", backend), lambda: traced(fn, _compile_result, transforms.Spec("compile"), backend)
    )
    out = forward(*primals)
    aux = None
    if has_aux:
        out, aux = transforms.split_aux(transforms.Spec("grad", has_aux=True), out, name)
    call = _weak_call(fn)

    def vjp_of(primals, cotangent):
        return transforms.vjp_symbolic(call, primals, cotangent, name, has_aux)

    helper = _helper(
        fn,
        ("vjp", backend, has_aux),
        lambda: traced(vjp_of, _compile_result, transforms.Spec("compile"), backend),
    )

    def vjp_fn(cotangent):
        """The cotangent of each primal (a tuple) given the output's cotangent."""
        return helper(tuple(primals), cotangent)

    return (out, vjp_fn, aux) if has_aux else (out, vjp_fn)


# ---------------------------------------------------------------- vmap


def _positional_signature(fn):
    """A signature of positional-only parameters named as ``fn``'s (so the traced symbols carry
    its parameter names), or None when ``fn`` has defaults, ``*args`` or an unreadable signature."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind not in positional or p.default is not p.empty for p in params):
        return None
    return inspect.Signature([p.replace(kind=inspect.Parameter.POSITIONAL_ONLY) for p in params])


class VmapFunction:
    """``sg.vmap(fn, in_axes, out_axes)``: ``fn`` mapped over an axis of its arguments.

    Called with arrays, it traces ``fn`` once on one example's symbols, rebuilds the graph for
    a batch whose size is a symbolic dim of its own (``symgrad.batching``) and compiles it: one
    compile serves every batch size. Called with symgrad values (inside another transformation,
    or a nested vmap) it returns the batched expressions. The traced function's record is here
    too: ``.source``, ``.compile_count``, ``.trace_count``, ``.compiles``, ``.compiled_for``."""

    def __init__(self, fn, in_axes, out_axes, backend):
        if not callable(fn):
            raise UnsupportedError(f"vmap: {fn!r:.60} is not a function")
        transforms.check_axes(in_axes, "in_axes", "vmap")
        transforms.check_axes(out_axes, "out_axes", "vmap")
        if isinstance(in_axes, dict):
            raise UnsupportedError(
                "vmap: in_axes must be an int, None, or a tuple with one entry per positional argument "
                "(as in JAX), got a dict"
            )
        self._fn, self._in_axes, self._out_axes = fn, in_axes, out_axes
        self.__name__ = name = getattr(fn, "__name__", type(fn).__name__)
        self.__doc__ = getattr(fn, "__doc__", None)

        def batched(*args):
            return transforms.vmap_symbolic(fn, in_axes, out_axes, args, name)

        batched.__name__ = batched.__qualname__ = f"vmap({name})"
        signature = _positional_signature(fn)
        if signature is not None:
            batched.__signature__ = signature
        self._traced = traced(
            batched, _compile_result, transforms.Spec("compile"), backend or DEFAULT_BACKEND, self._leaf_axes
        )

    def _leaf_axes(self, args):
        where = f"vmap({self.__name__})"
        per_arg = transforms.arg_axes(self._in_axes, len(args), where)
        return [
            a
            for value, axes in zip(args, per_arg)
            for a in transforms.leaf_axes(axes, value, "in_axes", where)
        ]

    def __call__(self, *args, **kwargs):
        if kwargs:
            raise UnsupportedError(
                f"vmap({self.__name__}): pass the arguments by position (in_axes counts positional "
                f"arguments); got keyword argument(s) {', '.join(sorted(kwargs))}"
            )
        return self._traced(*args)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._traced, name)

    def __repr__(self):
        return f"<symgrad vmap({self.__name__}, in_axes={self._in_axes!r}, out_axes={self._out_axes!r})>"


def vmap(
    fn: Callable[..., Any], in_axes: Any = 0, out_axes: Any = 0, *, backend: str | None = None
) -> VmapFunction:
    """JAX's ``vmap``: ``fn`` mapped over axis ``in_axes`` of its arguments, the results stacked
    along ``out_axes``. ``in_axes``: an int (every argument), None (not mapped: the same for
    every example), or a tuple with one entry per positional argument, each an int, None or a
    pytree of them matching that argument; negative axes count from the end. Composes with
    every transformation: ``sg.vmap(sg.grad(loss), in_axes=(None, 0, 0))`` is the per-example
    gradient. The batch size is a symbolic dim, so one compile serves every batch size."""
    return VmapFunction(fn, in_axes, out_axes, backend)


# ---------------------------------------------------------------- symbolic derivatives


@overload
def grad(expr: ExprLike, wrt: Expr) -> Expr: ...
@overload
def grad(expr: ExprLike, wrt: Sequence[Expr]) -> list[Expr]: ...
@overload
def grad(
    expr: Callable[..., Any], wrt: int | Sequence[int] | None = None, **options: Any
) -> TracedFunction: ...


def grad(
    expr: ExprLike | Callable[..., Any] | None = None,
    wrt: Wrt | int | Sequence[int] | None = None,
    *,
    argnums: int | Sequence[int] | None = None,
    has_aux: bool = False,
    backend: str | None = None,
) -> Expr | list[Expr] | TracedFunction | Callable[[Callable[..., Any]], TracedFunction]:
    """Symbolic gradient of a scalar expression: an Expr per symbol (a list gives a list).

    Given a Python function (or used as a decorator), as ``jax.grad``: a function returning the
    gradient with respect to the ``argnums`` arguments (the second positional argument is
    argnums), in their pytree structure; ``has_aux=True`` when the function returns
    ``(loss, aux)``, then the call returns ``(gradient, aux)``."""
    if expr is None or _is_function(expr):
        return _traced("grad", expr, wrt, argnums, has_aux, backend, "grad")
    _refuse_function_options("grad", argnums, has_aux)
    if wrt is None:
        raise UnsupportedError("grad(expr): say which symbols to differentiate, grad(expr, wrt)")
    expr = as_expr(expr)
    wrt_list, single = _wrt_list(wrt, "grad")
    _check_one_symbol_per_name(expr, wrt_list)
    return autodiff.grad(expr, wrt_list[0] if single else wrt_list)


def vjp(
    expr: Any,
    *args: Any,
    wrt: Wrt | None = None,
    cotangent: ExprLike | None = None,
    has_aux: bool = False,
    backend: str | None = None,
) -> Any:
    """Symbolic vector-Jacobian product ``vjp(expr, wrt, cotangent)``: the adjoint of each ``wrt``
    symbol given ``expr``'s adjoint.

    Given a Python function, as ``jax.vjp``: ``vjp(fn, *primals)`` returns ``(out, vjp_fn)``
    (``(out, vjp_fn, aux)`` with ``has_aux=True``); ``vjp_fn(cotangent)`` returns a tuple with
    the cotangent of each primal, in its pytree structure."""
    if _is_function(expr):
        return _function_vjp(expr, args, has_aux, backend)
    _refuse_function_options("vjp", None, has_aux)
    given = list(args) + [v for v in (wrt, cotangent) if v is not None]
    if len(given) != 2:
        raise UnsupportedError(
            "vjp(expr, wrt, cotangent) takes an expression, the symbols and a cotangent; got "
            f"{len(given) + 1} arguments (vjp(fn, *primals) takes a Python function)"
        )
    wrt, cotangent = given
    expr = as_expr(expr)
    wrt_list, single = _wrt_list(wrt, "vjp")
    _check_one_symbol_per_name(expr, wrt_list)
    result = autodiff.vjp(expr, wrt_list, as_expr(cotangent, like=expr))
    return result[0] if single else result


def _wrt_list(wrt, where):
    """``wrt`` as a list, and whether it was a single symbol (which gives a single gradient)."""
    if isinstance(wrt, Expr):
        return [wrt], True
    if isinstance(wrt, (str, bytes)) or not hasattr(wrt, "__iter__"):
        raise UnsupportedError(
            f"{where}: wrt must be a symbol or a list of symbols, got {type(wrt).__name__} {wrt!r:.60}"
        )
    return list(wrt), False


def _check_one_symbol_per_name(expr, wrt_list):
    """Two different symbols of one name in a graph (or a wrt symbol clashing with one of
    the graph's) are an error naming both, as they are when compiling."""
    used = free_symbols([expr])
    used_ids = {id(u) for u in used}
    extra = [w for w in wrt_list if isinstance(w, Expr) and w.op == "symbol" and id(w) not in used_ids]
    check_symbol_names(used + extra)


def _per_symbol(values, wrt_list, single, where, what):
    """``values`` (one per wrt symbol, or one for a single symbol) as a list of Exprs."""
    if single and not isinstance(values, (list, tuple)):
        values = [values]
    if not isinstance(values, (list, tuple)) or len(values) != len(wrt_list):
        raise UnsupportedError(
            f"{where}: give one {what} per symbol in wrt ({len(wrt_list)}), got {values!r:.60}"
        )
    out = []
    for v, w in zip(values, wrt_list):
        v = as_expr(v, like=w)
        if v.shape != w.shape:
            raise ShapeError(
                f"{where}: the {what} for {w.name} has shape {shape_str(v.shape)}, "
                f"but {w.name} has shape {shape_str(w.shape)}"
            )
        out.append(v)
    return out


def jvp(expr: Any, wrt: Any, tangents: Any, *, backend: str | None = None) -> Any:
    """Symbolic Jacobian-vector product (forward mode): the tangent of ``expr`` when each
    ``wrt`` symbol moves along its tangent. ``expr`` may be a list of expressions
    (which gives a list); tangents are Exprs or arrays shaped like their symbols.

    Given a Python function, as ``jax.jvp``: ``jvp(fn, primals, tangents)`` (tuples, one entry
    per argument, each a pytree) returns ``(fn(*primals), the output's tangent)``."""
    if _is_function(expr):
        return _function_jvp(expr, wrt, tangents, backend)
    many = isinstance(expr, (list, tuple))
    exprs = [autodiff.float_expr(e, "jvp") for e in (expr if many else [expr])]
    wrt_list, single = _wrt_list(wrt, "jvp")
    for e in exprs:
        _check_one_symbol_per_name(e, wrt_list)
    autodiff._check_wrt(wrt_list, "jvp")
    result = autodiff.jvp(exprs, wrt_list, _per_symbol(tangents, wrt_list, single, "jvp", "tangent"))
    return result if many else result[0]


def jacobian(
    expr: Any = None,
    wrt: Any = None,
    mode: str = "auto",
    *,
    argnums: int | Sequence[int] | None = None,
    has_aux: bool = False,
    backend: str | None = None,
) -> Any:
    """Symbolic Jacobian: ``d expr / d w`` of shape ``expr.shape + w.shape`` per symbol.

    ``mode="forward"`` builds one JVP per input element, ``"reverse"`` one VJP per
    output element; ``"auto"`` picks forward when the total input size is smaller than
    the output size and reverse otherwise (the seeds' rule). With symbolic sizes it
    picks the side whose size is concrete (``sg.jacobian_mode`` tells which and the
    sizes compared). The graph has O(N * passes) nodes for an N-node expression. With both
    sizes symbolic (mode ``"whole"``) the Jacobian of a vector input, shape
    ``expr.shape + w.shape`` in symbolic dims, is carried forward through elementwise ops,
    sums, slices, concatenate and products with matrices that do not depend on ``w``; any
    other op on the way is an UnsupportedError naming it.

    Given a Python function, as ``jax.jacfwd``/``jax.jacrev``: a function returning, for each
    leaf of the output, the Jacobian with respect to the ``argnums`` arguments in their pytree
    structure (shape ``out.shape + arg.shape``)."""
    if expr is None or _is_function(expr):
        return _traced("jacobian", expr, wrt, argnums, has_aux, backend, "jacobian", mode)
    _refuse_function_options("jacobian", argnums, has_aux)
    if wrt is None:
        raise UnsupportedError("jacobian(expr): say which symbols to differentiate, jacobian(expr, wrt)")
    expr = autodiff.float_expr(expr, "jacobian")
    wrt_list, single = _wrt_list(wrt, "jacobian")
    _check_one_symbol_per_name(expr, wrt_list)
    blocks = autodiff.jacobian(expr, wrt_list, mode)
    return blocks[0] if single else blocks


def jacobian_mode(expr: ExprLike, wrt: Wrt) -> tuple[str, Dim, Dim]:
    """The mode ``jacobian(mode="auto")`` picks and the sizes it compared: (mode, n_in, n_out)."""
    wrt_list, _ = _wrt_list(wrt, "jacobian_mode")
    return autodiff.jacobian_mode(as_expr(expr), wrt_list)


@overload
def hessian(expr: ExprLike, wrt: Expr) -> Expr: ...
@overload
def hessian(expr: ExprLike, wrt: Sequence[Expr]) -> list[list[Expr]]: ...
@overload
def hessian(
    expr: Callable[..., Any], wrt: int | Sequence[int] | None = None, **options: Any
) -> TracedFunction: ...


def hessian(
    expr: Any = None,
    wrt: Any = None,
    *,
    argnums: int | Sequence[int] | None = None,
    has_aux: bool = False,
    backend: str | None = None,
) -> Any:
    """Symbolic Hessian of a scalar, forward over reverse (the JVP of the gradient graph).

    A single symbol gives one Expr of shape ``w.shape + w.shape``; a list gives blocks
    ``H[i][j]`` of shape ``wi.shape + wj.shape``. The Hessian is exactly symmetric and
    each off-diagonal entry is computed once (the blocks above the diagonal are
    transposes of those below). Input sizes must be concrete.

    Given a Python function, as ``jax.hessian``: a function returning ``H[i][j]`` over the
    ``argnums`` arguments, nested in their pytree structure (outer ``i``, inner ``j``)."""
    if expr is None or _is_function(expr):
        return _traced("hessian", expr, wrt, argnums, has_aux, backend, "hessian")
    _refuse_function_options("hessian", argnums, has_aux)
    if wrt is None:
        raise UnsupportedError("hessian(expr): say which symbols to differentiate, hessian(expr, wrt)")
    expr = autodiff.scalar_loss(expr, "hessian")
    wrt_list, single = _wrt_list(wrt, "hessian")
    _check_one_symbol_per_name(expr, wrt_list)
    blocks = autodiff.hessian(expr, wrt_list)
    return blocks[0][0] if single else blocks


def hvp(expr: Any, wrt: Any, vectors: Any, *, backend: str | None = None) -> Any:
    """Symbolic Hessian-vector product ``H v`` of a scalar, without forming H: the JVP of
    the gradient graph (forward over reverse), a small constant times one gradient.

    Given a Python function, ``hvp(fn, primals, tangents)`` is JAX's documented
    ``jvp(grad(fn), primals, tangents)[1]``: H v for the first argument, in its structure."""
    if _is_function(expr):
        backend = backend or DEFAULT_BACKEND
        g = _helper(
            expr,
            ("grad", backend),
            lambda: traced(expr, _compile_result, transforms.Spec("grad", (0,), True), backend),
        )
        return _function_jvp(g, wrt, vectors, backend)[1]
    expr = autodiff.scalar_loss(expr, "hvp")
    wrt_list, single = _wrt_list(wrt, "hvp")
    _check_one_symbol_per_name(expr, wrt_list)
    autodiff._check_wrt(wrt_list, "hvp")
    result = autodiff.hvp(expr, wrt_list, _per_symbol(vectors, wrt_list, single, "hvp", "vector"))
    return result[0] if single else result


def hessian_sparsity(expr: ExprLike, wrt: Wrt) -> scipy.sparse.csr_matrix:
    """The structural non-zero pattern of the Hessian: an (n, n) boolean
    ``scipy.sparse.csr_matrix`` over the ``wrt`` elements flattened in order (C order).
    An entry outside the pattern is zero at every point. See ``symgrad.sparsity``."""
    expr = autodiff.scalar_loss(expr, "hessian_sparsity")
    wrt_list, _ = _wrt_list(wrt, "hessian_sparsity")
    _check_one_symbol_per_name(expr, wrt_list)
    autodiff._check_wrt(wrt_list, "hessian_sparsity")
    return sparsity.hessian_sparsity(expr, wrt_list)


# ---------------------------------------------------------------- compiling


def _as_output(o, where):
    if isinstance(o, Expr):
        return o
    if isinstance(o, (int, float, np.ndarray, np.number)):
        return as_expr(o)
    raise UnsupportedError(
        f"{where}: cannot compile a {type(o).__name__} ({o!r:.60}); pass symgrad expressions"
    )


def _resolve_inputs(outputs, inputs, where, extra=()):
    used = free_symbols(outputs)
    if inputs is None:
        # the default order depends on the call alone: the wrt symbols in wrt order, then
        # the other free symbols sorted by name (graph.name_order)
        first = []
        for s in extra:
            if all(s is not o for o in first):
                first.append(s)
        rest = [u for u in used if all(u is not o for o in first)]
        check_symbol_names(first + rest)
        return first + sorted(rest, key=name_order)
    if isinstance(inputs, Expr):
        inputs = [inputs]
    inputs = list(inputs)
    for s in inputs:
        if not isinstance(s, Expr) or s.op != "symbol":
            raise UnsupportedError(f"{where}: inputs must be symbols, got {s!r:.60}")
    seen = set()
    for s in inputs:
        if id(s) in seen:
            raise InputError(f"{where}: symbol {s.name!r} appears twice in inputs")
        seen.add(id(s))
    check_symbol_names(inputs + used)
    missing = [s for s in used if id(s) not in seen]
    if missing:
        raise InputError(
            f"{where}: the expression uses {', '.join(repr(s.name) for s in missing)}, "
            f"which {'is' if len(missing) == 1 else 'are'} not in inputs "
            f"[{', '.join(s.name for s in inputs)}]"
        )
    for s in extra:
        if id(s) not in seen:
            raise InputError(
                f"{where}: {s.name!r} is differentiated but not in inputs "
                f"[{', '.join(s.name for s in inputs)}]"
            )
    return inputs


_DECORATOR = object()  # compile(backend=...) with no function yet: a decorator


def compile(
    outputs: Any = _DECORATOR,
    inputs: Expr | Sequence[Expr] | None = None,
    *,
    backend: str | None = None,
    name: str = "f",
) -> Any:
    """Compile one expression (returns one value), or any nested structure of them (tuples,
    lists, dicts, namedtuples, dataclasses: returns that structure, with lists as tuples), such
    as the blocks ``sg.hessian(e, [x, y])`` gives.

    ``inputs`` gives the argument order (default: the free symbols sorted by name,
    digit runs as numbers: ``x2`` before ``x10``) and may add symbols the outputs do not use.

    Given a Python function (or used as a decorator), as ``jax.jit``: the function traced on
    its arguments and compiled, returning its output's structure."""
    if outputs is _DECORATOR or _is_function(outputs):
        if inputs is not None:
            raise UnsupportedError(
                "compile: a traced function's parameters are its inputs; inputs= is for expressions, "
                f"got {inputs!r:.60}"
            )
        fn = None if outputs is _DECORATOR else outputs
        return _traced("compile", fn, None, None, False, backend, "compile")
    if outputs is None:
        _as_output(outputs, "compile")  # the error naming what was given
    if isinstance(outputs, (list, tuple)) and pytree.numbers_only(outputs) and outputs:
        leaves, treedef = list(outputs), pytree.TreeDef("tuple", None, [pytree.LEAF] * len(outputs))
    else:
        leaves, treedef = pytree.flatten(outputs)
    if not leaves:
        raise UnsupportedError(f"compile: no outputs given in {outputs!r:.60}")
    outs = [_as_output(o, "compile") for o in leaves]
    ins = _resolve_inputs(outs, inputs, "compile")
    names = ["out"] if treedef.is_leaf else [f"out{i}" for i in range(len(outs))]
    return _compile_tree(
        outs, pytree.lists_as_tuples(treedef), names, ins, backend, f"compile({name})", primary=len(outs)
    )


def _value_and_grad_expr(expr, wrt, inputs, backend, grads=None, notes=None):
    """``grads`` (with their rule ``notes``): the gradients of ``expr``, when the caller took them."""
    expr = as_expr(expr)
    wrt_list, single = _wrt_list(wrt, "value_and_grad")
    if not wrt_list:
        raise UnsupportedError("value_and_grad: wrt is empty")
    autodiff._check_wrt(wrt_list, "value_and_grad")
    expr = autodiff.scalar_loss(expr, "value_and_grad")
    ins = _resolve_inputs([expr], inputs, "value_and_grad", extra=wrt_list)
    title = f"value_and_grad(wrt=[{', '.join(w.name for w in wrt_list)}])"
    primary = 1  # the value's statements first, then the gradient's (reverse mode)
    with building(title) as build:  # the differentiation and the compile are one build
        if grads is None:
            notes = autodiff.RuleNotes()  # this gradient's rule comments (nodes carry none)
            with build.measure("differentiate"):
                if autodiff.gradient_mode(expr, wrt_list) == "forward":
                    grads = autodiff.grad_forward(expr, wrt_list, notes)
                    primary = len(grads) + 1  # the tangents are computed beside the value
                else:
                    grads = autodiff.grad(expr, wrt_list, notes)
        names = ["value"] + [f"d_{w.name}" for w in wrt_list]
        if single:
            structure = "out[0], out[1]"
        else:
            inner = ", ".join(f"out[{i + 1}]" for i in range(len(wrt_list)))
            structure = f"out[0], ({inner}{',' if len(wrt_list) == 1 else ''})"
        compiled = compile_graph(
            [expr] + grads,
            ins,
            output_names=names,
            structure=structure,
            primary=primary,
            backend=backend or DEFAULT_BACKEND,
            title=title,
            notes=notes,
        )
    # what a call with arrays handled above the compiler needs (symgrad.dask_arrays, a runtime hook)
    compiled._differentiated = (list(wrt_list), single)
    return compiled


def value_and_grad(
    expr: ExprLike | Callable[..., Any] | None = None,
    wrt: Wrt | int | Sequence[int] | None = None,
    inputs: Expr | Sequence[Expr] | None = None,
    *,
    backend: str | None = None,
    argnums: int | Sequence[int] | None = None,
    has_aux: bool = False,
) -> Any:
    """Compile a scalar loss and its gradient: ``vg(*args) -> (value, grads)``.

    ``wrt`` as a list or tuple gives a tuple of gradients; a single symbol gives one.
    ``inputs`` gives the argument order; without it, the ``wrt`` symbols come first in
    ``wrt`` order, then the other symbols sorted by name (``.inputs`` shows it).
    Called with a Python function instead of an expression (or as a decorator with
    ``argnums``), the function is traced on symbolic stand-ins of its arguments; then
    the second positional argument is ``argnums``, as in JAX:
    ``sg.value_and_grad(fn, 1)`` differentiates ``fn``'s second parameter. Arguments may be
    pytrees (gradients come back in their structure); with ``has_aux=True`` the function
    returns ``(loss, aux)`` and the call ``((value, aux), grads)``."""
    if isinstance(expr, Expr) or isinstance(expr, (int, float)):
        if argnums is not None or has_aux:
            raise UnsupportedError(
                "value_and_grad: argnums and has_aux are for tracing Python functions; "
                "with an expression, pass wrt="
            )
        if wrt is None:
            raise UnsupportedError("value_and_grad(expr): say which symbols to differentiate, wrt=[...]")
        return _value_and_grad_expr(expr, wrt, inputs, backend)
    if expr is None or callable(expr):
        if inputs is not None:
            raise UnsupportedError(
                "value_and_grad: a traced function takes (fn, argnums); inputs= is for expressions "
                f"(the function's parameters are its inputs), got {inputs!r:.60}"
            )
        return _traced("value_and_grad", expr, wrt, argnums, has_aux, backend, "value_and_grad")
    if isinstance(expr, str):
        raise UnsupportedError(
            f"value_and_grad: got the string {expr!r:.60}; parse it first: "
            "sg.value_and_grad(sg.parse(text), wrt=[...])"
        )
    raise UnsupportedError(f"value_and_grad: expected an expression or a function, got {type(expr).__name__}")


def jacfwd(expr: Any = None, wrt: Any = None, **options: Any) -> Any:
    """``sg.jacobian(..., mode="forward")``: one JVP per input element (JAX's ``jacfwd``)."""
    return jacobian(expr, wrt, "forward", **options)


def jacrev(expr: Any = None, wrt: Any = None, **options: Any) -> Any:
    """``sg.jacobian(..., mode="reverse")``: one VJP per output element (JAX's ``jacrev``)."""
    return jacobian(expr, wrt, "reverse", **options)


def value_grad_and_hessian(
    expr: ExprLike, wrt: Wrt, inputs: Expr | Sequence[Expr] | None = None, *, backend: str | None = None
) -> Compiled:
    """Compile a scalar loss, its gradient and its Hessian into one function sharing every
    subexpression: ``vgh(*args) -> (value, grads, H)``, with grads and H shaped as
    ``sg.grad`` and ``sg.hessian`` give them (a single symbol: one array each; a list:
    a tuple of gradients and a tuple of tuples of Hessian blocks)."""
    expr = autodiff.scalar_loss(expr, "value_grad_and_hessian")
    wrt_list, single = _wrt_list(wrt, "value_grad_and_hessian")
    if not wrt_list:
        raise UnsupportedError("value_grad_and_hessian: wrt is empty")
    autodiff._check_wrt(wrt_list, "value_grad_and_hessian")
    ins = _resolve_inputs([expr], inputs, "value_grad_and_hessian", extra=wrt_list)
    notes = autodiff.RuleNotes()
    grads = autodiff.grad(expr, wrt_list, notes)
    blocks = autodiff.hessian(expr, wrt_list, notes)
    k = len(wrt_list)
    outputs = [expr] + grads + [b for row in blocks for b in row]
    names = (
        ["value"]
        + [f"d_{w.name}" for w in wrt_list]
        + [f"h_{a.name}_{b.name}" for a in wrt_list for b in wrt_list]
    )
    if single:
        structure = "out[0], out[1], out[2]"
    else:

        def tup(items):
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"

        g = tup([f"out[{1 + i}]" for i in range(k)])
        h = tup([tup([f"out[{1 + k + i * k + j}]" for j in range(k)]) for i in range(k)])
        structure = f"out[0], {g}, {h}"
    title = f"value_grad_and_hessian(wrt=[{', '.join(w.name for w in wrt_list)}])"
    return compile_graph(
        outputs,
        ins,
        output_names=names,
        structure=structure,
        primary=1,
        backend=backend or DEFAULT_BACKEND,
        title=title,
        notes=notes,
    )


# ---------------------------------------------------------------- checking


def check_grad(vg: Compiled, *args: Any, eps: float | None = None, **kwargs: Any) -> float:
    """Compare a compiled value_and_grad with central differences; return the max relative error.

    Central differences, (f(x+h) - f(x-h)) / 2h, are only a check: their truncation
    error shrinks like h**2 while round-off grows like eps/h, so the best h
    (about eps**(1/3) times the scale of x) still leaves ~1e-10 relative error in
    float64, and each input element costs two more evaluations of f. The
    symbolic gradient is exact up to round-off and costs a small constant times
    one evaluation, whatever the number of inputs.

    The error returned is ``max |g - numeric| / max(1, |numeric|)`` over every element
    of every ``wrt`` input; expect about 1e-9 or less for a correct float64 gradient."""
    if isinstance(vg, TracedFunction):
        vg, args = vg.for_check_grad(args, kwargs)
        kwargs = {}
    if not hasattr(vg, "inputs") or not hasattr(vg, "output_names") or vg.output_names[0] != "value":
        raise UnsupportedError("check_grad takes a function made by sg.value_and_grad")
    bound = vg._bind(args, kwargs)
    vg(*bound)  # the compiled function's own checks: a bad argument is an InputError naming it
    values = [np.array(a, dtype=s.dtype, copy=True) for a, s in zip(bound, vg.inputs)]
    value, grads = vg(*values)
    wrt_names = [n[2:] for n in vg.output_names[1:]]
    grads = pytree.flatten(grads)[0]  # a tuple of gradients, one, or a pytree of them
    worst = 0.0
    for name, g in zip(wrt_names, grads):
        k = vg.input_names.index(name)
        base = values[k]
        g = np.asarray(g, dtype=np.float64)
        numeric = np.zeros(base.shape)
        h_scale = np.finfo(base.dtype).eps ** (1 / 3)
        flat = base.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            h = h_scale * max(1.0, abs(float(old))) if eps is None else eps
            flat[i] = old + h
            plus = vg(*values)[0]
            flat[i] = old - h
            minus = vg(*values)[0]
            flat[i] = old
            numeric.reshape(-1)[i] = (plus - minus) / (2 * h)
        scale = np.maximum(1.0, np.abs(numeric))
        if g.size:
            worst = max(worst, float(np.max(np.abs(g - numeric) / scale)))
    return worst
