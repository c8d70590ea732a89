"""What a user looks at: repr of expressions, LaTeX for Jupyter, DOT drawings, print(compiled)."""

import math
import re
import time

import pytest
import sympy

import symgrad as sg
from symgrad.frontends import sympy_bridge


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


# ---------------------------------------------------------------- bounded display of large trees


def _shared_chain(steps):
    """``e = tanh(e) + 0.25*e``: 3 nodes a step, an expanded tree that doubles each step."""
    x = sg.scalar("x")
    e = x
    for _ in range(steps):
        e = sg.tanh(e) + 0.25 * e
    return e


def test_latex_of_a_small_expression_is_sympys_latex_of_the_same_maths():
    x, y = sg.scalars("x y")
    xs, ys = sympy.symbols("x y")
    assert sg.latex(x * y + sg.sin(x) / 4) == sympy.latex(xs * ys + sympy.sin(xs) / 4)


def test_latex_of_a_shared_graph_names_the_shared_terms_instead_of_expanding_them():
    # 38 nodes whose tree has ~28,000: took over a minute in SymPy; each term is now one step
    e = _shared_chain(12)
    start = time.perf_counter()
    text = sg.latex(e)
    assert time.perf_counter() - start < 10
    xs, t = sympy.Symbol("x"), [sympy.Symbol(f"t_{k}") for k in range(12)]
    assert text.startswith(r"\begin{aligned}") and text.endswith(r"\end{aligned}")
    lines = text[len(r"\begin{aligned}") : -len(r"\end{aligned}")].split(r" \\ ")
    assert lines[0] == "& " + sympy.latex(sympy.tanh(t[11]) + t[11] / 4)
    assert lines[1] == r"\text{where } t_{1} &= " + sympy.latex(sympy.tanh(xs) + xs / 4)
    for k in range(2, 12):
        assert lines[k] == f"t_{{{k}}} &= " + sympy.latex(sympy.tanh(t[k - 1]) + t[k - 1] / 4)
    assert len(lines) == 12
    assert e._repr_latex_() == f"$\\displaystyle {text}$"


def test_latex_of_a_deep_chain_is_cut_into_shallow_terms_without_recursion_error():
    x = sg.scalar("x")
    e = x
    for _ in range(200):
        e = sg.sin(e) + 1.0
    start = time.perf_counter()
    text = sg.latex(e)
    assert time.perf_counter() - start < 10
    assert r"\text{where } t_{1} &= " in text and text.count("&=") >= 200 * 2 // sympy_bridge.TERM_DEPTH
    # every sin of the chain is printed exactly once
    assert text.count(r"\sin") == 200


def test_latex_of_a_graph_too_large_for_terms_is_a_short_placeholder():
    x = sg.scalar("x")
    e = x
    for _ in range(10_000):
        e = sg.sin(e) * 1.5
    start = time.perf_counter()
    text = sg.latex(e)
    assert time.perf_counter() - start < 10
    assert text == r"\text{(an expression of 20002 nodes, 20001 deep: too large to print)}"


def test_term_names_avoid_the_graphs_own_symbols():
    t1 = sg.scalar("t_1")
    e = t1
    for _ in range(12):
        e = sg.tanh(e) + 0.25 * e
    text = sg.latex(e)
    assert r"\text{where } u_{1} &= " in text and "t_{1}" in text  # t_1 is the symbol, u_k the terms


def test_to_sympy_and_repr_of_a_shared_graph_return_quickly():
    e = _shared_chain(12)
    start = time.perf_counter()
    expr = sg.to_sympy(e)
    text = repr(e)
    assert time.perf_counter() - start < 10
    z = 0.3
    for _ in range(12):
        z = math.tanh(z) + 0.25 * z
    assert float(expr.subs(sympy.Symbol("x"), 0.3)) == pytest.approx(z, rel=1e-12)
    assert len(text) < 400


def test_repr_of_a_remainder_reads_as_python_percent_and_parses_back():
    x, y = sg.scalars("x y")
    for e, text in [(x % y * 2, "x % y * 2.0"), (x * y % 2, "x * y % 2.0"), (x % (y * 2), "x % (y * 2.0)")]:
        assert repr(e) == text
        assert sg.parse(text) is e


def test_to_dot_numbers_the_operands_of_every_elementwise_op_whose_order_matters():
    # the ordered ops come from the op table (not commutative): xlogy too, which no list named
    from symgrad.ops.registry import OPS

    x, y = sg.scalars("x y")
    for name, op in OPS.items():
        if op.elementwise and op.arity == 2 and not op.boolean:
            text = sg.to_dot(op.builder(x, y))
            numbered = 'label="0"' in text and 'label="1"' in text
            assert numbered == (not op.commutative), name
