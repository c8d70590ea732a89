"""A user's own elementwise op: ``sg.register_op(name, fn, derivative=...)``.

::

    @numba.njit
    def bessel_j0(x):                      # a scalar function numba compiles
        ...

    sg.register_op("bessel_j0", bessel_j0, derivative=lambda x: -sg.bessel_j1(x))

``fn`` takes one or two float scalars and returns a float (a ``@numba.njit`` function, or a
plain Python function numba can compile). The op is declared in the op table like symgrad's
own elementwise ops (``ops/elementwise.py``'s ``unary`` / ``binary``): numpy broadcasting,
ints promoted to float64, float32 kept. ``derivative`` gives its partial derivative(s) as
symgrad expressions of the operands: one function for one operand, a pair for two (``None``:
not differentiable in that operand); a derivative may call other registered ops, so higher
derivatives work as far as those have rules. It is then

- a builder: the returned function, also ``sg.<name>``; traced code calls either;
- a parser name: ``sg.parse("name(x)")``;
- compiled into the kernel: the numba backend calls the function (compiled by numba into the
  kernel's machine code, ``_rt.<attribute>`` of ``codegen/user_ops.py``), the numpy backend the
  Python function vectorised;
- saved by ``save()``: the standalone file holds a copy of the function's source, when the
  function refers to no global but ``math``, ``numpy``/``np`` and ``numba`` (else ``save()``
  says which global it cannot copy).

Names go through ``graph.user_name`` (an identifier) and must not be taken by symgrad.
"""

import inspect
import sys

from .codegen import user_ops
from .errors import UnsupportedError
from .frontends import parse
from .graph import user_name
from .ops.elementwise import _float_binary, binary, unary
from .ops.registry import OPS


def _arity(fn, name):
    py = user_ops.python_function(fn)
    if not callable(py):
        raise UnsupportedError(f"register_op({name!r}): fn must be a function, got {type(fn).__name__}")
    try:
        params = list(inspect.signature(py).parameters.values())
    except (TypeError, ValueError):
        raise UnsupportedError(f"register_op({name!r}): cannot read the parameters of {fn!r:.60}") from None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) != len(params) or len(params) not in (1, 2):
        raise UnsupportedError(
            f"register_op({name!r}): fn must take one or two scalar arguments by position, "
            f"got the parameters ({', '.join(str(p) for p in params)})"
        )
    return len(params)


def _derivatives(derivative, arity, name):
    rules = (derivative,) if arity == 1 and (callable(derivative) or derivative is None) else derivative
    if not isinstance(rules, (tuple, list)) or len(rules) != arity:
        raise UnsupportedError(
            f"register_op({name!r}): derivative must be "
            + (
                "a function of the operand"
                if arity == 1
                else "a pair of functions (d/da, d/db) of the two operands"
            )
            + f", got {derivative!r:.60}"
        )
    for k, rule in enumerate(rules):
        if rule is None:
            continue
        if not callable(rule):
            raise UnsupportedError(
                f"register_op({name!r}): derivative {k} must be a function or None, got {type(rule).__name__}"
            )
        try:
            inspect.signature(rule).bind(*range(arity))
        except TypeError:
            raise UnsupportedError(
                f"register_op({name!r}): derivative {k} must take the op's {arity} operand(s), "
                f"its signature is {inspect.signature(rule)}"
            ) from None
        except ValueError:
            pass  # a builtin without a signature
    return rules


def _taken(name):
    package = sys.modules.get("symgrad")
    return name in OPS or name in parse.FUNCTIONS or name in parse.CONSTANTS or hasattr(package, name)


def register_op(name, fn, derivative, *, note=""):
    """Register ``fn`` (a ``@numba.njit`` scalar function of one or two floats) as the
    elementwise op ``name`` whose derivative is ``derivative`` (see the module docstring);
    returns its builder, which is also ``sg.<name>`` and a parser name."""
    name = user_name(name, "an op name", "register_op", error=UnsupportedError)
    if _taken(name):
        raise UnsupportedError(
            f"register_op: the name {name!r} is taken (an op, a symgrad function or a parser name)"
        )
    arity = _arity(fn, name)
    rules = _derivatives(derivative, arity, name)
    attr = user_ops.attribute(name, fn)
    impl = user_ops.vectorized(fn, arity)
    operands = ", ".join(f"{{{k}}}" for k in range(arity))
    spellings = dict(
        impl=impl, lower=f"_rt.{attr}({operands})", libm=True, numpy=(), parse=(name,), user=attr
    )
    note = note or f"the derivative given to register_op({name!r})"
    if arity == 1:
        (d,) = rules
        builder = unary(name, (lambda g, x, out: g * d(x)) if d else None, note, **spellings)
    else:
        vjp = tuple((lambda g, a, b, out, d=d: g * d(a, b)) if d else None for d in rules)
        builder = binary(name, vjp, note, float_only=True, infer=_float_binary, **spellings)
    builder.__doc__ = f"elementwise {name} (registered with sg.register_op)"
    user_ops.install(attr, name, fn, arity)
    parse.install_function(name, builder)
    return builder


def unregister_op(name):
    """Remove the op ``name`` registered with ``register_op`` (its builder, parser name and
    runtime function). Expressions built with it can no longer be compiled."""
    op = OPS.get(name)
    if op is None or not op.user:
        raise UnsupportedError(f"unregister_op: {name!r} is not an op registered with sg.register_op")
    del OPS[name]
    parse.remove_function(name)
    user_ops.remove(op.user)
