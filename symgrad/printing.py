"""Expressions as readable text (``repr``)."""

from . import graph
from .errors import SymgradError
from .frontends.sympy_bridge import latex
from .graph import shape_str, topo_order
from .ops.registry import OPS

_MAX_NODES = 400
_MAX_CHARS = 300


def _constant_str(node):
    v = node.value
    if v.ndim == 0:
        return repr(v.item())
    if v.size <= 6:
        return repr(v.tolist())
    return f"<constant {shape_str(v.shape)} {v.dtype}>"


def _key_str(key):
    parts = []
    for k in key:
        if k[0] == "n":
            parts.append("None")
        elif k[0] == "i":
            parts.append(str(k[1]))
        else:
            start, stop, step = ("" if v is None else str(v) for v in k[1:])
            parts.append(f"{start}:{stop}" + (f":{step}" if step else ""))
    return ", ".join(parts)


def expr_str(root):
    order = topo_order([root])
    if len(order) > _MAX_NODES:
        return f"<Expr {root.op} shape={shape_str(root.shape)} dtype={root.dtype}, {len(order)} nodes>"
    text = {}
    for node in order:
        args = [text[id(i)] for i in node.inputs]
        if node.op == "symbol":
            s, prec = node.name, 9
        elif node.op == "constant":
            s = _constant_str(node)
            prec = 3 if s.startswith("-") else 9  # binds like unary minus: (-2.0)**x
        elif OPS[node.op].infix:
            sym, prec = OPS[node.op].infix, OPS[node.op].precedence
            # comparisons chain in Python (a < b == c), so a comparison operand is parenthesised
            left, right = [
                a if p > prec or (p == prec and k == 0 and node.op != "pow" and prec > 0) else f"({a})"
                for k, (a, p) in enumerate(args)
            ]
            s = f"{left} {sym} {right}" if node.op != "pow" else f"{left}**{right}"
        elif node.op == "neg":
            a, p = args[0]
            s, prec = (f"-{a}" if p > 2 else f"-({a})"), 3
        elif OPS[node.op].show is not None:
            s, prec = OPS[node.op].show(node, [a for a, _ in args]), 9
        elif node.op == "getitem":
            a, p = args[0]
            s, prec = f"{a if p == 9 else '(' + a + ')'}[{_key_str(node.attrs['key'])}]", 9
        else:
            extras = []
            for name, value in sorted(node.attrs.items()):
                if name in ("out_shape", "requires") or (name == "keepdims" and not value):
                    continue
                if name == "axes" and "keepdims" in node.attrs:  # a reduction, spelt as built: sum(X, axis=1)
                    if node.inputs and tuple(value) == tuple(range(node.inputs[0].ndim)):
                        continue
                    name, value = "axis", value[0] if len(value) == 1 else value
                extras.append(f"{name}={shape_str(value) if name == 'shape' else value}")
            s = f"{node.op}({', '.join([a for a, _ in args] + extras)})"
            prec = 9
        if len(s) > _MAX_CHARS:
            s = f"<{node.op} {shape_str(node.shape)}>"
        text[id(node)] = (s, prec)
    return text[id(root)][0]


_MAX_LATEX_CHARS = 2000


def expr_latex(root):
    """LaTeX for Jupyter's ``_repr_latex_``: the maths of a scalar graph (through SymPy).

    Returns None (Jupyter then shows the text ``repr``) for tensors, for graphs
    SymPy cannot express, and for formulas too long to read.
    """
    if root.shape or len(topo_order([root])) > _MAX_NODES:
        return None
    try:
        text = latex(root)
    except SymgradError:
        return None
    if len(text) > _MAX_LATEX_CHARS:
        return None
    return f"$\\displaystyle {text}$"


# every Expr prints through these from here on (Expr.__repr__ and _repr_latex_ look them up)
graph.PRINTERS.update(text=expr_str, latex=expr_latex)
