"""Order and names: which statements the generated function has, in which order, called what."""

import keyword

import sympy

from symgrad.graph import topo_order

RESERVED = {"np", "numba", "math", "_rt", "_cv", "_ndarray", "kernel", "call", "out", "float", "int",
            "bool", "range", "len", "type", "max", "min", "abs", "sum", "print", "object"}


def schedule(outputs, primary):
    """Nodes to compute, inputs before users: everything the first ``primary`` outputs
    need (the forward part), then what only the others need (the backward part)."""
    forward = topo_order(outputs[:primary])
    seen = {id(n) for n in forward}
    backward = [n for n in topo_order(outputs) if id(n) not in seen]
    return forward, backward


def identifier(name):
    """A safe Python identifier for a user-supplied name."""
    ident = "".join(c if (c.isalnum() or c == "_") else "_" for c in str(name))
    if not ident or ident[0].isdigit():
        ident = "v_" + ident
    if keyword.iskeyword(ident) or ident in RESERVED or ident.startswith("dim_") or ident.startswith("_"):
        ident = "v_" + ident.lstrip("_")
    return ident


class Namer:
    """Stable, unique, readable names derived from the expression (``sin_x``, ``mul_x_y``)."""

    def __init__(self):
        self.taken = set(RESERVED)
        self.counts = {}

    def claim(self, base):
        base = identifier(base) if base else "t"
        name = base
        k = self.counts.get(base, 1)
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.counts[base] = k
        self.taken.add(name)
        return name

    def derive(self, node, input_names):
        short = [n for n in input_names if n and len(n) <= 8 and n.isidentifier()]
        if node.inputs and len(short) == len(node.inputs) and len(node.inputs) <= 2:
            candidate = "_".join([node.op] + short)
            if len(candidate) <= 20:
                return self.claim(candidate)
        return self.claim(node.op)


def dim_text(dim):
    """A dimension as code: ints as literals, named dims as ``dim_n`` variables."""
    if isinstance(dim, int):
        return str(dim)
    renamed = dim.xreplace({s: sympy.Symbol("dim_" + s.name) for s in dim.free_symbols})
    return f"({renamed})" if not renamed.is_Symbol else str(renamed)


def shape_text(shape):
    dims = [dim_text(d) for d in shape]
    return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"


def product_text(dims):
    if not dims:
        return "1"
    return " * ".join(dim_text(d) for d in dims)
