"""The op table: one record per op holding its semantics and derivative rules.

An op is registered once with

- ``infer(inputs, attrs) -> (shape, dtype)``: the shape and dtype rule, raising
  ``ShapeError`` / ``UnsupportedError`` when the graph is built;
- ``impl(*arrays, **attrs)``: what the op computes, in numpy (used for constant
  folding and as the definition the backends must match);
- ``vjp``: one rule per input, ``rule(g, *inputs, out) -> Expr``, written in the
  graph language so that derivatives of derivatives come for free. ``None``
  for an input means the op is not differentiable in it (zero adjoint);
- ``jvp``: one rule per input, ``rule(t, *inputs, out) -> Expr``: the tangent of
  ``out`` contributed by the tangent ``t`` of that input (shaped like the input;
  the forward pass broadcasts the sum of contributions to ``out``'s shape).
  ``jvp=POINTWISE`` says the op is elementwise, so its VJP rules (a pointwise
  factor times the incoming value) map a tangent forward as well;
- ``note``: the one-line maths of the rule, shown as a comment in generated code.

An elementwise op's record also holds its traits, its spellings and its lowering
(``ops/elementwise.py``'s ``unary``/``binary`` fill them, one line per op), and every
frontend, pass and backend derives its table from them:

- traits: ``elementwise``, ``arity``, ``boolean`` (the result is bool: comparisons,
  logic, isfinite), ``libm`` (its scalar spelling is a call LLVM cannot vectorise, so a
  fused loop holding it runs at that call's pace), ``vector`` (the numba runtime has an
  arithmetic twin ``v<name>`` a loop can run on SIMD lanes: True, or a predicate of the node
  when only some operands have one, such as pow's constant exponents; ask ``on_lanes(node)``;
  "tile" (or a predicate's "tile"): the twin is a compiled kernel over a tile, ``v<name>_tile``);
- spellings: ``builder`` (the public ``sg.<name>``), ``parse`` (the names a formula
  calls it by), ``numpy`` (the numpy or scipy ufuncs it traces from: objects, or
  ``"scipy.special.<name>"`` looked up once scipy.special is loaded), ``sympy`` (the
  SymPy function it is, both ways: SymPy's arguments are the builder's), ``to_sympy``
  (``(*operands, **attrs) -> SymPy`` when it is not one SymPy function; with ``sympy``
  too, ``sympy`` is read from SymPy and ``to_sympy`` written);
- lowering: ``lower``, the expression template (``"np.exp({0})"``, ``"{0} + {1}"``,
  ``"_rt.erf({0})"``, ``"_rt.polygamma({n}, {0})"``) both backends' per-op lowering and
  fused loops format with the operands and the node's attributes by name (``_rt``
  is the backend's runtime module: ``numpy_runtime`` derives ``_rt.<name>`` from
  ``impl``; ``numba_runtime`` defines it, on scalars and arrays); ``scalar``, the
  template inside a fused loop when it differs.

Any op (elementwise or not) may give its lowering the same way: ``lower`` is a template or a
function ``(node, args) -> code`` (``args``: the operands' code; the node has the operands'
shapes and dtypes as ``node.inputs``), and ``lowerings={"numba": ..., "numpy": ...}`` gives one
backend's own spelling where it differs (numba's numpy lacks many keyword forms: call a
``_rt.<helper>`` written in ``codegen/numba_runtime.py``). The emitters need no edit for it.

Any op's record also holds the traits passes ask it for instead of keeping lists of op
names (``reduction``, ``along_axes``, ``linear``, ``bilinear``, ``moves_adjoint``,
``keeps_rows``, ``given``, ``needs_nonempty``, ``aliases``, ``index_operand``, ``infix`` and
``precedence``; see the fields), set by keyword where the op is registered.

``batch`` is how ``sg.vmap`` maps the op over a leading batch axis (``symgrad/batching.py``):
a rule ``(node, args, batched) -> Expr``, or a string saying why vmap refuses the op; left
None, an elementwise op broadcasts the batch axis and an op along ``attrs["axes"]`` shifts
its axes by one.
"""

import os
from dataclasses import dataclass, field, fields
from typing import Callable, Optional

import numpy as np
import sympy

from ..errors import UnsupportedError
from ..graph import Expr, new_node, as_dtype, as_shape, dim_product, is_float, size_of, concrete

OPS = {}

# jvp=POINTWISE: the op is elementwise and its VJP rules are pointwise factors, so the
# same rules carry a tangent forward (the result broadcasts to the output's shape)
POINTWISE = "pointwise"

# moves_adjoint=ALL: the VJP moves the adjoint to every input without reading a value
ALL = "all"

# Largest constant (in elements) that folding will materialise; ``arange`` of a concrete
# size is a constant up to this size too, and computed by the compiled function above it.
FOLD_LIMIT = 4096


def _max_constant_elements(default=10**6):
    text = os.environ.get("SYMGRAD_MAX_CONSTANT_ELEMENTS", "").strip()
    return int(text) if text.isdigit() else default


# The most elements symgrad itself computes into a constant while a graph is built: folding
# reads no more than this many (larger constant operands stay an op of the compiled function),
# and a rule that would build a larger constant (prod's second-derivative mask) refuses with
# UnsupportedError. Constants a user passes in are theirs and are not limited.
MAX_CONSTANT_ELEMENTS = _max_constant_elements()


@dataclass
class OpDef:
    name: str
    infer: Callable
    impl: Optional[Callable]
    vjp: tuple = ()
    vjp_variadic: Optional[Callable] = None
    note: str = ""
    commutative: bool = False
    doc: str = ""
    extra: dict = field(default_factory=dict)
    jvp: tuple = ()
    jvp_variadic: Optional[Callable] = None
    # traits, spellings and lowering (see the module docstring)
    elementwise: bool = False
    arity: Optional[int] = None
    boolean: bool = False
    libm: object = False  # True, or node -> bool (see calls_libm)
    vector: object = False  # True, "tile", or node -> either (see on_lanes)
    # the arithmetic twin holds for |x| up to a bound only (no Payne-Hanek reduction): the runtime's
    # v<name>_far(x) says x is beyond it, and a pass on lanes that met one runs again on libm
    lanes_range: bool = False
    # the numba runtime has a scalar arithmetic twin s<name> of float64 (a cached function it calls,
    # not inlined into the kernel: no type inference of its body) whose latency is below libm's
    # call: a rolled loop's body calls it (a recurrence x = f(sin x) waits on it every step)
    serial: bool = False
    # (other op, runtime function): a backend whose emitter says ``pairs`` computes this op and the
    # other of one operand in one call, ``_rt.<function>(x) -> (this, other)`` (``v<function>`` on
    # SIMD lanes): sin's ("cos", "sincos"), one argument reduction for both
    pair: tuple = ()
    builder: Optional[Callable] = None
    parse: tuple = ()
    numpy: tuple = ()
    sympy: object = None
    to_sympy: Optional[Callable] = None
    lower: object = (
        ""  # a template "np.exp({0})" (operands by position, attributes by name) or (node, args) -> code
    )
    lowerings: dict = field(default_factory=dict)  # backend name -> a lowering of that backend alone
    scalar: str = ""
    # traits of any op that passes ask the record for (instead of keeping a list of names)
    reduction: bool = False  # reduces over attrs["axes"]: each output element is one slice of x
    along_axes: bool = False  # works along attrs["axes"] (a reduction, argmax/argmin masks, prod_others)
    linear: bool = False  # linear in every input (a sum over rows may pass through it)
    bilinear: bool = False  # linear in each input when the other is fixed (mul, matmul)
    moves_adjoint: object = ()  # inputs whose VJP moves the adjoint, reading no value (ALL: all)
    keeps_rows: bool = (
        False  # the leading axis passes through when the input's does (decompose checks the rest)
    )
    given: bool = False  # its value is given to the kernel (an input or a constant), not computed
    needs_nonempty: bool = False  # a reduction with no value on an empty slice (max, min)
    aliases: bool = False  # its lowered value may share memory with an input or a constant (a view)
    index_operand: bool = False  # an operand holds index values the compiled kernel bounds-checks
    infix: str = ""  # its operator in printed expressions ("+", "@", "<", ...)
    precedence: int = 0  # the infix operator's binding strength in printed expressions
    # the node's value is one operand's, so the compiler computes nothing for it (stop_gradient,
    # custom): that operand's index, or the name of the attribute holding it
    value_of: object = None
    show: Optional[Callable] = None  # (node, operand texts) -> its printed text, when not op(operands, attrs)
    user: str = ""  # registered by a user (sg.register_op): the runtime attribute generated code calls
    # how sg.vmap maps the op over a leading batch axis: a rule (node, args, batched) -> Expr, where
    # args are the operands rebuilt (those with batched[i] carry the batch as a new leading axis)
    # and the result is node's value for every example, batch axis first; or a string, the reason
    # vmap refuses the op. None: the generic rule of its traits (symgrad/batching.py: elementwise
    # ops broadcast the batch axis, ops along attrs["axes"] shift them by one)
    batch: object = None
    # a node with several results (a loop, sg.scan): its own shape and dtype are nominal, each
    # result is a ``part`` node reading it. Autodiff keeps one adjoint (tangent) per result and asks
    # ``tuple_vjp(node, {result index: cotangent}, [whether each input needs its adjoint]) -> [adjoint
    # per input or None]`` (``tuple_jvp(node,
    # [tangent per input or None]) -> [tangent per result or None]``) once for all of them
    tuple_valued: bool = False
    tuple_vjp: Optional[Callable] = None
    tuple_jvp: Optional[Callable] = None
    # the node's tangent from every input's at once, ``jvp_joint(node, [tangent per input or
    # None]) -> tangent or None`` (None: sum the per-input rules' contributions as usual); for a
    # linear op whose contributions are blocks of the output, so the tangent is built in one piece
    # (concatenate: the concatenation of the tangents, not a sum of zero-padded blocks)
    jvp_joint: Optional[Callable] = None
    # the sum of several of this op's nodes in one piece, ``sum_joint([node, ...]) -> (sum, [the
    # nodes it took])`` or None: how reverse mode adds up the adjoints one input gets from its users
    # (slice_grad: rows written one each, xs[t]'s adjoints over a loop, become one stack of the rows,
    # O(T d), not T arrays of zeros with a row set added one by one, O(T^2 d))
    sum_joint: Optional[Callable] = None
    part: bool = False  # the node is result attrs["index"] of its tuple-valued operand

    def calls_libm(self, node):
        """Whether ``node``'s scalar spelling is a libm call (``libm``: True, or a predicate of the
        node: pow by a small integer is products)."""
        return bool(self.libm(node) if callable(self.libm) else self.libm)

    def on_lanes(self, node):
        """Whether ``node`` (of this op) has the numba runtime's arithmetic twin ``v<name>``, which a
        loop runs on SIMD lanes (``vector``: True, or a predicate of the node)."""
        return bool(self.vector(node) if callable(self.vector) else self.vector)

    def value_operand(self, node):
        """The operand whose value is ``node``'s (``value_of``), or None: ``node`` is computed."""
        k = self.value_of
        if k is None:
            return None
        return node.inputs[node.attrs[k] if isinstance(k, str) else k]

    def jvp_rule(self, index):
        """The JVP rule for input ``index``: callable(t, *inputs, out) or None."""
        if self.jvp == POINTWISE:
            return self.vjp_rule(index)
        if self.jvp_variadic is not None:
            rule = self.jvp_variadic
            return lambda t, *args: rule(index, t, *args)
        if index < len(self.jvp):
            return self.jvp[index]
        return None

    def vjp_rule(self, index):
        """The VJP rule for input ``index``: callable(g, *inputs, out) or None."""
        if self.vjp_variadic is not None:
            rule = self.vjp_variadic
            return lambda g, *args: rule(index, g, *args)
        if index < len(self.vjp):
            return self.vjp[index]
        return None


# the record's fields a registration sets by keyword (traits, spellings, lowering)
TRAITS = {f.name for f in fields(OpDef)} - {
    "name",
    "infer",
    "impl",
    "vjp",
    "note",
    "commutative",
    "doc",
    "extra",
    "jvp",
    "vjp_variadic",
    "jvp_variadic",
}


def register(
    name,
    infer,
    impl=None,
    vjp=(),
    *,
    vjp_variadic=None,
    jvp=(),
    jvp_variadic=None,
    note="",
    commutative=False,
    doc="",
    **extra,
):
    if name in OPS:
        raise RuntimeError(f"op {name!r} registered twice")
    if callable(vjp):
        vjp = (vjp,)
    if callable(jvp):
        jvp = (jvp,)
    traits = {k: extra.pop(k) for k in list(extra) if k in TRAITS}
    op = OpDef(
        name,
        infer,
        impl,
        tuple(vjp),
        vjp_variadic,
        note,
        commutative,
        doc,
        extra,
        jvp=jvp if jvp == POINTWISE else tuple(jvp),
        jvp_variadic=jvp_variadic,
        **traits,
    )
    OPS[name] = op
    return op


def _canonical_key(node):
    """The order of a commutative op's operands, from the operands alone (never from what was
    built first, so one expression is one node, and one text, in every process): constants
    last (so maximum(x, 0) and maximum(0, x) are one node), then shallower first, then by op,
    symbols by name, and last by the structural digest (``Expr.digest``)."""
    op = node.op
    return (op == "constant", node.height, op, node.attrs["name"] if op == "symbol" else "", node.digest)


# The rewrites applied as each node is built (symgrad.passes.simplify) build their results with
# the op builders, so they sit above this module: the pass installs itself here when it is
# imported (symgrad's __init__ imports it before any expression is built).
_rewrite = None


def install_rewrite(rewrite):
    """Let ``rewrite(op, inputs, attrs, shape, dtype)`` replace each node ``make`` builds
    (it returns a simpler equal node, or None)."""
    global _rewrite
    _rewrite = rewrite


def make(op, inputs, **attrs):
    """Build (or find) the node ``op(*inputs)``: infer, canonicalise, simplify, fold, intern."""
    opdef = OPS[op]
    inputs = list(inputs)
    if opdef.commutative:
        inputs.sort(key=_canonical_key)
    shape, dtype = opdef.infer(inputs, attrs)
    replaced = _rewrite(op, inputs, attrs, shape, dtype) if _rewrite is not None else None
    if replaced is not None:
        return replaced
    if (
        opdef.impl is not None
        and inputs
        and all(i.op == "constant" for i in inputs)
        and concrete(shape)
        and size_of(shape) <= FOLD_LIMIT
        and sum(i.value.size for i in inputs) <= MAX_CONSTANT_ELEMENTS
    ):
        with np.errstate(all="ignore"):
            value = opdef.impl(*[i.value for i in inputs], **attrs)
        return constant(np.asarray(value, dtype=dtype))
    return new_node(op, inputs, attrs, shape, dtype)


def constant(value, dtype=None):
    """A constant node holding a numpy array (a 0-d array for a scalar)."""
    if isinstance(value, Expr):
        return value
    arr = np.asarray(value)
    if dtype is not None:
        dtype = as_dtype(dtype)
    elif arr.dtype.kind == "f":
        dtype = arr.dtype.name if arr.dtype.name in ("float32", "float64") else "float64"
    elif arr.dtype.kind in "iu":
        dtype = arr.dtype.name
    elif arr.dtype.kind == "b":
        dtype = "bool"
    else:
        raise UnsupportedError(f"cannot embed a constant of dtype {arr.dtype} ({value!r:.60})")
    arr = np.array(arr, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return new_node("constant", (), {"value": arr}, tuple(int(d) for d in arr.shape), dtype)


def as_expr(value, like=None):
    """An Expr for ``value``. Python numbers are weakly typed: they take ``like``'s float dtype."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, (bool, np.bool_)):
        return constant(bool(value), "bool")
    if isinstance(value, (int, float)) and not isinstance(value, np.generic):
        if like is not None and is_float(like.dtype):
            return constant(value, like.dtype)
        if isinstance(value, int):
            if like is not None and like.dtype != "bool":
                return constant(value, like.dtype)
            return constant(value, "int64")
        return constant(value, "float64")
    if isinstance(value, (np.ndarray, np.generic, list, tuple)):
        return constant(value)
    if isinstance(value, sympy.Expr) and value.is_integer:
        # a size such as x.shape[0] used as a number: known when the compiled function is called
        dtype = (
            like.dtype
            if like is not None and is_float(like.dtype)
            else ("float64" if like is not None and like.dtype == "bool" else "int64")
        )
        return count([value], dtype)
    raise UnsupportedError(f"cannot use a {type(value).__name__} ({value!r:.60}) in an expression")


def count(dims, dtype="float64"):
    """The number of elements spanned by ``dims`` (a product of sizes), as a scalar of ``dtype``."""
    dims = as_shape(dims)
    total = dim_product(dims)
    if isinstance(total, int):
        return constant(total, dtype)
    return make("dimsize", [], dims=dims, dtype=dtype)


def zero_like(node):
    """A scalar zero of node's dtype (broadcasts wherever it is used)."""
    return constant(0, node.dtype)


def one_like(node):
    return constant(1, node.dtype)


register(
    "symbol",
    infer=lambda inputs, attrs: (attrs["shape"], attrs["dtype"]),
    doc="a named input",
    given=True,
    aliases=True,
)
register(
    "constant",
    infer=lambda inputs, attrs: (attrs["value"].shape, attrs["value"].dtype.name),
    doc="a value embedded in the graph",
    given=True,
    aliases=True,
)
