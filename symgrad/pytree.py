"""Pytrees, as JAX has them: nested tuples, lists, dicts, namedtuples and dataclasses of leaves.

``flatten(tree)`` gives the leaves in JAX's order (a dict's keys sorted, a dataclass's fields
in declaration order, ``None`` an empty subtree) and a ``TreeDef`` that ``unflatten`` fills
with new leaves, so a gradient comes back in the structure of its parameter. Anything else is
a leaf (an array, a number, an Expr, a string).

One difference from JAX, kept from symgrad's earlier tracing, for a traced function's
arguments only (``numbers_leaf=True``): a list or tuple holding only plain numbers (nested or
not) is one leaf, read as an array where it is differentiated (and a tuple of ints, such as a
shape, stays a static value).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

_NUMBERS = (int, float, np.integer, np.floating)


def numbers_only(value: Any) -> bool:
    """A list or tuple (nested or not) of plain numbers, which is one leaf, not a subtree."""
    if not isinstance(value, (list, tuple)) or _is_namedtuple(value):
        return False
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)) and not _is_namedtuple(v):
            stack.extend(v)
        elif isinstance(v, bool) or not isinstance(v, _NUMBERS):
            return False
    return True


def _is_namedtuple(value):
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


class TreeDef:
    """The structure of a pytree: a node kind, its static data and its children's TreeDefs."""

    __slots__ = ("kind", "data", "children", "num_leaves")

    def __init__(self, kind, data=None, children=()):
        self.kind = kind  # "leaf", "none", "tuple", "list", "dict", "namedtuple", "dataclass"
        self.data = data  # dict keys, the namedtuple or dataclass type (with its field names)
        self.children = tuple(children)
        self.num_leaves = 1 if kind == "leaf" else sum(c.num_leaves for c in self.children)

    def __eq__(self, other):
        return isinstance(other, TreeDef) and (self.kind, self.data, self.children) == (
            other.kind,
            other.data,
            other.children,
        )

    def __hash__(self):
        return hash((self.kind, self.data, self.children))

    def __repr__(self):
        if self.kind == "leaf":
            return "*"
        if self.kind == "none":
            return "None"
        inner = [repr(c) for c in self.children]
        if self.kind == "dict":
            return "{" + ", ".join(f"{k!r}: {c}" for k, c in zip(self.data, inner)) + "}"
        if self.kind in ("namedtuple", "dataclass"):
            names = self.data[1]
            return f"{self.data[0].__name__}(" + ", ".join(f"{n}={c}" for n, c in zip(names, inner)) + ")"
        if self.kind == "list":
            return "[" + ", ".join(inner) + "]"
        return "(" + ", ".join(inner) + ("," if len(inner) == 1 else "") + ")"

    @property
    def is_leaf(self) -> bool:
        return self.kind == "leaf"


LEAF = TreeDef("leaf")


def _children(tree, numbers_leaf):
    """(kind, data, children, labels) of a pytree node, or None for a leaf. ``labels`` name each
    child (dict keys, field names, indices) for the leaves' symbol names."""
    if tree is None:
        return "none", None, (), ()
    if isinstance(tree, dict):
        try:
            keys = tuple(sorted(tree))
        except TypeError:
            keys = tuple(tree)
        return "dict", keys, [tree[k] for k in keys], keys
    if _is_namedtuple(tree):
        fields = tuple(type(tree)._fields)
        return "namedtuple", (type(tree), fields), list(tree), fields
    if isinstance(tree, (list, tuple)):
        if numbers_leaf and numbers_only(tree):
            return None
        kind = "list" if isinstance(tree, list) else "tuple"
        return kind, None, list(tree), tuple(range(len(tree)))
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        fields = tuple(f.name for f in dataclasses.fields(tree) if f.init)
        return "dataclass", (type(tree), fields), [getattr(tree, n) for n in fields], fields
    return None


def flatten_with_paths(
    tree: Any, numbers_leaf: bool = False
) -> tuple[list[Any], list[tuple[Any, ...]], TreeDef]:
    """The leaves, each leaf's path (the keys, fields and indices leading to it) and the TreeDef.
    ``numbers_leaf``: a list or tuple of plain numbers is one leaf (a traced function's arguments)."""
    leaves, paths = [], []

    def walk(node, path):
        parts = _children(node, numbers_leaf)
        if parts is None:
            leaves.append(node)
            paths.append(path)
            return LEAF
        kind, data, children, labels = parts
        return TreeDef(kind, data, [walk(c, path + (label,)) for c, label in zip(children, labels)])

    treedef = walk(tree, ())
    return leaves, paths, treedef


def flatten(tree: Any, numbers_leaf: bool = False) -> tuple[list[Any], TreeDef]:
    """The leaves of ``tree`` in JAX's order, and its structure."""
    leaves, _, treedef = flatten_with_paths(tree, numbers_leaf)
    return leaves, treedef


def unflatten(treedef: TreeDef, leaves: Any) -> Any:
    """The pytree of ``treedef``'s structure holding ``leaves`` (in flatten's order)."""
    it = iter(leaves)

    def build(td):
        if td.kind == "leaf":
            return next(it)
        if td.kind == "none":
            return None
        items = [build(c) for c in td.children]
        if td.kind == "tuple":
            return tuple(items)
        if td.kind == "list":
            return items
        if td.kind == "dict":
            return dict(zip(td.data, items))
        if td.kind == "namedtuple":
            return td.data[0](*items)
        return td.data[0](**dict(zip(td.data[1], items)))

    return build(treedef)


def prefix_leaves(prefix: Any, tree: Any, is_value: Any, numbers_leaf: bool = False) -> list[Any]:
    """One value per leaf of ``tree``, read from ``prefix``, a tree prefix of it (as JAX reads
    ``in_axes``): where ``is_value(prefix)`` it applies to the whole subtree, else the prefix's
    node must match the tree's (kind and keys) and each child gives its own subtree's values.
    Raises ValueError naming the path where they differ."""
    out = []
    stack = [(prefix, tree, ())]
    while stack:
        p, t, path = stack.pop()
        if is_value(p):
            out.extend([p] * flatten(t, numbers_leaf)[1].num_leaves)
            continue
        mine, theirs = _children(p, False), _children(t, numbers_leaf)
        if mine is None or theirs is None or mine[:2] != theirs[:2] or len(mine[2]) != len(theirs[2]):
            where = "".join(f"[{k!r}]" for k in path) or "the top level"
            raise ValueError(
                f"at {where} the axes {p!r:.60} do not match the structure of the value ({_what_tree(t)})"
            )
        for label, pc, tc in reversed(list(zip(theirs[3], mine[2], theirs[2]))):
            stack.append((pc, tc, path + (label,)))
    return out


def _what_tree(t):
    return repr(flatten(t)[1]) if not hasattr(t, "shape") else f"an array of shape {tuple(t.shape)}"


def tree_map(fn: Any, tree: Any) -> Any:
    leaves, treedef = flatten(tree)
    return unflatten(treedef, [fn(leaf) for leaf in leaves])


def lists_as_tuples(treedef: TreeDef) -> TreeDef:
    """``treedef`` with every list node a tuple (the expression API returns tuples)."""
    if treedef.kind == "leaf":
        return treedef
    kind = "tuple" if treedef.kind == "list" else treedef.kind
    return TreeDef(kind, treedef.data, [lists_as_tuples(c) for c in treedef.children])


def structure_code(treedef: TreeDef, names: list[str]) -> str | None:
    """Python source building ``treedef`` from the leaf expressions ``names`` (in order), for a
    generated entry's return statement; None when it needs a type the generated module cannot
    name (a namedtuple or dataclass) or a dict key that is not a str or int."""
    it = iter(names)

    def code(td):
        if td.kind == "leaf":
            return next(it)
        if td.kind == "none":
            return "None"
        if td.kind in ("namedtuple", "dataclass"):
            raise _NotCode
        items = [code(c) for c in td.children]
        if td.kind == "list":
            return "[" + ", ".join(items) + "]"
        if td.kind == "dict":
            if not all(type(k) in (str, int) for k in td.data):
                raise _NotCode
            return "{" + ", ".join(f"{k!r}: {v}" for k, v in zip(td.data, items)) + "}"
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"

    try:
        return code(treedef)
    except _NotCode:
        return None


class _NotCode(Exception):
    pass
