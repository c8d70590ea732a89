"""User-defined derivative rules, as JAX spells them: ``@sg.custom_vjp`` and ``@sg.custom_jvp``.

::

    @sg.custom_vjp
    def clip_gradient(x):
        return x

    def fwd(x):
        return x, ()                      # the value and the residuals bwd needs

    def bwd(res, g):
        return (np.clip(g, -1, 1),)       # one cotangent per argument (numpy code traces)

    clip_gradient.defvjp(fwd, bwd)

    @sg.custom_jvp
    def log1pexp(x):
        return sg.log1p(sg.exp(x))

    @log1pexp.defjvp
    def log1pexp_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return log1pexp(x), t * sg.sigmoid(x)

A call on symgrad values (the builder's expressions, or the values a traced function receives)
builds one node of the op ``custom`` (``symgrad/ops/custom.py``) whose value is the primal
result and whose derivative rules are the user's. A call on plain numbers or arrays runs the
function itself. The rules are written with symgrad ops (or numpy code, which traces), so they
are graphs like any other: derivatives of derivatives (Hessians) go through them.

Each decorator gives both modes. The mode the user did not write is the *transpose* of the one
they did: a VJP rule is linear in its cotangent ``g``, so the tangent it implies along ``t`` is
the gradient of ``<bwd(g), t>`` with respect to ``g``, which must not depend on ``g`` (else
the rule was not linear, an ``UnsupportedError``); a JVP rule likewise gives the adjoint as the
gradient of ``<jvp(t), g>`` with respect to ``t``. The ``g`` and ``t`` there are placeholder
symbols that never reach a compiled function.

``nondiff_argnums`` (JAX's) names arguments that are static Python values (hashable): they
get no derivative, come first in the rule's arguments (``bwd(*static, res, g)``,
``jvp(*static, primals, tangents)``) and are passed to the function as they are.
"""

import functools
import itertools
import inspect

from .autodiff import NoForwardRule, grad, zeros
from .errors import ShapeError, UnsupportedError
from .graph import Expr, is_float, new_node, shape_str, topo_order
from .ops import as_expr, custom_call, sum as sum_over
from . import pytree

_placeholders = itertools.count()


def _placeholder(like):
    """A fresh symbol shaped like ``like`` (a cotangent or tangent being transposed); it never
    reaches a compiled function (``_transposed`` checks the result is free of it)."""
    return new_node(
        "symbol", (), {"name": f"custom_placeholder_{next(_placeholders)}"}, like.shape, like.dtype
    )


class _Custom:
    """What a decorated function shares: the function, its rule, and the call."""

    kind = ""

    def __init__(self, fun, nondiff_argnums=()):
        if not callable(fun):
            raise UnsupportedError(f"{self.kind}: the decorated object must be a function, got {fun!r:.60}")
        if isinstance(nondiff_argnums, int):
            nondiff_argnums = (nondiff_argnums,)
        nondiff = tuple(nondiff_argnums)
        if not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in nondiff):
            raise UnsupportedError(
                f"{self.kind}: nondiff_argnums must be non-negative ints, got {nondiff_argnums!r}"
            )
        self.fun = fun
        self.nondiff_argnums = tuple(sorted(set(nondiff)))
        self.name = getattr(fun, "__qualname__", None) or type(fun).__name__
        functools.update_wrapper(self, fun)

    def __repr__(self):
        # part of the node's structural fingerprint: the same text in every process
        return f"<{self.kind} {self.name}>"

    def call_text(self, static, args):
        """How a call prints: the function's name and its arguments in order."""
        return f"{self.name}({', '.join(self._merge([repr(v) for v in static], args))})"

    def _split(self, args, kwargs):
        if kwargs:
            raise UnsupportedError(
                f"{self.kind} function {self.name}: pass its arguments by position, got keywords {sorted(kwargs)}"
            )
        try:
            inspect.signature(self.fun).bind(*args)
        except TypeError as e:
            raise UnsupportedError(f"{self.kind} function {self.name}: {e}") from None
        except ValueError:
            pass  # a builtin without a signature
        bad = [k for k in self.nondiff_argnums if k >= len(args)]
        if bad:
            raise UnsupportedError(
                f"{self.kind} function {self.name}: nondiff_argnums {bad} name no argument of a call "
                f"with {len(args)} arguments"
            )
        static = tuple(args[k] for k in self.nondiff_argnums)
        try:
            hash(static)
        except TypeError:
            raise UnsupportedError(
                f"{self.kind} function {self.name}: the non-differentiable arguments (nondiff_argnums) "
                f"must be hashable static values, got {tuple(type(s).__name__ for s in static)}"
            ) from None
        diff = [a for k, a in enumerate(args) if k not in self.nondiff_argnums]
        return static, diff

    def _merge(self, static, diff):
        """The call's arguments in order: the static ones at their positions."""
        args, s, d = [], iter(static), iter(diff)
        for k in range(len(static) + len(diff)):
            args.append(next(s) if k in self.nondiff_argnums else next(d))
        return args

    def _symbolic(self, diff):
        return any(isinstance(a, Expr) for a in diff)

    def _result(self, out, what):
        if isinstance(out, Expr):
            return out
        try:
            return as_expr(out)
        except UnsupportedError:
            raise UnsupportedError(
                f"{self.kind} function {self.name}: {what} must be one array (an expression), "
                f"got {type(out).__name__}"
            ) from None

    def _cotangent(self, value, x, index, what):
        """``value`` as the derivative for argument ``index`` (shaped like ``x``), or None."""
        if value is None:
            return None
        value = as_expr(value, like=x)
        if value.shape != x.shape:
            raise ShapeError(
                f"{self.kind} function {self.name}: {what} for argument {self._position(index)} has "
                f"shape {shape_str(value.shape)}, but the argument has shape {shape_str(x.shape)}"
            )
        return value

    def _position(self, index):
        """The position in the call of the ``index``-th differentiable argument."""
        return [k for k in range(index + len(self.nondiff_argnums) + 1) if k not in self.nondiff_argnums][
            index
        ]

    def _transposed(self, linear, placeholder, weight, what):
        """The gradient of ``sum(linear * weight)`` with respect to ``placeholder``: the transpose
        of the map ``placeholder -> linear`` applied to ``weight``."""
        if linear is None:
            return None
        total = sum_over(linear * weight) if linear.ndim or weight.ndim else linear * weight
        result = grad(total, placeholder)
        if any(n is placeholder for n in topo_order([result])):
            raise (NoForwardRule if self.kind == "custom_vjp" else UnsupportedError)(
                f"{self.kind} function {self.name}: its {what} is not linear in the "
                f"{'cotangent' if self.kind == 'custom_vjp' else 'tangent'}, so the other mode cannot "
                "be derived from it"
                + (" (a Hessian is taken in reverse mode twice instead)" if self.kind == "custom_vjp" else "")
            )
        return result


class custom_vjp(_Custom):
    """A function whose reverse-mode rule is the user's (JAX's ``jax.custom_vjp``):
    ``f.defvjp(fwd, bwd)`` with ``fwd(*args) -> (out, residuals)`` and
    ``bwd(*static, residuals, g) -> (cotangent per differentiable argument, ...)`` (None for a
    zero). Forward mode (a JVP, Hessians) is the transpose of ``bwd``."""

    kind = "custom_vjp"

    def __init__(self, fun, nondiff_argnums=()):
        super().__init__(fun, nondiff_argnums)
        self.fwd = self.bwd = None

    def defvjp(self, fwd, bwd):
        if not callable(fwd) or not callable(bwd):
            raise UnsupportedError(f"custom_vjp function {self.name}: defvjp(fwd, bwd) takes two functions")
        self.fwd, self.bwd = fwd, bwd
        return self

    def __call__(self, *args, **kwargs):
        static, diff = self._split(args, kwargs)
        if not self._symbolic(diff):
            return self.fun(*args)
        if self.fwd is None:
            raise UnsupportedError(
                f"custom_vjp function {self.name} has no rule: give it one with {self.name}.defvjp(fwd, bwd)"
            )
        diff = [as_expr(a) for a in diff]
        pair = self.fwd(*self._merge(static, diff))
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise UnsupportedError(
                f"custom_vjp function {self.name}: fwd must return a pair (out, residuals), "
                f"got {type(pair).__name__}"
            )
        out = self._result(pair[0], "fwd's output")
        if not is_float(out.dtype) or not any(is_float(a.dtype) for a in diff):
            return out
        leaves, tree = pytree.flatten(pair[1])
        try:
            leaves = [as_expr(leaf) for leaf in leaves]
        except UnsupportedError as e:
            raise UnsupportedError(
                f"custom_vjp function {self.name}: fwd's residuals must be arrays or expressions: {e}"
            ) from None
        return custom_call(self, diff, out, leaves, static, tree)

    def _cotangents(self, node, g):
        n = node.attrs["n"]
        residuals = pytree.unflatten(node.attrs["tree"], list(node.inputs[n + 1 :]))
        cts = self.bwd(*node.attrs["static"], residuals, g)
        if not isinstance(cts, (tuple, list)) or len(cts) != n:
            raise UnsupportedError(
                f"custom_vjp function {self.name}: bwd must return a tuple of {n} cotangent(s), one per "
                f"differentiable argument, got "
                + (f"{len(cts)}" if isinstance(cts, (tuple, list)) else f"a {type(cts).__name__}")
            )
        return cts

    def vjp_input(self, node, index, g):
        x = node.inputs[index]
        return self._cotangent(self._cotangents(node, g)[index], x, index, "bwd's cotangent")

    def jvp_input(self, node, index, t):
        out = node.inputs[node.attrs["n"]]
        g = _placeholder(out)
        ct = self._cotangent(self._cotangents(node, g)[index], node.inputs[index], index, "bwd's cotangent")
        return self._transposed(ct, g, t, "bwd")


class custom_jvp(_Custom):
    """A function whose forward-mode rule is the user's (JAX's ``jax.custom_jvp``):
    ``f.defjvp(rule)`` with ``rule(*static, primals, tangents) -> (out, tangent_out)``, linear in
    the tangents. Reverse mode (gradients, Hessians) is its transpose."""

    kind = "custom_jvp"

    def __init__(self, fun, nondiff_argnums=()):
        super().__init__(fun, nondiff_argnums)
        self.rule = None

    def defjvp(self, rule):
        if not callable(rule):
            raise UnsupportedError(f"custom_jvp function {self.name}: defjvp(rule) takes a function")
        self.rule = rule
        return rule

    def __call__(self, *args, **kwargs):
        static, diff = self._split(args, kwargs)
        if not self._symbolic(diff):
            return self.fun(*args)
        if self.rule is None:
            raise UnsupportedError(
                f"custom_jvp function {self.name} has no rule: give it one with @{self.name}.defjvp"
            )
        diff = [as_expr(a) for a in diff]
        out = self._result(self.fun(*self._merge(static, diff)), "the output")
        if not is_float(out.dtype) or not any(is_float(a.dtype) for a in diff):
            return out
        return custom_call(self, diff, out, (), static, None)

    def _tangent_out(self, node, index, t):
        n = node.attrs["n"]
        primals = tuple(node.inputs[:n])
        tangents = tuple(t if k == index else zeros(p.shape, p.dtype) for k, p in enumerate(primals))
        pair = self.rule(*node.attrs["static"], primals, tangents)
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise UnsupportedError(
                f"custom_jvp function {self.name}: the jvp rule must return a pair (out, tangent_out), "
                f"got {type(pair).__name__}"
            )
        out = node.inputs[n]
        tangent = pair[1]
        if tangent is None:
            return None
        tangent = as_expr(tangent, like=out)
        if tangent.shape != out.shape:
            raise ShapeError(
                f"custom_jvp function {self.name}: the jvp rule's tangent_out has shape "
                f"{shape_str(tangent.shape)}, but the output has shape {shape_str(out.shape)}"
            )
        return tangent

    def jvp_input(self, node, index, t):
        return self._tangent_out(node, index, t)

    def vjp_input(self, node, index, g):
        x = node.inputs[index]
        t = _placeholder(x)
        return self._transposed(self._tangent_out(node, index, t), t, g, "jvp rule")
