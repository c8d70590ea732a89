"""The public surface: compile, value_and_grad, grad, check_grad, and how compiled functions are called.

Most tests use the numpy backend (no machine-code compile, so they are fast); the
argument handling they pin down is shared by both backends, and a few tests run
the default (numba) backend to check it too.
"""

import numpy as np
import pytest

import symgrad as sg

NP = {"backend": "numpy"}


# ---------------------------------------------------------------- compile


def test_compile_of_one_expression_returns_one_value():
    x, y = sg.scalars("x y")
    f = sg.compile(x * y + sg.sin(x), inputs=[x, y], **NP)
    value = f(0.7, -1.3)
    assert not isinstance(value, tuple)
    assert value == pytest.approx(0.7 * -1.3 + np.sin(0.7), rel=1e-15)


def test_compile_of_a_list_returns_a_tuple():
    x, y = sg.scalars("x y")
    f = sg.compile([x * y, x - y], inputs=[x, y], **NP)
    out = f(3.0, 2.0)
    assert isinstance(out, tuple) and out == (6.0, 1.0)
    single = sg.compile([x * y], inputs=[x, y], **NP)(3.0, 2.0)
    assert isinstance(single, tuple) and single == (6.0,)


def test_compile_default_backend_is_numba():
    x, y = sg.scalars("x y")
    f = sg.compile([x * y, x - y], inputs=[x, y])
    assert f.backend == "numba"
    assert f(3.0, 2.0) == (6.0, 1.0)


def test_inputs_choose_the_argument_order():
    x, y = sg.scalars("x y")
    f = sg.compile(x - y, inputs=[y, x], **NP)
    assert [s.name for s in f.inputs] == ["y", "x"]
    assert f(1.0, 5.0) == 4.0


def test_inputs_may_add_symbols_the_output_does_not_use():
    x, y, z = sg.scalars("x y z")
    f = sg.compile(x * 2.0, inputs=[z, x, y], **NP)
    assert f.input_names == ("z", "x", "y")
    assert f(100.0, 3.0, -7.0) == 6.0
    with pytest.raises(sg.InputError):
        f(3.0)


# The default positional order depends on the call alone: the wrt symbols in wrt
# order, then the other free symbols sorted by name (digit runs as numbers).


def test_default_input_order_is_by_name_not_declaration():
    b, a = sg.scalars("b_decl a_decl")  # b declared first
    c = sg.scalar("c_decl")
    f = sg.compile(c * (a - b), **NP)
    assert f.input_names == ("a_decl", "b_decl", "c_decl")
    assert f(5.0, 1.0, 2.0) == 2.0 * (5.0 - 1.0)


def test_default_order_does_not_change_when_symbols_are_declared_again():
    e = sg.parse("b - a")
    a, b = sg.scalars("a b")
    assert sg.compile(e, **NP)(1.0, 2.0) == 2.0 - 1.0
    b, a = sg.scalars("b a")  # unrelated code declares them the other way round
    assert sg.compile(e, **NP)(1.0, 2.0) == 2.0 - 1.0
    assert sg.compile(e, **NP).input_names == ("a", "b")


def test_default_order_sorts_digits_as_numbers():
    x10, x2, x1 = sg.scalars("x10 x2 x1")
    f = sg.compile(x10 * 100.0 + x2 * 10.0 + x1, **NP)
    assert f.input_names == ("x1", "x2", "x10")
    assert f(1.0, 2.0, 3.0) == 321.0


def test_default_order_puts_wrt_first_in_wrt_order_then_the_rest_by_name():
    p = sg.scalar("p_decl")
    unused = sg.tensor("unused_decl", shape=("m",))
    q = sg.scalar("q_decl")
    r = sg.scalar("r_decl")
    vg = sg.value_and_grad(q * p * r, wrt=[q, unused], **NP)
    assert vg.input_names == ("q_decl", "unused_decl", "p_decl", "r_decl")
    value, (dq, dunused) = vg(5.0, np.ones(3), 2.0, 3.0)
    assert (value, dq) == (30.0, 6.0)
    np.testing.assert_array_equal(dunused, np.zeros(3))
    assert sg.value_and_grad(q * p * r, wrt=r, **NP).input_names == ("r_decl", "p_decl", "q_decl")


def test_inputs_given_rule_the_order():
    a, b = sg.scalars("a b")
    vg = sg.value_and_grad(b - a, wrt=[a], inputs=[b, a], **NP)
    assert vg.input_names == ("b", "a")
    assert vg(2.0, 1.0) == (1.0, (-1.0,))


def test_default_order_is_stable_under_threads():
    import threading

    errors = []
    stop = threading.Event()

    def build():
        for _ in range(60):
            p, q = sg.scalars("p_thr q_thr")
            f = sg.compile(p - q, **NP)
            if f.input_names != ("p_thr", "q_thr") or f(5.0, 2.0) != 3.0:
                errors.append(f.input_names)
            vg = sg.value_and_grad(p - q, wrt=[q], **NP)
            if vg.input_names != ("q_thr", "p_thr") or vg(2.0, 5.0) != (3.0, (-1.0,)):
                errors.append(vg.input_names)

    def declare():
        while not stop.is_set():
            sg.scalars("q_thr p_thr")

    decl = [threading.Thread(target=declare) for _ in range(2)]
    builders = [threading.Thread(target=build) for _ in range(3)]
    for t in decl + builders:
        t.start()
    for t in builders:
        t.join()
    stop.set()
    for t in decl:
        t.join()
    assert errors == []


def test_compile_accepts_a_constant_output():
    f = sg.compile(sg.constant(np.array([1.0, 2.0])) * 3.0, **NP)
    assert f.inputs == ()
    np.testing.assert_array_equal(f(), [3.0, 6.0])


# ---------------------------------------------------------------- value_and_grad


def test_value_and_grad_with_a_list_returns_a_tuple_of_gradients():
    x, y = sg.scalars("x y")
    vg = sg.value_and_grad(x * y + sg.sin(x), wrt=[x, y], inputs=[x, y], **NP)
    value, grads = vg(0.7, -1.3)
    assert isinstance(grads, tuple) and len(grads) == 2
    assert value == pytest.approx(0.7 * -1.3 + np.sin(0.7), rel=1e-15)
    assert grads[0] == pytest.approx(-1.3 + np.cos(0.7), rel=1e-15)  # y + cos(x)
    assert grads[1] == pytest.approx(0.7, rel=1e-15)  # x


def test_value_and_grad_with_a_single_symbol_returns_a_single_gradient():
    x, y = sg.scalars("x y")
    vg = sg.value_and_grad(x * y + sg.sin(x), wrt=y, inputs=[x, y], **NP)
    value, dy = vg(0.7, -1.3)
    assert not isinstance(dy, tuple)
    assert dy == pytest.approx(0.7)


def test_value_and_grad_with_a_one_element_list_returns_a_one_element_tuple():
    x, y = sg.scalars("x y")
    value, grads = sg.value_and_grad(x * y, wrt=(y,), inputs=[x, y], **NP)(2.0, 3.0)
    assert grads == (2.0,)


def test_value_and_grad_seed_example_affine():
    W, x, b = sg.scalars("W x b")
    vg = sg.value_and_grad(W * x + b, wrt=[W, x, b], inputs=[W, x, b])  # default backend
    value, (dW, dx, db) = vg(-2.0, 5.0, 3.0)
    assert (value, dW, dx, db) == (-7.0, 5.0, -2.0, 1.0)


def test_value_and_grad_explicit_inputs_order_with_tensors():
    W = sg.tensor("W", shape=("d",))
    X = sg.tensor("X", shape=("n", "d"))
    t = sg.tensor("t", shape=("n",))
    vg = sg.value_and_grad(sg.sum((X @ W - t) ** 2), wrt=[W], inputs=[W, X, t], **NP)
    rng = np.random.default_rng(0)
    w0, x0, t0 = rng.normal(size=3), rng.normal(size=(5, 3)), rng.normal(size=5)
    value, (dW,) = vg(w0, x0, t0)
    residual = x0 @ w0 - t0
    assert value == pytest.approx(np.sum(residual**2), rel=1e-12)
    np.testing.assert_allclose(dW, 2 * x0.T @ residual, rtol=1e-12)


def test_gradient_wrt_an_unused_symbol_is_zeros_of_its_shape():
    x = sg.scalar("x")
    V = sg.tensor("V", shape=("m", 2))
    u = sg.scalar("u")
    vg = sg.value_and_grad(x * x, wrt=[x, V, u], inputs=[x, V, u], **NP)
    assert vg.input_names == ("x", "V", "u")
    value, (dx, dV, du) = vg(3.0, np.ones((4, 2)), 1.0)
    assert (value, dx, du) == (9.0, 6.0, 0.0)
    assert dV.shape == (4, 2) and dV.dtype == np.float64 and not dV.any()


def test_gradient_wrt_an_unused_symbol_with_numba_is_zeros():
    x = sg.scalar("x")
    V = sg.tensor("V", shape=("m", 2))
    vg = sg.value_and_grad(x * x, wrt=[x, V], inputs=[x, V])
    value, (dx, dV) = vg(3.0, np.ones((3, 2)))
    assert (value, dx) == (9.0, 6.0)
    np.testing.assert_array_equal(dV, np.zeros((3, 2)))


def test_symbolic_grad_list_gives_list_and_symbol_gives_expr():
    x, y = sg.scalars("x y")
    e = x * y + sg.sin(x)
    grads = sg.grad(e, [x, y])
    assert isinstance(grads, list) and len(grads) == 2
    assert all(isinstance(g, sg.Expr) for g in grads)
    single = sg.grad(e, y)
    assert isinstance(single, sg.Expr)
    f = sg.compile(grads + [single], inputs=[x, y], **NP)
    gx, gy, gy_again = f(0.7, -1.3)
    assert gx == pytest.approx(-1.3 + np.cos(0.7)) and gy == gy_again == 0.7


# ---------------------------------------------------------------- value_and_grad errors


def test_non_scalar_loss_is_a_shape_error_naming_the_shape():
    X = sg.tensor("X", shape=("n", 3))
    with pytest.raises(sg.ShapeError) as info:
        sg.value_and_grad(X * 2.0, wrt=[X], **NP)
    assert "(n, 3)" in str(info.value)
    with pytest.raises(sg.ShapeError) as info:
        sg.grad(X * 2.0, [X])
    assert "(n, 3)" in str(info.value)


def test_duplicate_inputs_are_an_error_naming_the_symbol():
    x, y = sg.scalars("x y")
    with pytest.raises(sg.InputError) as info:
        sg.compile(x * y, inputs=[x, y, x], **NP)
    assert "'x'" in str(info.value) and "twice" in str(info.value)


def test_inputs_missing_a_used_symbol_is_an_error_naming_it():
    x, y, z = sg.scalars("x y z")
    with pytest.raises(sg.InputError) as info:
        sg.compile(x * y * z, inputs=[x], **NP)
    message = str(info.value)
    assert "'y'" in message and "'z'" in message


def test_wrt_missing_from_explicit_inputs_is_an_error_naming_it():
    x, y, z = sg.scalars("x y z")
    with pytest.raises(sg.InputError) as info:
        sg.value_and_grad(x * y, wrt=[z], inputs=[x, y], **NP)
    assert "'z'" in str(info.value)


def test_a_string_loss_or_wrt_name_is_an_error_saying_what_to_pass():
    with pytest.raises(sg.UnsupportedError, match=r"got the string 'x\*y \+ sin\(x\)'; parse it first"):
        sg.value_and_grad("x*y + sin(x)", wrt=["x"])
    e = sg.parse("x*y + sin(x)")
    with pytest.raises(sg.UnsupportedError, match=r"wrt must be symbols, got the name 'x'; pass the symbol"):
        sg.value_and_grad(e, wrt=["x"], **NP)
    with pytest.raises(sg.UnsupportedError, match=r"got the name 'y'"):
        sg.grad(e, ["y"])
    # what the message says works: the parsed x is the declared symbol
    vg = sg.value_and_grad(e, wrt=[sg.scalar("x")], **NP)
    value, (dx,) = vg(0.7, -1.3)
    assert np.isclose(value, 0.7 * -1.3 + np.sin(0.7)) and np.isclose(dx, -1.3 + np.cos(0.7))


@pytest.mark.parametrize("bad", ["expression", "string", "number"])
def test_wrt_that_is_not_a_symbol_is_unsupported(bad):
    x, y = sg.scalars("x y")
    wrt = {"expression": [x * y], "string": "x", "number": 1.5}[bad]
    shown = {"expression": "x * y", "string": "'x'", "number": "1.5"}[bad]
    with pytest.raises(sg.UnsupportedError) as info:
        sg.value_and_grad(x * y, wrt=wrt, **NP)
    assert shown in str(info.value)
    with pytest.raises(sg.UnsupportedError) as info:
        sg.grad(x * y, wrt)
    assert shown in str(info.value)


def test_wrt_an_integer_symbol_is_unsupported_naming_it():
    x = sg.scalar("x")
    labels = sg.tensor("labels", shape=("n",), dtype="int32")
    with pytest.raises(sg.UnsupportedError) as info:
        sg.value_and_grad(x * sg.sum(labels), wrt=[x, labels], **NP)
    assert "labels" in str(info.value) and "int32" in str(info.value)


def test_value_and_grad_needs_wrt_and_an_expression():
    x = sg.scalar("x")
    with pytest.raises(sg.UnsupportedError) as info:
        sg.value_and_grad(x * x, **NP)
    assert "wrt" in str(info.value)
    with pytest.raises(sg.UnsupportedError) as info:
        sg.value_and_grad(x * x, wrt=[], **NP)
    assert "wrt" in str(info.value)
    with pytest.raises(sg.UnsupportedError) as info:
        sg.value_and_grad(["not", "an", "expression"], wrt=[x])
    assert "list" in str(info.value)


def test_value_and_grad_of_a_bool_expression_is_unsupported():
    x, y = sg.scalars("x y")
    with pytest.raises(sg.UnsupportedError) as info:
        sg.value_and_grad(x < y, wrt=[x], **NP)
    assert "bool" in str(info.value)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("kind", ["csr_matrix", "csr_array", "coo_matrix"])
def test_a_sparse_matrix_input_is_an_input_error_saying_toarray(backend, kind):
    import scipy.sparse

    X, w = sg.tensor("X", ("n", "d")), sg.tensor("w", ("d",))
    f = sg.compile(sg.sum(X @ w), inputs=[X, w], backend=backend)
    with pytest.raises(
        sg.InputError, match=r"argument 'X': sparse matrices are not supported; pass X.toarray\(\)"
    ):
        f(getattr(scipy.sparse, kind)(np.eye(3)), np.ones(3))
    assert f(np.eye(3), np.ones(3)) == 3.0


# ---------------------------------------------------------------- calling by name


@pytest.fixture(scope="module")
def vg_xy():
    x, y = sg.scalars("x y")
    return sg.value_and_grad(x * x * y, wrt=[x, y], inputs=[x, y], **NP)


def test_keyword_call(vg_xy):
    assert vg_xy(x=3.0, y=2.0) == (18.0, (12.0, 9.0))
    assert vg_xy(y=2.0, x=3.0) == (18.0, (12.0, 9.0))


def test_mixing_positional_and_keyword(vg_xy):
    assert vg_xy(3.0, y=2.0) == (18.0, (12.0, 9.0))


def test_unknown_keyword_is_an_input_error_naming_it_and_the_inputs(vg_xy):
    with pytest.raises(sg.InputError) as info:
        vg_xy(3.0, z=2.0)
    message = str(info.value)
    assert "'z'" in message and "x" in message and "y" in message


def test_missing_argument_is_an_input_error_naming_it(vg_xy):
    with pytest.raises(sg.InputError) as info:
        vg_xy(3.0)
    assert "'y'" in str(info.value)
    with pytest.raises(sg.InputError) as info:
        vg_xy(y=3.0)
    assert "'x'" in str(info.value)
    with pytest.raises(sg.InputError) as info:
        vg_xy()
    assert "'x'" in str(info.value) and "'y'" in str(info.value)


def test_too_many_arguments_is_an_input_error_with_the_counts(vg_xy):
    with pytest.raises(sg.InputError) as info:
        vg_xy(1.0, 2.0, 3.0)
    message = str(info.value)
    assert "2" in message and "3" in message and "x, y" in message


def test_same_argument_twice_is_an_input_error_naming_it(vg_xy):
    with pytest.raises(sg.InputError) as info:
        vg_xy(3.0, 2.0, x=1.0)
    assert "'x'" in str(info.value)


def test_keyword_names_are_symbol_names_even_when_they_are_python_keywords():
    lam, out = sg.scalars("lambda out")
    f = sg.compile(lam - out, inputs=[lam, out], **NP)
    assert f.input_names == ("lambda", "out")
    assert f(**{"lambda": 5.0, "out": 1.0}) == 4.0


def test_keyword_call_with_numba_backend():
    x, y = sg.scalars("x y")
    vg = sg.value_and_grad(x * x * y, wrt=[x, y], inputs=[x, y])
    assert vg(y=2.0, x=3.0) == (18.0, (12.0, 9.0))
    with pytest.raises(sg.InputError) as info:
        vg(3.0, w=1.0)
    assert "'w'" in str(info.value)


# ---------------------------------------------------------------- check_grad


def _check_grad_cases():
    x, y = sg.scalars("x y")
    X = sg.tensor("X", shape=("n", 3))
    w = sg.tensor("w", shape=(3,))
    t = sg.tensor("t", shape=("n",))
    rng = np.random.default_rng(1)
    return [
        ("xy_sin", x * y + sg.sin(x), [x, y], (0.7, -1.3)),
        ("exp_log", sg.exp(x) * sg.log(y * y + 1.0) / (1.0 + x * x), [x, y], (0.3, 2.0)),
        (
            "tanh_regression",
            sg.mean(sg.tanh(X @ w - t) ** 2),
            [w, X, t],
            (rng.normal(size=3), rng.normal(size=(4, 3)), rng.normal(size=4)),
        ),
        ("sigmoid_sum", sg.sum(sg.sigmoid(X) * X), [X], (rng.normal(size=(2, 3)),)),
    ]


@pytest.mark.parametrize("case", range(4))
def test_check_grad_is_small_for_correct_gradients(case):
    name, loss, wrt, args = _check_grad_cases()[case]
    vg = sg.value_and_grad(loss, wrt=wrt, inputs=wrt, **NP)
    assert sg.check_grad(vg, *args) < 1e-6, name


def test_check_grad_with_numba_backend_and_keywords():
    x, y = sg.scalars("x y")
    vg = sg.value_and_grad(x * y + sg.sin(x), wrt=[x, y], inputs=[x, y])
    assert sg.check_grad(vg, x=0.7, y=-1.3) < 1e-6


def test_check_grad_detects_a_wrong_gradient():
    # a Compiled whose "gradient" output is deliberately not the loss's gradient
    x = sg.scalar("x")
    good = sg.value_and_grad(x * x * x, wrt=x, **NP)
    wrong = sg.value_and_grad(x * x * x, wrt=x, **NP)
    wrong._entry = lambda v: (good(v)[0], good(v)[1] + 1.0)
    assert sg.check_grad(good, 1.5) < 1e-6
    assert sg.check_grad(wrong, 1.5) > 0.1


def test_check_grad_rejects_functions_not_made_by_value_and_grad():
    x, y = sg.scalars("x y")
    with pytest.raises(sg.UnsupportedError) as info:
        sg.check_grad(sg.compile(x * y, **NP), 1.0, 2.0)
    assert "value_and_grad" in str(info.value)
    with pytest.raises(sg.UnsupportedError):
        sg.check_grad(lambda a, b: (a * b, (b, a)), 1.0, 2.0)
