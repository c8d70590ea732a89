"""Drawing a graph: ``to_dot`` returns Graphviz DOT text, ``draw`` renders it with ``dot``.

Each node of the DAG appears once, so a shared subexpression is one box with
several arrows leaving it (drawn bold, with its number of users). Given several
outputs, the nodes the first output needs are the forward graph (white); nodes
only the other outputs need (the gradient part of ``[loss, *sg.grad(loss, wrt)]``)
are filled blue. Symbols are boxes, constants grey text, outputs dashed labels.
No Python package is needed for the text; rendering needs the ``dot`` program.
"""

import os
import shutil
import subprocess

from .errors import UnsupportedError
from .graph import Expr, shape_str, topo_order
from .ops import as_expr
from .ops.registry import OPS
from .printing import expr_str

_LABEL_CHARS = 40
_GRADIENT_FILL = "#cfe2ff"


def _quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _label(node):
    if node.op == "symbol":
        text = node.name
    elif node.op == "constant":
        text = expr_str(node)
    else:
        extras = [
            f"{k}={v}"
            for k, v in sorted(node.attrs.items())
            if k not in ("out_shape", "requires", "key", "shape")
        ]
        text = node.op + (f" [{', '.join(extras)}]" if extras else "")
    if len(text) > _LABEL_CHARS:
        text = text[: _LABEL_CHARS - 3] + "..."
    return text + ("" if not node.shape else f"\n{shape_str(node.shape)}")


def to_dot(outputs, names=None):
    """Graphviz DOT text of the graph computing ``outputs`` (an expression or a list of them).

    ``names`` labels the outputs (default ``out0, out1, ...``, or ``out`` for one).
    With several outputs, nodes needed only by outputs after the first are shaded
    as gradient nodes. Render with ``dot -Tsvg graph.dot -o graph.svg`` or ``sg.draw``.
    """
    single = isinstance(outputs, Expr) or not isinstance(outputs, (list, tuple))
    outputs = [as_expr(o) for o in ([outputs] if single else outputs)]
    if names is None:
        names = ["out"] if len(outputs) == 1 else [f"out{i}" for i in range(len(outputs))]
    if len(names) != len(outputs):
        raise UnsupportedError(f"to_dot: {len(names)} names for {len(outputs)} outputs")
    order = topo_order(outputs)
    forward = {id(n) for n in topo_order(outputs[:1])}
    number = {id(n): i for i, n in enumerate(order)}
    users = {}
    for node in order:
        for inp in node.inputs:
            users[id(inp)] = users.get(id(inp), 0) + 1
    for out in outputs:
        users[id(out)] = users.get(id(out), 0) + 1

    lines = [
        "digraph symgrad {",
        "  rankdir=BT;",
        '  node [fontname="Helvetica", fontsize=11, shape=ellipse];',
        "  edge [arrowsize=0.6];",
    ]
    for node in order:
        label = _label(node)
        style = []
        if node.op == "symbol":
            style.append("shape=box")
        elif node.op == "constant":
            style.append('shape=plaintext, fontcolor="#666666"')
        if id(node) not in forward:
            style.append(f'style=filled, fillcolor="{_GRADIENT_FILL}"')
        if users.get(id(node), 0) > 1:
            style.append("penwidth=2.5")
            label += f"\n(used {users[id(node)]}x)"
        lines.append(
            f"  n{number[id(node)]} [label={_quote(label)}{', ' if style else ''}{', '.join(style)}];"
        )
    for node in order:
        for k, inp in enumerate(node.inputs):
            port = f' [label="{k}", fontsize=9]' if len(node.inputs) > 1 and node.op in _ORDERED else ""
            lines.append(f"  n{number[id(inp)]} -> n{number[id(node)]}{port};")
    for i, (name, out) in enumerate(zip(names, outputs)):
        lines.append(f"  o{i} [label={_quote(name)}, shape=note, style=dashed];")
        lines.append(f"  n{number[id(out)]} -> o{i} [style=dashed];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# operand order matters for these, so their edges are numbered: the elementwise ops of the
# table that are not commutative, and these
_ORDERED = {n for n, op in OPS.items() if op.elementwise and op.arity >= 2 and not op.commutative} | {
    "matmul",
    "concatenate",
    "stack",
    "dot",
    "outer",
}


def draw(outputs, path, names=None):
    """Render ``to_dot(outputs)`` to ``path`` (format from its suffix: .svg, .png, .pdf, .dot).

    Needs the Graphviz ``dot`` program for anything but ``.dot``; without it,
    raises ``UnsupportedError`` saying how to install it. Returns ``path``.
    """
    text = to_dot(outputs, names)
    fmt = os.path.splitext(str(path))[1].lstrip(".").lower() or "svg"
    if fmt in ("dot", "gv"):
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return path
    dot = shutil.which("dot")
    if dot is None:
        raise UnsupportedError(
            f"sg.draw needs the Graphviz 'dot' program to write {path!r}, and it is not on PATH. "
            "Install Graphviz (apt install graphviz, brew install graphviz, conda install graphviz, "
            "or https://graphviz.org/download/), or save the text of sg.to_dot(expr) to a .dot file "
            "and render it elsewhere"
        )
    result = subprocess.run(
        [dot, f"-T{fmt}", "-o", str(path)], input=text.encode(), capture_output=True, check=False
    )
    if result.returncode != 0:
        raise UnsupportedError(
            f"dot could not render {path!r} as {fmt}: {result.stderr.decode(errors='replace').strip()}"
        )
    return path
