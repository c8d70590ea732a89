"""The generic op ``custom``: a call of a function whose derivative rules the user gave
(``symgrad.custom``: ``@sg.custom_vjp``, ``@sg.custom_jvp``).

A node ``custom(x_0, ..., x_{n-1}, out, r_0, ..., r_{k-1})`` has the differentiable arguments of
the call, then ``out`` (the primal result, built from the user's function with ordinary ops),
then the residuals a VJP rule keeps (the leaves of its ``attrs["tree"]``). Its value is
``out``'s (``value_of``: the compiler computes nothing for it); its derivative rules are the
ones of ``attrs["rule"]``, the decorated function (an object of ``symgrad.custom``, above
autodiff), asked for the adjoint (``vjp_input``) or tangent (``jvp_input``) of one argument.
``out`` and the residuals get no derivative through this node: a derivative reaches the
arguments only through the user's rule. ``attrs["static"]`` holds the call's
non-differentiable arguments (JAX's ``nondiff_argnums``). The rule is keyed by identity: two
decorated functions are two ops even when their text is the same.
"""

from .registry import make, register


def _infer(inputs, attrs):
    out = inputs[attrs["n"]]
    return out.shape, out.dtype


def _impl(*arrays, n, **attrs):
    return arrays[n]


def _vjp(index, g, *args):
    *inputs, node = args
    if index >= node.attrs["n"]:
        return None  # the primal result and the residuals: only the rule differentiates
    return node.attrs["rule"].vjp_input(node, index, g)


def _jvp(index, t, *args):
    *inputs, node = args
    if index >= node.attrs["n"]:
        return None
    return node.attrs["rule"].jvp_input(node, index, t)


def _show(node, args):
    """A call prints as the decorated function's call: ``log1pexp(x)``."""
    return node.attrs["rule"].call_text(node.attrs["static"], args[: node.attrs["n"]])


def custom_call(rule, args, out, residuals=(), static=(), tree=None):
    """The node of one call of ``rule`` (a decorated function) on the Exprs ``args``, valued ``out``."""
    return make("custom", [*args, out, *residuals], rule=rule, n=len(args), static=static, tree=tree)


register(
    "custom",
    infer=_infer,
    impl=_impl,
    vjp_variadic=_vjp,
    jvp_variadic=_jvp,
    note="the user's rule",
    doc="a call of a function with user-defined derivative rules (sg.custom_vjp, sg.custom_jvp)",
    value_of="n",
    aliases=True,
    show=_show,
    batch=(
        "sg.custom_vjp / sg.custom_jvp rules are Python functions written for one example's shapes; "
        "vmap cannot rebuild them for a batch"
    ),
)
