"""Batching on the graph: the pass under ``sg.vmap``.

``batch(outputs, mapped, size)`` rebuilds the graph of ``outputs`` for a whole batch of
examples at once: the nodes in ``mapped`` (one example's stand-in symbols) are replaced by
their batched values (the batch as a new leading axis of the symbolic or concrete ``size``), and
every node that reads a batched value is rebuilt by its op's batching rule (``OpDef.batch``),
which gives the node's value for every example, batch axis first. Nodes that read no batched
value stay as they are (computed once, not per example). So one graph, one compile, serves
every batch size; nothing loops over examples in Python.

Like autodiff, the pass knows no op: it asks the op table. An op's ``batch`` is its rule, or
a string saying why vmap refuses it, or None for the generic rule of its traits:

- an elementwise op broadcasts: a batched operand of lower rank than the result gets unit
  axes after its batch axis, so numpy's right-aligned broadcasting lines the examples up;
- an op along ``attrs["axes"]`` (the reductions, argmax masks, prod_others) shifts its axes by
  one past the batch axis.
"""

from __future__ import annotations

from .errors import UnsupportedError
from .graph import Expr, dims_equal, shape_str, topo_order
from .ops.registry import OPS, make
from .ops.structure import reshape


def _elementwise(node, args, batched):
    rank = node.ndim
    lined_up = []
    for a, b in zip(args, batched):
        if b and a.ndim - 1 < rank:
            a = reshape(a, a.shape[:1] + (1,) * (rank - a.ndim + 1) + a.shape[1:])
        lined_up.append(a)
    return make(node.op, lined_up, **node.attrs)


def _along_axes(node, args, batched):
    attrs = dict(node.attrs)
    attrs["axes"] = tuple(a + 1 for a in attrs["axes"])
    return make(node.op, args, **attrs)


def rule_for(opdef):
    """The op's batching rule (a callable), the reason vmap refuses it (a string), or None."""
    rule = opdef.batch
    if rule is None and opdef.elementwise:
        return _elementwise
    if rule is None and opdef.along_axes:
        return _along_axes
    return rule


def _same_shape(a, b):
    return len(a) == len(b) and all(x == y or dims_equal(x, y) for x, y in zip(a, b))


def batch(outputs: list[Expr], mapped: dict[int, Expr], size) -> list[Expr | None]:
    """Each output for the whole batch (``size`` first), or None where it reads no mapped node.
    ``mapped``: id(node) -> that node's batched value, of shape ``(size,) + node.shape``."""
    new = dict(mapped)
    for node in topo_order(list(outputs)):
        if id(node) in new or not node.inputs:
            continue
        batched = tuple(id(i) in new for i in node.inputs)
        if not any(batched):
            continue
        rule = rule_for(OPS[node.op])
        if not callable(rule):
            reason = rule if isinstance(rule, str) else "it has no batching rule (OpDef.batch)"
            raise UnsupportedError(f"vmap: the op {node.op!r} cannot be batched: {reason}")
        args = [new.get(id(i), i) for i in node.inputs]
        out = rule(node, args, batched)
        expected = (size,) + node.shape
        if not _same_shape(out.shape, expected):
            raise AssertionError(
                f"the batching rule of {node.op!r} gave shape {shape_str(out.shape)}, "
                f"not {shape_str(expected)}"
            )
        new[id(node)] = out
    return [new.get(id(o)) for o in outputs]


__all__ = ["batch", "rule_for"]
