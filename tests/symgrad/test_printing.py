"""What a user looks at: repr of expressions, LaTeX for Jupyter, DOT drawings, print(compiled)."""

import re

import pytest
import sympy

import symgrad as sg


def _dot_nodes(text):
    """{node id: attribute text} of the DOT node statements."""
    return dict(re.findall(r"^\s*(n\d+) \[(.*)\];$", text, flags=re.M))


def _dot_edges(text):
    return re.findall(r"^\s*(n\d+) -> (n\d+)", text, flags=re.M)


def test_repr_prints_the_expression_not_an_object_id():
    x, y = sg.scalars("x y")
    assert repr(x * y + sg.sin(x)) == "x * y + sin(x)"
    assert "object at" not in repr(sg.tensor("X", ("n", 3)) @ sg.tensor("w", (3,)))


def test_repr_latex_of_a_scalar_derivative_is_sympys_latex_of_the_same_maths():
    x, y = sg.scalars("x y")
    gx = sg.grad(x * y + sg.sin(x), x)
    xs, ys = sympy.symbols("x y")
    expected = sympy.latex(sympy.diff(xs * ys + sympy.sin(xs), xs))
    assert gx._repr_latex_() == f"$\\displaystyle {expected}$"


def test_repr_latex_falls_back_to_text_for_tensors():
    X = sg.tensor("X", ("n", 3))
    assert (X * 2)._repr_latex_() is None  # Jupyter then shows repr


def test_to_dot_shows_each_shared_node_once_with_all_its_users():
    x = sg.scalar("x")
    s = sg.sin(x)
    e = s * sg.exp(s)  # sin(x) is used twice
    text = sg.to_dot(e)
    nodes = _dot_nodes(text)
    labels = {k: re.search(r'label="([^"]*)"', v).group(1) for k, v in nodes.items()}
    assert sorted(lab.split("\\n")[0] for lab in labels.values()) == ["exp", "mul", "sin", "x"]
    (sin_id,) = [k for k, lab in labels.items() if lab.startswith("sin")]
    assert sum(1 for a, _ in _dot_edges(text) if a == sin_id) == 2
    assert "penwidth" in nodes[sin_id] and "used 2x" in labels[sin_id]
    assert text.startswith("digraph") and text.rstrip().endswith("}")


def test_to_dot_shades_the_nodes_only_the_gradient_needs():
    x, y = sg.scalars("x y")
    z = x * y + sg.sin(x)
    text = sg.to_dot([z, *sg.grad(z, [x, y])], names=["z", "dz/dx", "dz/dy"])
    nodes = _dot_nodes(text)
    shaded = sorted(re.search(r'label="([^"\\]*)', v).group(1) for v in nodes.values() if "filled" in v)
    assert shaded == ["add", "cos"]  # y + cos(x) is new; dz/dy = x reuses x
    assert '"dz/dx"' in text and '"dz/dy"' in text


def test_draw_without_graphviz_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr("shutil.which", lambda name: None)
    x = sg.scalar("x")
    with pytest.raises(sg.UnsupportedError, match="(?i)install graphviz"):
        sg.draw(sg.sin(x), str(tmp_path / "g.svg"))
    path = sg.draw(sg.sin(x), str(tmp_path / "g.dot"))  # DOT text needs no program
    assert open(path).read() == sg.to_dot(sg.sin(x))


def test_compiled_repr_counts_nodes_with_and_without_sharing():
    x = sg.scalar("x")
    e = x
    for _ in range(3):
        e = e * sg.sin(e)  # tree size t -> 2t + 2 (e appears twice): 1, 4, 10, 22
    f = sg.compile(e, backend="numpy")
    text = repr(f)
    assert "7 nodes after CSE (22 as a tree without sharing)" in text
    assert "x: () float64" in text and "backend: numpy" in text and "cache:" in text


def test_compiled_repr_of_a_deep_graph_needs_no_recursion():
    x = sg.scalar("x")
    e = x
    for _ in range(5000):
        e = e * sg.sin(e)
    text = repr(sg.compile(e, backend="numpy"))
    assert "10001 nodes after CSE (over 10^12 as a tree without sharing)" in text


def test_repr_of_reductions_reads_like_the_call_that_built_them():
    X = sg.tensor("X", ("n", 3))
    assert repr(sg.sum(X)) == "sum(X)"
    assert repr(sg.sum(X, axis=1)) == "sum(X, axis=1)"
    assert repr(sg.max(X, axis=0, keepdims=True)) == "max(X, axis=0, keepdims=True)"
    assert repr(sg.transpose(X)) in ("transpose(X, axes=(1, 0))", "X.T")
