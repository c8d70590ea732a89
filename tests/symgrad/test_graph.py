"""The graph: hash-consing, shapes with symbolic dims, dtype rules, deep graphs."""

import gc
import os
import subprocess
import sys
import textwrap
import weakref

import numpy as np
import pytest
import sympy

import symgrad as sg
from symgrad.graph import free_symbols, topo_order


def numpy_fn(outputs, inputs=None):
    """Compiled with the numpy backend: cheap to build, enough to evaluate a graph."""
    return sg.compile(outputs, inputs, backend="numpy")


# ---------------------------------------------------------------- hash-consing


def test_same_symbol_twice_is_the_same_object():
    x = sg.scalar("x")
    assert sg.scalar("x") is x
    assert sg.scalars("x y")[0] is x
    X = sg.tensor("X", shape=("n", 3))
    assert sg.tensor("X", shape=("n", 3)) is X


@pytest.mark.parametrize(
    "attr, value", [("op", "add"), ("shape", (2,)), ("dtype", "float32"), ("inputs", ()), ("note", "a rule")]
)
def test_a_node_cannot_be_changed_after_it_is_built(attr, value):
    # nodes are interned (one object per expression in the process), so a change would reach
    # every expression sharing the node
    x, y = sg.scalars("x y")
    e = x * y
    with pytest.raises(sg.UnsupportedError, match=f"Expr nodes are immutable .*cannot set '{attr}'"):
        setattr(e, attr, value)
    with pytest.raises(AttributeError, match="'Expr' object has no attribute 'extra'"):
        object.__setattr__(e, "extra", 1)  # no slot for it, nor a __dict__
    with pytest.raises(sg.UnsupportedError, match=f"Expr nodes are immutable .*cannot delete '{attr}'"):
        delattr(e, attr)
    assert (e.op, e.inputs, e.shape, e.dtype) == ("mul", (x, y), (), "float64")
    assert x * y is e and type(e) is sg.Expr


def test_symbols_of_one_name_but_another_shape_or_dtype_are_different():
    x = sg.scalar("x")
    xv = sg.tensor("x", shape=("n",))
    x32 = sg.scalar("x", dtype="float32")
    assert xv is not x and x32 is not x and x32 is not xv


def test_commutative_ops_put_operands_in_one_order():
    x, y = sg.scalars("x y")
    assert (x * y) is (y * x)
    assert (x + y) is (y + x)
    assert sg.maximum(x, y) is sg.maximum(y, x)
    assert sg.sin(x * y) is sg.sin(y * x)


def test_non_commutative_ops_keep_operand_order():
    x, y = sg.scalars("x y")
    assert (x - y) is not (y - x)
    assert (x / y) is not (y / x)
    f = numpy_fn([x - y, y - x], inputs=[x, y])
    assert f(5.0, 2.0) == (3.0, -3.0)


def test_structurally_equal_expressions_are_one_node():
    x, y = sg.scalars("x y")
    a = sg.exp(x * y + sg.sin(x))
    b = sg.exp(sg.sin(x) + y * x)
    assert a is b


def test_same_constant_twice_is_one_node():
    a = sg.constant(1.5)
    b = sg.constant(1.5)
    assert a is b
    arr1 = sg.constant(np.array([1.0, 2.0]))
    arr2 = sg.constant(np.array([1.0, 2.0]))
    assert arr1 is arr2


def test_one_and_one_point_zero_and_true_are_different_constants():
    # Python says 1 == 1.0 == True with one hash; the graph must keep their dtypes apart
    one_int, one_float, one_bool = sg.constant(1), sg.constant(1.0), sg.constant(True)
    assert len({id(one_int), id(one_float), id(one_bool)}) == 3
    assert (one_int.dtype, one_float.dtype, one_bool.dtype) == ("int64", "float64", "bool")


def test_positive_and_negative_zero_are_different_constants():
    pos, neg = sg.constant(0.0), sg.constant(-0.0)
    assert pos is not neg
    assert np.signbit(neg.value) and not np.signbit(pos.value)


def test_same_value_with_another_dtype_is_another_constant():
    c64 = sg.constant(np.array([1.0, 2.0]))
    c32 = sg.constant(np.array([1.0, 2.0], dtype=np.float32))
    assert c64 is not c32
    assert c32.dtype == "float32"


def test_constant_values_are_read_only_copies():
    source = np.array([1.0, 2.0])
    c = sg.constant(source)
    source[0] = 99.0
    assert c.value.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError):
        c.value[0] = 5.0


def test_nodes_nobody_references_are_freed():
    x = sg.scalar("x_freed")
    node = sg.sin(x) * 3.0
    ref = weakref.ref(node)
    del node
    gc.collect()
    assert ref() is None


# ---------------------------------------------------------------- topological order


def test_topo_order_puts_inputs_before_users_and_lists_each_node_once():
    x, y = sg.scalars("x y")
    shared = x * y
    out = sg.sin(shared) + sg.cos(shared) * shared
    order = topo_order([out])
    position = {id(n): i for i, n in enumerate(order)}
    assert len(position) == len(order)
    for node in order:
        for inp in node.inputs:
            assert position[id(inp)] < position[id(node)]
    assert order[-1] is out
    assert sum(1 for n in order if n is shared) == 1


def test_free_symbols_come_sorted_by_name_whatever_the_declaration_order():
    b = sg.scalar("b_decl")
    a = sg.scalar("a_decl")
    c = sg.scalar("c_decl")
    assert free_symbols([c + a * b]) == [a, b, c]
    sg.scalars("c_decl b_decl a_decl")  # declaring again changes nothing
    assert free_symbols([c + a * b]) == [a, b, c]


def test_name_order_is_natural_then_case_insensitive_then_case_sensitive():
    names = ["x10", "X2", "x2", "b", "x1", "A", "a", "x02", "y", "B1", "b1", "x"]
    expected = ["A", "a", "b", "B1", "b1", "x", "x1", "x02", "X2", "x2", "x10", "y"]
    symbols = [sg.scalar(n) for n in names]
    total = symbols[0]
    for s in symbols[1:]:
        total = total + s
    assert [s.name for s in free_symbols([total])] == expected


def test_nodes_have_no_mutable_declaration_state():
    x = sg.scalar("x_immutable")
    assert not hasattr(x, "declared")
    assert not hasattr(sg.graph, "declare")


# ---------------------------------------------------------------- shapes


def test_tensor_shape_holds_ints_and_named_dims():
    X = sg.tensor("X", shape=("n", "d"))
    n, d = X.shape
    assert isinstance(n, sympy.Symbol) and n.name == "n"
    assert isinstance(d, sympy.Symbol) and d.name == "d"
    assert sg.tensor("W", shape=(3, "d")).shape[1] is d
    assert sg.tensor("v", shape=4).shape == (4,)
    assert sg.scalar("s").shape == ()


def test_broadcasting_with_symbolic_dims_follows_numpy():
    n, d = sg.tensor("X", shape=("n", "d")).shape
    col = sg.tensor("col", shape=("n", 1))
    row = sg.tensor("row", shape=(1, "d"))
    vec = sg.tensor("vec", shape=("d",))
    assert (col + row).shape == (n, d)
    assert (col * vec).shape == (n, d)
    assert (sg.tensor("X", shape=("n", "d")) - vec).shape == (n, d)
    assert (sg.tensor("c3", shape=(3,)) + sg.scalar("x")).shape == (3,)


def test_broadcast_result_matches_numpy_values():
    col = sg.tensor("col", shape=("n", 1))
    row = sg.tensor("row", shape=(1, "d"))
    f = numpy_fn(col * 10.0 + row, inputs=[col, row])
    a = np.array([[1.0], [2.0]])
    b = np.array([[0.5, 0.25, 0.125]])
    np.testing.assert_allclose(f(a, b), a * 10.0 + b)


def test_broadcast_error_names_both_shapes():
    A = sg.tensor("A", shape=(2, 3))
    B = sg.tensor("B", shape=(4,))
    with pytest.raises(sg.ShapeError) as info:
        A + B
    assert "(2, 3)" in str(info.value) and "(4,)" in str(info.value)


def test_symbolic_dim_does_not_broadcast_against_a_different_int():
    X = sg.tensor("X", shape=("n",))
    T = sg.tensor("T", shape=(3,))
    with pytest.raises(sg.ShapeError) as info:
        X * T
    message = str(info.value)
    assert "(n,)" in message and "(3,)" in message


def test_two_different_symbolic_dims_do_not_broadcast():
    X = sg.tensor("X", shape=("n",))
    Y = sg.tensor("Y", shape=("m",))
    with pytest.raises(sg.ShapeError) as info:
        X + Y
    assert "(n,)" in str(info.value) and "(m,)" in str(info.value)


# ---------------------------------------------------------------- one name, one symbol


def _scalar_and_vector_x():
    x = sg.scalar("x")
    xv = sg.tensor("x", shape=("n",))
    return x, xv, x * sg.sum(xv)


def _names_both_x(message):
    return "'x'" in message and "()" in message and "(n,)" in message


def test_two_symbols_named_x_in_one_graph_fail_to_compile_naming_both():
    x, xv, e = _scalar_and_vector_x()
    with pytest.raises(sg.SymgradError) as info:
        sg.compile(e, backend="numpy")
    assert _names_both_x(str(info.value))


def test_two_symbols_named_x_in_one_graph_fail_to_differentiate_naming_both():
    x, xv, e = _scalar_and_vector_x()
    with pytest.raises(sg.SymgradError) as info:
        sg.grad(e, x)
    assert _names_both_x(str(info.value))
    with pytest.raises(sg.SymgradError) as info:
        sg.value_and_grad(e, wrt=[x], backend="numpy")
    assert _names_both_x(str(info.value))


def test_wrt_symbol_sharing_a_name_with_a_graph_symbol_is_an_error():
    x = sg.scalar("x")
    xv = sg.tensor("x", shape=("n",))
    with pytest.raises(sg.SymgradError) as info:
        sg.grad(x * 2.0, [xv])
    assert _names_both_x(str(info.value))
    with pytest.raises(sg.SymgradError) as info:
        sg.value_and_grad(x * 2.0, wrt=[xv], backend="numpy")
    assert _names_both_x(str(info.value))
    with pytest.raises(sg.SymgradError) as info:
        sg.compile(x * 2.0, inputs=[x, xv], backend="numpy")
    assert _names_both_x(str(info.value))


# ---------------------------------------------------------------- dtypes


def test_symbols_are_float64_by_default():
    assert sg.scalar("x").dtype == "float64"
    assert sg.tensor("X", shape=("n",)).dtype == "float64"
    assert (sg.scalar("x") * 2).dtype == "float64"


def test_float32_is_preserved_through_python_numbers_and_functions():
    x32 = sg.scalar("x32", dtype="float32")
    assert (x32 * 2.0).dtype == "float32"
    assert (x32 + 1).dtype == "float32"
    assert (2.0 / x32).dtype == "float32"
    assert sg.sin(x32).dtype == "float32"
    assert sg.exp(x32 * 0.5).dtype == "float32"


def test_float32_meets_float64_as_numpy_promotes():
    x32 = sg.scalar("x32", dtype="float32")
    x64 = sg.scalar("x64")
    assert (x32 * x64).dtype == np.result_type(np.float32, np.float64).name == "float64"


def test_float32_gradient_is_float32():
    x32 = sg.scalar("x32", dtype="float32")
    (g,) = sg.grad(x32 * x32 * 3.0, [x32])
    assert g.dtype == "float32"


def test_int_and_bool_inputs_are_accepted_and_promote_like_numpy():
    k = sg.scalar("k", dtype="int64")
    mask = sg.tensor("mask", shape=("n",), dtype=bool)
    x = sg.scalar("x")
    assert k.dtype == "int64" and mask.dtype == "bool"
    assert (x * k).dtype == "float64"
    assert (k * 2).dtype == "int64"
    assert sg.where(mask, x, 0.0).dtype == "float64"


def test_int_and_bool_inputs_compute_like_numpy():
    X = sg.tensor("X", shape=("n",))
    mask = sg.tensor("mask", shape=("n",), dtype=bool)
    labels = sg.tensor("labels", shape=("n",), dtype="int64")
    f = numpy_fn(sg.sum(sg.where(mask, X * labels, 0.0)), inputs=[X, mask, labels])
    x = np.array([1.0, 2.0, 3.0])
    m = np.array([True, False, True])
    t = np.array([2, 5, 7])
    assert f(x, m, t) == pytest.approx(np.sum(np.where(m, x * t, 0.0)))


def test_comparisons_give_bool():
    x, y = sg.scalars("x y")
    k = sg.scalar("k", dtype="int32")
    assert (x < y).dtype == "bool"
    assert (x >= 1.0).dtype == "bool"
    assert (k == 3).dtype == "bool"
    assert sg.not_equal(x, y).dtype == "bool"
    f = numpy_fn([x < y, x == y], inputs=[x, y])
    assert f(1.0, 2.0) == (True, False)


@pytest.mark.parametrize("dtype", ["int64", "int32", "bool"])
def test_integer_and_bool_symbols_are_never_differentiated(dtype):
    x = sg.scalar("x")
    k = sg.scalar("k", dtype=dtype)
    e = x * k
    with pytest.raises(sg.UnsupportedError) as info:
        sg.grad(e, [k])
    assert "k" in str(info.value) and dtype in str(info.value)
    with pytest.raises(sg.UnsupportedError) as info:
        sg.value_and_grad(e, wrt=k, backend="numpy")
    assert "k" in str(info.value) and dtype in str(info.value)


def test_gradient_flows_around_integer_inputs():
    x = sg.scalar("x")
    k = sg.scalar("k", dtype="int64")
    vg = sg.value_and_grad(x * x * k, wrt=x, inputs=[x, k], backend="numpy")
    value, dx = vg(3.0, 4)
    assert value == 36.0 and dx == 24.0


@pytest.mark.parametrize("name", ["float64", "float32", "int32", "int64", "uint8", "bool"])
def test_expr_dtype_compares_and_behaves_like_numpys_dtype(name):
    x = sg.tensor("x_dt", (2,), name)
    truth = np.dtype(name)
    assert x.dtype == truth and truth == x.dtype
    assert x.dtype == truth.type and truth.type == x.dtype  # np.float64, np.int32, np.bool_
    assert x.dtype == name and not (x.dtype != name)
    for other in ("float64", "int16"):
        if other != name:
            assert x.dtype != np.dtype(other) and not (x.dtype == np.dtype(other).type)
    assert x.dtype != None  # noqa: E711 (np.dtype(None) is float64; a dtype is never None)
    assert (x.dtype.name, x.dtype.kind, x.dtype.itemsize, x.dtype.type, x.dtype.char) == (
        truth.name,
        truth.kind,
        truth.itemsize,
        truth.type,
        truth.char,
    )
    assert np.dtype(x.dtype) == truth and np.zeros(2, x.dtype).dtype == truth
    assert {name: 1}[x.dtype] == 1 and hash(x.dtype) == hash(name)


def test_expr_dtype_equals_python_types_as_numpy_does():
    x, i, b = sg.scalar("x_pt"), sg.scalar("i_pt", "int64"), sg.scalar("b_pt", "bool")
    assert x.dtype == float and i.dtype == int and b.dtype == bool
    assert x.dtype != int and i.dtype != float
    assert sg.scalar("j_pt", "int32").dtype != int  # numpy: np.dtype("int32") != int


@pytest.mark.parametrize(
    "convert, what",
    [
        (lambda x: int(x[0]), r"int\(\) of a symbolic value"),
        (lambda x: float(x[0] >= 0), r"float\(\) of a symbolic value \(shape \(\), dtype bool\)"),
        (lambda x: complex(x[0]), r"complex\(\) of a symbolic value"),
        (lambda x: range(x[0]), r"operator.index \(an index or size\)\(\) of a symbolic value"),
        (lambda x: [1, 2, 3][x[0]], r"operator.index"),
    ],
)
def test_python_number_conversions_are_refused_naming_them(convert, what):
    x = sg.tensor("x_conv", (3,))
    with pytest.raises(sg.UnsupportedError, match=what) as info:
        convert(x)
    assert "sg.where" in str(info.value) and "static value" in str(info.value)


def test_sympy_sizes_times_expressions_still_build_nodes():
    # SymPy would call float(x) on its operand; Expr._op_priority keeps it from doing so
    x = sg.tensor("x_sz", ("n",))
    n = x.shape[0]
    for built in (n * x, (n - 1) * x, n + x, n - x, n / x, n * x[0]):
        assert isinstance(built, sg.Expr)
    assert isinstance(n == x[0], sg.Expr) and isinstance(n < x[0], sg.Expr)


# ---------------------------------------------------------------- deep graphs


def test_gradient_of_a_short_recurrence_matches_the_chain_rule():
    x, c = sg.scalars("x c")
    e = x
    for _ in range(30):
        e = sg.sin(e) * 0.5 + c
    vg = sg.value_and_grad(e, wrt=[x, c], inputs=[x, c], backend="numpy")
    x0, c0 = 0.3, 0.2
    # hand-written forward and backward of v <- sin(v)/2 + c
    v, dv_dx, dv_dc = x0, 1.0, 0.0
    for _ in range(30):
        slope = 0.5 * np.cos(v)
        v, dv_dx, dv_dc = 0.5 * np.sin(v) + c0, slope * dv_dx, slope * dv_dc + 1.0
    value, (gx, gc) = vg(x0, c0)
    assert value == pytest.approx(v, rel=1e-12)
    assert gx == pytest.approx(dv_dx, rel=1e-10)
    assert gc == pytest.approx(dv_dc, rel=1e-12)


DEEP_CHAIN = textwrap.dedent("""
    import gc, sys
    import symgrad as sg
    from symgrad.graph import topo_order
    sys.setrecursionlimit(1000)
    N = 100_000
    x, c = sg.scalars("x c")
    e = x
    for _ in range(N):
        e = sg.sin(e) * 0.5 + c
    order = topo_order([e])
    assert order[-1] is e and len(order) >= 3 * N, len(order)
    gx, gc_ = sg.grad(e, [x, c])
    size = len(topo_order([gx, gc_]))
    assert size <= 10 * N, size          # O(N): no expression swell
    text = repr(e)
    del order, e, gx, gc_
    gc.collect()
    print("ok", size)
""")


def test_hundred_thousand_deep_chain_builds_sorts_differentiates_and_frees():
    # in a child process, so a C stack overflow while freeing shows up as a failed exit code
    result = subprocess.run(
        [sys.executable, "-c", DEEP_CHAIN], capture_output=True, text=True, timeout=600, env=os.environ.copy()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")


# ---------------------------------------------------------------- repr


@pytest.mark.parametrize(
    "build, by_hand",
    [
        (lambda x, y, z: x - (y - z), lambda x, y, z: x - (y - z)),
        (lambda x, y, z: (x - y) - z, lambda x, y, z: (x - y) - z),
        (lambda x, y, z: x / (y * z), lambda x, y, z: x / (y * z)),
        (lambda x, y, z: (x**y) ** z, lambda x, y, z: (x**y) ** z),
        (lambda x, y, z: x ** (y**z), lambda x, y, z: x ** (y**z)),
        (lambda x, y, z: -(x * y) + z, lambda x, y, z: -(x * y) + z),
        (lambda x, y, z: sg.constant(-2.0) ** x, lambda x, y, z: (-2.0) ** x),
        (lambda x, y, z: x - sg.constant(-2.0) * y, lambda x, y, z: x - (-2.0) * y),
        (lambda x, y, z: sg.where((x < y) == (y < z), x, y), lambda x, y, z: x if (x < y) == (y < z) else y),
    ],
)
def test_repr_reads_back_as_python_with_the_same_value(build, by_hand):
    # x=2, y=3, z=4: (x < y) == (y < z) is true but the chained x < y == (y < z) is false,
    # and (-2.0)**x is 4 but -2.0**x is -4
    values = {"x": 2.0, "y": 3.0, "z": 4.0}
    e = build(*sg.scalars("x y z"))
    namespace = dict(values, square=np.square, where=lambda c, a, b: a if c else b)
    assert eval(repr(e), namespace) == pytest.approx(by_hand(**values), rel=1e-15)
