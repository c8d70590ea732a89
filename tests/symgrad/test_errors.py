"""Every error a user can trigger: its type (a SymgradError subclass) and a message naming what was wrong.

Errors raised when calling a compiled function are pinned down in
tests/codegen/test_runtime.py and tests/symgrad/test_api.py; this file covers the
exception classes and the errors raised while building and compiling graphs.
"""

import pickle

import numpy as np
import pytest

import symgrad as sg


# ---------------------------------------------------------------- the classes


@pytest.mark.parametrize(
    "cls, builtin",
    [
        (sg.ParseError, ValueError),
        (sg.ShapeError, ValueError),
        (sg.InputError, TypeError),
        (sg.UnsupportedError, NotImplementedError),
    ],
)
def test_every_error_is_a_symgrad_error_and_the_matching_builtin(cls, builtin):
    assert issubclass(cls, sg.SymgradError) and issubclass(cls, builtin)
    assert issubclass(sg.SymgradError, Exception)


def test_parse_error_shows_the_text_and_a_caret_under_the_column():
    error = sg.ParseError("expected an expression", text="x + * y", column=4)
    lines = str(error).split("\n")
    assert lines[0] == "expected an expression"
    assert lines[1] == "  x + * y"
    assert lines[2] == "  " + " " * 4 + "^"
    assert (error.text, error.column) == ("x + * y", 4)


def test_parse_error_caret_stays_aligned_across_tabs_and_newlines():
    error = sg.ParseError("bad", text="x\t+\n?", column=4)
    text_line, caret_line = str(error).split("\n")[1:]
    assert text_line[2:][caret_line.index("^") - 2] == "?"


def test_parse_error_without_text_is_just_the_message():
    assert str(sg.ParseError("nothing to show")) == "nothing to show"


@pytest.mark.skipif(not hasattr(sg, "parse"), reason="string frontend not present")
def test_parse_reports_the_offending_column():
    with pytest.raises(sg.ParseError) as info:
        sg.parse("x + * y")
    assert info.value.column == 4
    assert str(info.value).split("\n")[-1] == "  " + " " * 4 + "^"


# ---------------------------------------------------------------- declaring symbols


@pytest.mark.parametrize(
    "name, shown",
    [
        ("1x", "'1x'"),
        ("a b", "'a b'"),
        ("", "''"),
        (3, "3"),
        ("__x", "'__x'"),
    ],
)
def test_bad_symbol_name_is_unsupported_naming_it(name, shown):
    with pytest.raises(sg.UnsupportedError) as info:
        sg.tensor(name)
    assert shown in str(info.value)


def test_bad_name_in_scalars_string_names_it():
    with pytest.raises(sg.UnsupportedError) as info:
        sg.scalars("x 1y")
    assert "'1y'" in str(info.value)


@pytest.mark.parametrize(
    "shape, shown",
    [
        ((-1,), "-1"),
        ((True,), "True"),
        (("a b",), "'a b'"),
        ((2.5,), "2.5"),
        (2.5, "2.5"),
        ((None,), "None"),
    ],
)
def test_bad_shape_is_a_shape_error_naming_the_tensor_and_the_dim(shape, shown):
    with pytest.raises(sg.ShapeError) as info:
        sg.tensor("q", shape=shape)
    assert "'q'" in str(info.value) and shown in str(info.value)


@pytest.mark.parametrize(
    "dtype, shown",
    [
        ("complex128", "complex128"),
        ("float16", "float16"),
        (object, "object"),
        ("foo", "'foo'"),
        ("U3", "<U3"),
    ],
)
def test_unsupported_dtype_names_the_tensor_and_the_dtype(dtype, shown):
    with pytest.raises(sg.UnsupportedError) as info:
        sg.tensor("q", shape=(2,), dtype=dtype)
    assert "'q'" in str(info.value) and shown in str(info.value)


# ---------------------------------------------------------------- building expressions


def test_broadcast_error_names_both_shapes_and_the_dims():
    with pytest.raises(sg.ShapeError) as info:
        sg.tensor("A", shape=("n", 3)) * sg.tensor("B", shape=("n", 4))
    message = str(info.value)
    assert "(n, 3)" in message and "(n, 4)" in message and "3" in message and "4" in message


def test_symbolic_value_has_no_truth_value():
    x, y = sg.scalars("x y")
    with pytest.raises(sg.UnsupportedError) as info:
        if x < y:
            pass
    assert "sg.where" in str(info.value)


def test_iterating_an_expression_is_unsupported_naming_its_shape():
    with pytest.raises(sg.UnsupportedError) as info:
        list(sg.tensor("X", shape=("n",)))
    assert "(n,)" in str(info.value)


def test_len_of_a_scalar_or_symbolic_first_dim_is_unsupported():
    with pytest.raises(sg.UnsupportedError) as info:
        len(sg.scalar("x"))
    assert "scalar" in str(info.value)
    with pytest.raises(sg.UnsupportedError) as info:
        len(sg.tensor("X", shape=("n", 2)))
    assert "n" in str(info.value)
    assert len(sg.tensor("Y", shape=(5, "n"))) == 5


def test_expressions_cannot_be_pickled():
    with pytest.raises(sg.UnsupportedError) as info:
        pickle.dumps(sg.scalar("x") + 1.0)
    assert "pickle" in str(info.value)


def test_compiled_functions_cannot_be_pickled_and_say_what_to_do():
    x = sg.scalar("x")
    vg = sg.value_and_grad(x * x, wrt=x, backend="numpy")
    with pytest.raises(sg.UnsupportedError) as info:
        pickle.dumps(vg)
    assert "pickled" in str(info.value) and "value_and_grad" in str(info.value)


@pytest.mark.parametrize("value, shown", [("abc", "str"), (None, "NoneType"), ({1: 2}, "dict")])
def test_unusable_operand_is_unsupported_naming_its_type(value, shown):
    with pytest.raises(sg.UnsupportedError) as info:
        sg.scalar("x") + value
    assert shown in str(info.value)


def test_string_constant_is_unsupported_naming_it():
    with pytest.raises(sg.UnsupportedError) as info:
        sg.constant("abc")
    assert "abc" in str(info.value)


@pytest.mark.parametrize(
    "axis, shown", [(2, "2"), (-3, "-3"), ((0, -2), "repeated"), (1.5, "1.5"), ("0", "'0'")]
)
def test_bad_reduction_axis_is_a_shape_error_naming_it(axis, shown):
    M = sg.tensor("M", shape=(2, 3))
    with pytest.raises(sg.ShapeError) as info:
        sg.sum(M, axis=axis)
    assert shown in str(info.value)


def test_vjp_cotangent_of_the_wrong_shape_names_both_shapes():
    X = sg.tensor("X", shape=("n",))
    with pytest.raises(sg.ShapeError) as info:
        sg.vjp(X * 2.0, [X], sg.tensor("g", shape=(3,)))
    assert "(3,)" in str(info.value) and "(n,)" in str(info.value)


def test_grad_of_a_bool_expression_is_unsupported():
    x, y = sg.scalars("x y")
    with pytest.raises(sg.UnsupportedError) as info:
        sg.grad(x < y, [x])
    assert "bool" in str(info.value)


# ---------------------------------------------------------------- compiling


def test_unknown_backend_names_it_and_the_choices():
    with pytest.raises(sg.UnsupportedError) as info:
        sg.compile(sg.scalar("x") * 2.0, backend="jax")
    message = str(info.value)
    assert "'jax'" in message and "numba" in message and "numpy" in message


@pytest.mark.parametrize(
    "outputs, shown",
    [
        ([], "no outputs"),
        (None, "NoneType"),
        ("x*y", "str"),
        (["x"], "str"),
    ],
)
def test_compiling_something_that_is_not_an_expression_is_unsupported(outputs, shown):
    with pytest.raises(sg.UnsupportedError) as info:
        sg.compile(outputs, backend="numpy")
    assert shown in str(info.value)


def test_inputs_that_are_not_symbols_are_unsupported_naming_them():
    x, y = sg.scalars("x y")
    with pytest.raises(sg.UnsupportedError) as info:
        sg.compile(x * y, inputs=[x, y, x + 1.0], backend="numpy")
    assert "x + 1" in str(info.value)


def test_argnums_with_an_expression_is_unsupported():
    x = sg.scalar("x")
    with pytest.raises(sg.UnsupportedError) as info:
        sg.value_and_grad(x * x, wrt=[x], argnums=0)
    assert "argnums" in str(info.value)


def test_check_grad_with_a_bad_argument_is_an_input_error_naming_it():
    x = sg.scalar("x")
    vg = sg.value_and_grad(x * x, wrt=x, backend="numpy")
    with pytest.raises(sg.InputError) as info:
        sg.check_grad(vg, "abc")
    assert "'x'" in str(info.value)
    with pytest.raises(sg.InputError) as info:
        sg.check_grad(vg, 1.0, 2.0)
    assert "2" in str(info.value)
    with pytest.raises(sg.InputError) as info:
        sg.check_grad(vg)
    assert "'x'" in str(info.value)


def test_errors_are_raised_before_any_numbers_are_touched():
    # a shape error while building never leaves a half-made node behind
    A = sg.tensor("A", shape=(2, 3))
    B = sg.tensor("B", shape=(4,))
    with pytest.raises(sg.ShapeError):
        A + B
    f = sg.compile(A + 1.0, backend="numpy")
    np.testing.assert_array_equal(f(np.zeros((2, 3))), np.ones((2, 3)))
