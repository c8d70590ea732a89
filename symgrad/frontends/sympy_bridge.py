"""SymPy in and out: ``from_sympy``, ``to_sympy``, ``latex``.

``from_sympy`` builds through the ordinary builders, so an imported expression
is the very node the builder API would make (``from_sympy(x*y + sin(x))`` is
``x*y + sg.sin(x)``), shared subexpressions become one node, and the builders'
rewrites apply (``x**2`` is ``square(x)``, ``x**-1`` is ``reciprocal(x)``).
SymPy's canonical forms are turned back into the ones a person writes:
``x + (-1)*y`` becomes ``x - y``, ``x * y**-1`` becomes ``x / y`` and
``x**(1/2)`` becomes ``sqrt(x)``. Numbers are weakly typed as Python numbers are:
they take the dtype of the expression they meet. ``pi``, ``E`` and other named
constants become float constants; ``oo``, ``-oo`` and ``zoo`` become inf,
``nan`` becomes nan.

Functions with no op of their own are written with ops, exactly:
``log(x, b) = log(x)/log(b)`` (SymPy does this itself), ``cot, sec, csc,
coth, sech, csch`` as reciprocals, ``erfc = 1 - erf``, ``asinh, acosh, atanh``
as logarithms (``ops/elementwise.py``'s composites), ``Heaviside(x, h0)`` and ``Piecewise``
as nested ``where``. Anything else (``Integral``, ``Derivative``, ``Sum``,
undefined functions, matrices, ``I``) raises ``UnsupportedError`` naming it.

``to_sympy`` maps a scalar graph (including a gradient graph) back; composites
come back as their maths (``sigmoid(x) = 1/(1 + exp(-x))``, ``relu = Max(x, 0)``,
``softplus = log(1 + exp(x))``), ``stop_gradient`` as the value it passes, and
reshapes, broadcasts and reductions of single elements as that element.

Both directions walk with an explicit stack, so deep expressions do not hit
Python's recursion limit.

A graph shares subexpressions; the SymPy expression and its printed form are
trees, which can be exponentially larger (``e = tanh(e) + 0.25*e`` twelve times
is 38 nodes and a tree of 28,000). Both sizes are measured first, by one pass
over the graph: ``to_sympy`` lets SymPy simplify as it builds only below
``EVALUATE_TREE`` tree nodes (and builds the same maths unevaluated above), and
``latex`` prints in one piece only below ``PRINT_TREE`` tree nodes and
``PRINT_DEPTH`` levels; above them it names the shared and the deep
subexpressions (``t_{1} = ...``, each term small and shallow, so neither SymPy's
simplification nor its recursive printer has much to do), and above
``MAX_TERMS`` terms it prints a one-line placeholder instead.
"""

import math
import sys

import numpy as np
import sympy
from sympy.functions.elementary.piecewise import ExprCondPair

from .. import ops
from ..errors import UnsupportedError
from ..graph import Expr, shape_str, topo_order
from ..symbol_constructors import tensor
from ..ops import elementwise as ew
from . import numpy_protocol as nprot

# ---------------------------------------------------------------- SymPy -> symgrad


def _number(node):
    """A SymPy number as a Python number (weakly typed when it meets an expression)."""
    if node is sympy.S.NaN:
        return math.nan
    if node in (sympy.S.Infinity, sympy.S.ComplexInfinity):
        return math.inf
    if node is sympy.S.NegativeInfinity:
        return -math.inf
    if node.is_Integer and -(2**63) <= int(node) < 2**63:
        return int(node)
    return float(node)


def _fold(build, args):
    out = args[0]
    for a in args[1:]:
        out = build(out, a)
    return out


def _power(base, exponent):
    """base ** exponent for a SymPy number exponent, in the form a person writes."""
    if exponent == sympy.S.Half:
        return ops.sqrt(base)
    if exponent.is_extended_negative:
        return ops.reciprocal(_power(base, -exponent))
    return ops.pow(base, _number(exponent))


def _convert_pow(node, args, memo):
    base, exponent = args
    if node.exp.is_Number:
        return _power(base, node.exp)
    return ops.pow(base, exponent)


def _convert_mul(node, args, memo):
    numerator, denominator = [], []
    negate = False
    for arg, value in zip(node.args, args):
        if arg.is_Pow and arg.exp.is_Number and arg.exp.is_extended_negative:
            denominator.append(_power(memo[arg.base], -arg.exp))
        elif arg.is_Rational and not arg.is_Integer:
            if abs(arg.p) != 1:
                numerator.append(abs(int(arg.p)))
            negate ^= arg.p < 0
            denominator.append(int(arg.q))
        elif arg is sympy.S.NegativeOne:
            negate = not negate
        else:
            numerator.append(value)
    if not numerator:
        numerator = [1.0]
    out = _fold(ops.mul, numerator)
    if denominator:
        out = ops.div(out, _fold(ops.mul, denominator))
    return ops.neg(out) if negate else out


def _convert_add(node, args, memo):
    # SymPy writes x - y as x + (-1)*y; give back the subtraction
    positive, negative = [], []
    for value in args:
        if isinstance(value, Expr) and value.op == "neg":
            negative.append(value.inputs[0])
        elif isinstance(value, (int, float)) and value < 0:
            negative.append(-value)
        else:
            positive.append(value)
    if positive:
        out = _fold(ops.add, positive)
    else:
        out, negative = ops.neg(ops.as_expr(negative[0])), negative[1:]
    for value in negative:
        out = ops.sub(out, value)
    return out


def _convert_piecewise(node, pairs, memo):
    # Piecewise((a, c1), (b, c2), (d, True)) -> where(c1, a, where(c2, b, d)); no True case -> nan
    out = math.nan
    for value, cond in reversed(pairs):
        value = float(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if cond is True:
            out = value
        elif cond is not False:
            out = ops.where(cond, value, out)
    return out


def _convert_heaviside(node, args, memo):
    x = args[0]
    h0 = args[1] if len(args) > 1 else 0.5
    return ew.heaviside(x, h0)


def _from_op(op):
    """The converter of ``op``'s SymPy function: its builder, folded over SymPy's n-ary Max, And ..."""
    if op.arity == 1:
        return op.builder
    return lambda *a: _fold(op.builder, a)


_FUNCTIONS = {
    # the ops: every SymPy function the op table gives (OpDef.sympy)
    **{op.sympy: _from_op(op) for op in ops.OPS.values() if op.elementwise and op.sympy is not None},
    # composites
    sympy.asinh: ew.arcsinh,
    sympy.acosh: ew.arccosh,
    sympy.atanh: ew.arctanh,
    sympy.cot: lambda x: ops.reciprocal(ops.tan(x)),
    sympy.sec: lambda x: ops.reciprocal(ops.cos(x)),
    sympy.csc: lambda x: ops.reciprocal(ops.sin(x)),
    sympy.coth: lambda x: ops.reciprocal(ops.tanh(x)),
    sympy.sech: lambda x: ops.reciprocal(ops.cosh(x)),
    sympy.csch: lambda x: ops.reciprocal(ops.sinh(x)),
    sympy.erfc: lambda x: 1.0 - ops.erf(x),
    ExprCondPair: lambda value, cond: (value, cond),
}

# constructs that need the SymPy node itself, not only their converted arguments
_STRUCTURAL = {
    sympy.Add: _convert_add,
    sympy.Mul: _convert_mul,
    sympy.Piecewise: _convert_piecewise,
    sympy.Heaviside: _convert_heaviside,
    sympy.Pow: _convert_pow,
}


def _describe(node):
    name = type(node).__name__
    if isinstance(node, sympy.core.function.AppliedUndef):
        return f"the undefined function {name}"
    if isinstance(node, sympy.MatrixBase) or getattr(node, "is_Matrix", False):
        return f"the matrix {name} (use scalar expressions, with shapes= for tensor symbols)"
    if node is sympy.I:
        return "the imaginary unit I (symgrad computes with real numbers)"
    return name


def _leaf(node, symbol):
    """The symgrad value of a SymPy leaf, or None when ``node`` is not a leaf."""
    if node.is_Symbol:
        return symbol(node)
    if node is sympy.I:
        raise UnsupportedError(f"from_sympy: {_describe(node)} is not supported")
    if node.is_Number or node is sympy.S.ComplexInfinity:
        return _number(node)
    if node.is_NumberSymbol:
        return float(node)
    if node is sympy.true:
        return True
    if node is sympy.false:
        return False
    return None


def _convert(expr, symbol):
    """Walk ``expr`` children first with an explicit stack; ``symbol`` maps a SymPy symbol."""
    memo = {}
    stack = [(expr, False)]
    while stack:
        node, ready = stack.pop()
        if node in memo:
            continue
        if ready:
            args = [memo[a] for a in node.args]
            structural = _STRUCTURAL.get(node.func)
            if structural is not None:
                memo[node] = structural(node, args, memo)
            else:
                memo[node] = _FUNCTIONS[node.func](*args)
            continue
        leaf = _leaf(node, symbol)
        if leaf is not None:
            memo[node] = leaf
            continue
        if node.func not in _STRUCTURAL and node.func not in _FUNCTIONS:
            raise UnsupportedError(f"from_sympy: {_describe(node)} is not supported (in {str(node)[:80]})")
        if node.func is sympy.log and len(node.args) != 1:
            raise UnsupportedError(f"from_sympy: log with {len(node.args)} arguments")
        stack.append((node, True))
        for a in reversed(node.args):
            if a not in memo:
                stack.append((a, False))
    return memo[expr]


def from_sympy(expr, shapes=None, dtypes=None):
    """A symgrad expression computing the SymPy expression ``expr``.

    SymPy symbols become symgrad symbols of the same name: float64 scalars, or
    tensors of the shape in ``shapes`` (``{"X": ("n", "d")}``) and dtype in
    ``dtypes``; the expression then applies elementwise with broadcasting."""
    shapes = dict(shapes or {})
    dtypes = dict(dtypes or {})
    if isinstance(expr, Expr):
        return expr
    if isinstance(expr, (bool, int, float)) or isinstance(expr, np.number):
        return ops.as_expr(float(expr) if not isinstance(expr, bool) else expr)
    if not isinstance(expr, sympy.Basic):
        raise UnsupportedError(f"from_sympy takes a SymPy expression, got {_describe(expr)}")

    def symbol(node):
        return tensor(node.name, shapes.get(node.name, ()), dtypes.get(node.name, "float64"))

    out = _convert(expr, symbol)
    if not isinstance(out, Expr):
        out = ops.as_expr(float(out) if not isinstance(out, bool) else out)
    return out


def size_expr(dim, dtype="float64"):
    """A size over symbolic dims (``n - 1``, ``n*d``) as a scalar node computing it."""
    return ops.cast(ops.as_expr(_convert(dim, lambda node: ops.count([node], dtype))), dtype)


nprot.install_compound_size(size_expr)  # x.size, len(x), ... of compound sizes (numpy_protocol)


# ---------------------------------------------------------------- symgrad -> SymPy


def _nice_number(value):
    """A float as the exact SymPy number a person would write, when there is one."""
    if math.isnan(value):
        return sympy.nan
    if math.isinf(value):
        return sympy.oo if value > 0 else -sympy.oo
    if value == math.pi:
        return sympy.pi
    if value == math.e:
        return sympy.E
    if value.is_integer():
        return sympy.Integer(int(value))
    fraction = sympy.Rational(value).limit_denominator(1000)
    if float(fraction) == value:
        return fraction
    return sympy.Float(value)


def _constant(node):
    value = node.value.reshape(())[()]
    if node.dtype == "bool":
        return sympy.true if value else sympy.false
    if node.dtype.startswith(("int", "uint")):
        return sympy.Integer(int(value))
    return _nice_number(float(value))


def _cast(node, x):
    src, dst = node.inputs[0].dtype, node.dtype
    if src == "bool" and dst != "bool":
        return sympy.Piecewise((1, x), (0, True))
    if dst == "bool":
        return sympy.Ne(x, 0) if src != "bool" else x
    if src.startswith("float") and not dst.startswith("float"):
        # numpy's float -> int conversion truncates toward zero
        return _trunc(x)
    return x


def _trunc(x):
    return ops.OPS["trunc"].to_sympy(x)


def _single(node, *args):
    return args[0]


def _one(node, *args):
    return sympy.Integer(1)


def _to_op(op):
    build = op.to_sympy or op.sympy
    return lambda n, *a: build(*a, **n.attrs)  # an attribute by name: polygamma's order n


_TO_SYMPY = {
    # the ops: each one's SymPy spelling from the op table (OpDef.to_sympy, or OpDef.sympy applied);
    # round (half to even) has none: to_sympy raises UnsupportedError for it
    **{name: _to_op(op) for name, op in ops.OPS.items() if op.elementwise and (op.to_sympy or op.sympy)},
    "cast": _cast,
    "dimsize": lambda n: sympy.Mul(*[sympy.Integer(d) if isinstance(d, int) else d for d in n.attrs["dims"]]),
    # on single elements, structure and reductions are the element itself
    "reshape": _single,
    "broadcast_to": _single,
    "transpose": _single,
    "getitem": _single,
    "slice_grad": _single,
    "concatenate": _single,
    "sum": _single,
    "max": _single,
    "min": _single,
    "prod": _single,
    "matmul": lambda n, a, b: a * b,
    "argmax_mask": _one,
    "argmin_mask": _one,
    "prod_others": _one,
}


def _is_single_element(node):
    return all(isinstance(d, int) and d == 1 for d in node.shape)


# what SymPy is asked to build or print in one piece (see the module docstring)
EVALUATE_TREE = 500
PRINT_TREE = 250
PRINT_DEPTH = 60
TERM_SIZE = 30  # a named term's own tree: at most about three times this
TERM_DEPTH = 12
MAX_TERMS = 300


def _check_scalar_graph(order, what):
    for node in order:
        if not _is_single_element(node):
            kind = f"the symbol {node.name!r}" if node.op == "symbol" else f"a {node.op!r} node"
            raise UnsupportedError(f"{what} handles scalar graphs; {kind} has shape {shape_str(node.shape)}")
        if node.op not in _TO_SYMPY and not ops.OPS[node.op].given:
            raise UnsupportedError(f"{what}: the op {node.op!r} has no SymPy form")


def _tree_sizes(order):
    """The size (capped) and depth of each node's expanded tree: one pass, children first."""
    cap = 10 * (EVALUATE_TREE + PRINT_TREE)
    size, depth = {}, {}
    for node in order:
        size[id(node)] = min(cap, 1 + sum(size[id(i)] for i in node.inputs))
        depth[id(node)] = 1 + max((depth[id(i)] for i in node.inputs), default=0)
    return size, depth


def to_sympy(expr, real=False):
    """The SymPy expression a scalar graph computes (gradient graphs included).

    Float symbols become ``sympy.Symbol(name)`` (``real=True`` adds that
    assumption), integer symbols ``Symbol(name, integer=True)``. SymPy's own
    canonical ordering recurses over the tree, and its automatic simplification
    can take time growing faster than the tree: when a graph is too deep for it,
    or its tree is larger than ``EVALUATE_TREE`` nodes, the expression is built
    unevaluated (same maths, SymPy's automatic simplifications not applied)."""
    expr = ops.as_expr(expr)
    order = topo_order([expr])
    _check_scalar_graph(order, "to_sympy")
    size, depth = _tree_sizes(order)
    if depth[id(expr)] < sys.getrecursionlimit() // 4 and size[id(expr)] <= EVALUATE_TREE:
        try:
            return _build_sympy(order, real)
        except RecursionError:
            pass
    with sympy.evaluate(False):
        return _build_sympy(order, real)


def _node_sympy(node, done, real):
    """The SymPy form of one node, its inputs' forms already in ``done``."""
    if node.op == "symbol":
        if node.dtype.startswith(("int", "uint")):
            return sympy.Symbol(node.name, integer=True)
        return sympy.Symbol(node.name, real=True) if real else sympy.Symbol(node.name)
    if node.op == "constant":
        return _constant(node)
    return _TO_SYMPY[node.op](node, *[done[id(i)] for i in node.inputs])


def _build_sympy(order, real):
    done = {}
    for node in order:
        done[id(node)] = _node_sympy(node, done, real)
    return done[id(order[-1])]


def latex(expr, **options):
    """LaTeX of a scalar graph through SymPy's printer (``options`` go to ``sympy.latex``).

    A graph whose expanded tree is larger than ``PRINT_TREE`` nodes or deeper than
    ``PRINT_DEPTH`` is printed with named terms, ``\\begin{aligned}`` the expression
    in terms of ``t_{1}, t_{2}, ...``, then each term's definition; one with more than
    ``MAX_TERMS`` terms is a one-line placeholder. Time and length grow with the
    number of nodes, never with the expanded tree."""
    expr = ops.as_expr(expr)
    order = topo_order([expr])
    _check_scalar_graph(order, "latex")
    size, depth = _tree_sizes(order)
    if size[id(expr)] <= PRINT_TREE and depth[id(expr)] <= PRINT_DEPTH:
        return sympy.latex(to_sympy(expr), **options)
    return _latex_with_terms(order, options)


def _named_nodes(order):
    """The nodes printed as terms of their own: those used more than once, and those
    whose own tree (with the terms below it counted as one symbol) is large or deep."""
    uses = {}
    for node in order:
        for i in node.inputs:
            uses[id(i)] = uses.get(id(i), 0) + 1
    named, size, depth = set(), {}, {}
    for node in order[:-1]:
        size[id(node)] = 1 + sum(1 if id(i) in named else size[id(i)] for i in node.inputs)
        depth[id(node)] = 1 + max((1 if id(i) in named else depth[id(i)] for i in node.inputs), default=0)
        if node.inputs and (uses[id(node)] > 1 or size[id(node)] > TERM_SIZE or depth[id(node)] > TERM_DEPTH):
            named.add(id(node))
    return named


def _term_prefix(order):
    """A letter no symbol of the graph is named (or is named with, as ``t_1``)."""
    names = {node.name for node in order if node.op == "symbol"}
    for letter in ("t", "u", "v", "w", "s", "r", "q", "p"):
        if not any(n == letter or n.startswith(letter + "_") for n in names):
            return letter
    return "T"  # a name ``T`` or ``T_...`` would be a 9th collision; shown, but not confused in print


def _latex_with_terms(order, options):
    named = _named_nodes(order)
    if len(named) > MAX_TERMS:
        depth = _tree_sizes(order)[1][id(order[-1])]
        return rf"\text{{(an expression of {len(order)} nodes, {depth} deep: too large to print)}}"
    prefix = _term_prefix(order)
    done, terms = {}, []
    for node in order:
        value = _node_sympy(node, done, False)
        if id(node) in named:
            symbol = sympy.Symbol(f"{prefix}_{len(terms) + 1}")
            terms.append((symbol, value))
            value = symbol
        done[id(node)] = value
    lines = [f"& {sympy.latex(done[id(order[-1])], **options)}"]
    for k, (symbol, value) in enumerate(terms):
        where = r"\text{where } " if k == 0 else ""
        lines.append(f"{where}{sympy.latex(symbol)} &= {sympy.latex(value, **options)}")
    return "\\begin{aligned}" + " \\\\ ".join(lines) + "\\end{aligned}"
