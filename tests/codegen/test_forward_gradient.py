"""value_and_grad of a long scalar chain with few inputs (recur's x = sin(x) x + c) in forward
mode (``autodiff.gradient_mode``): each input's tangent is computed beside the value, and the
numba kernel steps the value and its tangents in one rolled loop (``schedule.interleaved``),
with nothing stored for a reverse sweep. Checked against SymPy's derivative, a reverse pass by
hand, the reverse-mode graph on the numpy backend and central differences."""

import re

import numpy as np
import pytest
import sympy

import symgrad as sg
from symgrad import autodiff
from symgrad.codegen.schedule import interleaved, schedule
from symgrad.graph import topo_order
from symgrad.ops.registry import OPS

from recurrences import by_hand, chain, check


def test_gradient_mode_is_forward_for_a_deep_scalar_chain_of_one_or_two_inputs():
    x0, c, b = sg.scalars("x0 c b")
    deep = chain(40, x0, c)
    assert autodiff.gradient_mode(deep, [x0, c]) == "forward"
    assert autodiff.gradient_mode(deep, [c]) == "forward"
    # three inputs: three tangents a step cost more than one reverse sweep
    assert autodiff.gradient_mode(deep * b, [x0, c, b]) == "reverse"
    # shallow: nothing to gain, and the reverse pass's text is the one users read
    assert autodiff.gradient_mode(chain(5, x0, c), [x0, c]) == "reverse"
    # two states a step (a, b = b, f(a, b)): twice as wide as one
    a, b2 = x0, c
    for _ in range(100):
        a, b2 = b2, 0.5 * sg.sin(a) + 0.5 * b2
    assert autodiff.gradient_mode(a * b2, [x0, c]) == "reverse"
    # wide: many statements a level (a sum of independent terms), not a chain
    wide = x0 * c
    for k in range(1, 400):
        wide = wide + sg.sin(x0 * k) * sg.cos(c * k)
    assert autodiff.gradient_mode(wide, [x0, c]) == "reverse"
    # an array in the graph, an array to differentiate, a symbol of another dtype
    w = sg.tensor("w", shape=(3,))
    assert autodiff.gradient_mode(chain(40, x0, c) * sg.sum(w), [x0, c]) == "reverse"
    assert autodiff.gradient_mode(sg.sum(w) * deep, [w]) == "reverse"
    f = sg.scalar("f", dtype="float32")
    assert autodiff.gradient_mode(chain(40, x0, c) * sg.cast(f, "float64"), [x0, f]) == "reverse"


def test_forward_gradient_of_a_chain_is_sympys_derivative():
    depth = 6  # (SymPy's derivative tree of a deeper chain takes minutes)
    x0, c = sg.scalars("x0 c")
    expr = chain(depth, x0, c)
    sx0, sc = sympy.symbols("x0 c")
    sx = sx0
    for _ in range(depth):
        sx = sympy.sin(sx) * sx + sc
    want = sympy.lambdify([sx0, sc], [sx, sympy.diff(sx, sx0), sympy.diff(sx, sc)], cse=True)
    grads = autodiff.grad_forward(expr, [x0, c])
    for backend in ("numba", "numpy"):
        f = sg.compile([expr, *grads], inputs=[x0, c], backend=backend)
        for args in [(0.3, 0.1), (-0.7, 0.05), (1.2, 0.2), (2.5, 0.0)]:
            np.testing.assert_allclose(f(*args), want(*args), rtol=1e-12, atol=1e-300)


def test_value_and_grad_of_recur_steps_value_and_tangents_in_one_loop():
    x0, c = sg.scalars("x0 c")
    vg = sg.value_and_grad(chain(200, x0, c), wrt=[x0, c], backend="numba")
    kernel = vg.source[vg.source.index("def kernel(") : vg.source.index("kernel_entry = ")]
    assert kernel.count("for k") == 1  # no reverse sweep, no running sum of d/dc
    assert "_rt.empty(" not in kernel and "_all[" not in kernel  # nothing stored for a second pass
    lines = kernel[kernel.index("for k") :].splitlines()[1:]
    body = "\n".join(
        re.sub(r"#.*", "", line) for line in lines[: [not l.startswith(" " * 8) for l in lines].index(True)]
    )
    assert "_rt.ssin(" in body and "_rt.scos(" in body  # the tangents read cos(x_t) in the same step
    assert not re.search(r"np\.(sin|cos)\(", body)
    assert "(forward)" in kernel  # the JVP rules' comments


@pytest.mark.parametrize("depth", [22, 200, 1000])
def test_forward_value_and_grad_matches_reverse_mode_and_central_differences(depth):
    x0, c = sg.scalars("x0 c")
    expr = chain(depth, x0, c)
    vg = sg.value_and_grad(expr, wrt=[x0, c], backend="numba")
    # the reverse-mode graph, computed without rolling or twins
    reverse = sg.compile([expr, *sg.grad(expr, [x0, c])], inputs=[x0, c], backend="numpy")
    check(vg, depth, reverse)


def test_forward_value_and_grad_of_one_symbol_and_of_one_it_does_not_read():
    x0, c, u = sg.scalars("x0 c u")
    expr = chain(30, x0, c)
    vg = sg.value_and_grad(expr, wrt=c, inputs=[x0, c], backend="numba")
    value, d_c = vg(0.3, 0.1)
    want = by_hand(30, 0.3, 0.1)
    np.testing.assert_allclose([value, d_c], [want[0], want[2]], rtol=1e-12)
    vg = sg.value_and_grad(expr, wrt=[c, u], inputs=[x0, c, u], backend="numba")
    value, (d_c, d_u) = vg(0.3, 0.1, 5.0)
    np.testing.assert_allclose([value, d_c], [want[0], want[2]], rtol=1e-12)
    assert d_u == 0.0


def test_interleaved_places_each_later_node_after_the_last_first_node_it_reads():
    x0, c = sg.scalars("x0 c")
    expr = chain(10, x0, c)
    outputs = [expr, *autodiff.grad_forward(expr, [x0, c])]
    nodes, _ = schedule(outputs, len(outputs))
    first = [n is expr for n in nodes].index(True) + 1
    order = interleaved(nodes, first)
    assert sorted(map(id, order)) == sorted(map(id, nodes))
    assert len(order) > first
    position = {id(n): p for p, n in enumerate(order)}
    for n in order:
        assert all(position[id(i)] < position[id(n)] for i in n.inputs)  # inputs before users
    value_graph = {id(n) for n in topo_order([expr])}
    # the value's statements keep their order; no tangent statement waits for the end of the chain
    assert [id(n) for n in order if id(n) in value_graph] == [id(n) for n in nodes[:first]]
    tangent_positions = [position[id(n)] for n in order if id(n) not in value_graph and not OPS[n.op].given]
    assert min(tangent_positions) < position[id(expr)] // 2


def test_interleaved_puts_the_values_next_step_ahead_of_the_tangents_work_on_a_step():
    """A tangent's node goes after the value's next step: cos(x_t), which only the tangents read,
    after x_t+1 (and so after sin(x_t)), the chain each step of a rolled loop waits on issued first."""
    x0, c = sg.scalars("x0 c")
    expr = chain(10, x0, c)
    outputs = [expr, *autodiff.grad_forward(expr, [x0, c])]
    nodes, _ = schedule(outputs, len(outputs))
    first = [n is expr for n in nodes].index(True) + 1
    order = interleaved(nodes, first)
    position = {id(n): p for p, n in enumerate(order)}
    value_graph = {id(n) for n in topo_order([expr])}
    steps = [n for n in nodes[:first] if n.op == "add"]  # x_1 .. x_10, one add a step
    assert len(steps) == 10
    cosines = [n for n in order if n.op == "cos"]
    assert cosines and not any(id(n) in value_graph for n in cosines)
    assert len(cosines) == 10  # cos(x0) .. cos(x_9)
    for cos in cosines:
        (x,) = cos.inputs
        if x is x0:
            continue  # an input is no step of the chain (and the first step runs before the loop)
        sin = next(n for n in nodes[:first] if n.op == "sin" and n.inputs[0] is x)
        assert position[id(sin)] < position[id(cos)]
        after = steps[[s is x for s in steps].index(True) + 1]  # x_t+1
        assert position[id(after)] < position[id(cos)]
