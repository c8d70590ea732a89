"""Every ordinary way of calling a compiled function gives the positional float call's result:
numpy scalars, 0-d arrays, keywords in any mix; what cannot bind is an InputError naming it."""

import itertools
import math

import numpy as np
import pytest

import symgrad as sg

BACKENDS = ["numpy", "numba"]


@pytest.fixture(scope="module", params=BACKENDS)
def vg3(request):
    x, y, z = sg.scalars("x y z")
    return sg.value_and_grad(x * y + sg.sin(x) * z, wrt=[x, y, z], inputs=[x, y, z], backend=request.param)


def expected(x, y, z):
    return x * y + math.sin(x) * z, (y + math.cos(x) * z, x, math.sin(x))


def close(got, want):
    value, grads = got
    assert value == pytest.approx(want[0], rel=1e-15)
    assert grads == pytest.approx(want[1], rel=1e-15)


ARGS = (0.7, -1.3, 2.5)
KINDS = {
    "float": float,
    "np.float64": np.float64,
    "np.float32": np.float32,
    "0-d array": np.array,
    "0-d float32 array": lambda v: np.array(v, dtype=np.float32),
    "int": lambda v: int(round(v * 10)),
    "np.int64": lambda v: np.int64(round(v * 10)),
    "0-d int array": lambda v: np.array(round(v * 10)),
    "0-d bool array": lambda v: np.array(v > 0),
}


@pytest.mark.parametrize("kind", KINDS)
def test_scalar_argument_kinds_give_the_float_result(vg3, kind):
    args = [KINDS[kind](v) for v in ARGS]
    close(vg3(*args), expected(*[float(a) for a in args]))


@pytest.mark.parametrize("n_positional", [0, 1, 2, 3])
def test_any_mix_of_positional_and_keyword_arguments_binds_the_same(vg3, n_positional):
    names = ("x", "y", "z")
    for order in itertools.permutations(range(n_positional, 3)):
        named = {names[k]: ARGS[k] for k in order}
        close(vg3(*ARGS[:n_positional], **named), expected(*ARGS))


@pytest.mark.parametrize("kind", KINDS)
def test_every_scalar_kind_binds_by_keyword_in_any_order_and_mix(vg3, kind):
    values = [KINDS[kind](v) for v in ARGS]
    want = expected(*[float(v) for v in values])
    names = ("x", "y", "z")
    for n_positional in range(4):
        for order in itertools.permutations(range(n_positional, 3)):
            close(vg3(*values[:n_positional], **{names[k]: values[k] for k in order}), want)


def test_arguments_of_different_kinds_mix_by_position_and_keyword(vg3):
    # one call, three kinds: the machine code reads each as float() does
    got = vg3(np.float64(0.7), z=np.array(2.5, dtype=np.float32), y=np.array(-13))
    close(got, expected(0.7, -13.0, float(np.float32(2.5))))
    close(vg3(np.array(0.7), np.float32(-1.3), z=3), expected(0.7, float(np.float32(-1.3)), 3.0))


def test_a_keyword_call_leaves_the_callers_dict_alone(vg3):
    named = {"x": 0.7, "y": -1.3, "z": 2.5}
    vg3(**named)
    assert named == {"x": 0.7, "y": -1.3, "z": 2.5}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f: f(0.7, -1.3, x=2.5), "got argument 'x' twice"),
        (lambda f: f(0.7, y=-1.3, q=1.0, z=2.5), "unexpected argument 'q'; its inputs are x, y, z"),
        (lambda f: f(y=-1.3, z=2.5), "missing argument 'x'"),
        (lambda f: f(0.7, z=2.5), "missing argument 'y'"),
        (lambda f: f(z=1.0), "missing arguments 'x', 'y'"),
        (lambda f: f(0.7, -1.3, 2.5, 4.0), r"takes 3 arguments \(x, y, z\), got 4"),
        (lambda f: f(0.7, -1.3, 2.5, 4.0, x=1.0), r"takes 3 arguments \(x, y, z\), got 4"),
        (lambda f: f(), "missing arguments 'x', 'y', 'z'"),
        (lambda f: f(np.array(0.7), -1.3, 2.5, x=np.array(1.0)), "got argument 'x' twice"),
        (lambda f: f(0.7, -1.3, z=2.5, y=1.0), "got argument 'y' twice"),
        (lambda f: f(np.float64(0.7), y=-1.3, x=0.7, z=2.5), "got argument 'x' twice"),
        (lambda f: f(0.7, -1.3, 2.5, q=1.0), "unexpected argument 'q'; its inputs are x, y, z"),
        (lambda f: f(x=0.7, y=-1.3, z=2.5, w=1.0), "unexpected argument 'w'; its inputs are x, y, z"),
        (lambda f: f(X=0.7, y=-1.3, z=2.5), "unexpected argument 'X'; its inputs are x, y, z"),
        (
            lambda f: f(np.array(0.7), np.float64(-1.3), 2.5, np.array(4.0)),
            r"takes 3 arguments \(x, y, z\), got 4",
        ),
        (lambda f: f(0.7, -1.3, 2.5, 4.0, 5.0), r"takes 3 arguments \(x, y, z\), got 5"),
    ],
)
def test_arguments_that_cannot_bind_are_input_errors_naming_them(vg3, call, message):
    with pytest.raises(sg.InputError, match=message):
        call(vg3)


def test_a_name_given_by_keyword_and_again_in_its_compatibility_form_is_twice():
    # the symbol's name is stored NFKC-normalised; the full-width form reaches the entry unnormalised
    n, m = sg.scalars("n m")
    f = sg.compile(n - m, inputs=[n, m], backend="numpy")
    assert f(**{"ｎ": 5.0, "m": 1.0}) == 4.0
    with pytest.raises(sg.InputError, match="got argument 'n' twice"):
        f(**{"n": 5.0, "ｎ": 5.0, "m": 1.0})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1.5", "argument 'x' must be a float64 scalar, got str"),
        (np.array([0.7]), r"argument 'x' must be a scalar, got an array of shape \(1,\)"),
        (np.array(1 + 2j), "argument 'x' must be a float64 scalar, got complex128"),
        (None, "argument 'x' must be a float64 scalar, got NoneType"),
        (10**400, r"argument 'x': the int 10{36}\.\.\. is too large for float64"),
    ],
)
def test_scalar_arguments_of_the_wrong_kind_are_input_errors(vg3, value, message):
    with pytest.raises(sg.InputError, match=message):
        vg3(value, -1.3, 2.5)


@pytest.mark.parametrize(
    ("named", "message"),
    [
        ({"x": "1.5", "y": -1.3, "z": 2.5}, "argument 'x' must be a float64 scalar, got str"),
        ({"z": np.array([2.5]), "y": -1.3}, r"argument 'z' must be a scalar, got an array of shape \(1,\)"),
        ({"y": np.array(1 + 2j), "z": 2.5}, "argument 'y' must be a float64 scalar, got complex128"),
        ({"y": np.array("1.5"), "z": 2.5}, "argument 'y' must be a float64 scalar, got str_"),
        ({"z": None, "y": -1.3}, "argument 'z' must be a float64 scalar, got NoneType"),
    ],
)
def test_scalar_arguments_of_the_wrong_kind_by_keyword_are_input_errors_naming_them(vg3, named, message):
    given = 3 - len(named)  # the rest by position
    with pytest.raises(sg.InputError, match=message):
        vg3(*ARGS[:given], **named)


@pytest.mark.parametrize("backend", BACKENDS)
def test_array_argument_kinds_give_the_float64_array_result(backend):
    x = sg.tensor("x", ("n",))
    vg = sg.value_and_grad(sg.sum(x[1:] * x[:-1] + sg.sin(x[:-1])), wrt=[x], backend=backend)
    a = np.linspace(-1.0, 1.0, 7)
    want_value = np.sum(a[1:] * a[:-1] + np.sin(a[:-1]))
    want_grad = np.zeros(7)
    want_grad[:-1] += a[1:] + np.cos(a[:-1])
    want_grad[1:] += a[:-1]
    read_only = a.copy()
    read_only.flags.writeable = False
    for arg in [a, read_only, np.repeat(a, 2)[::2], a.tolist(), np.asfortranarray(a)]:
        value, (grad,) = vg(arg)
        assert value == pytest.approx(want_value, rel=1e-14)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-14)
    value, (grad,) = vg(x=read_only)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-14)
    assert not read_only.flags.writeable and np.array_equal(read_only, a)
    ints = np.arange(-3, 4)
    np.testing.assert_allclose(vg(ints)[0], np.sum(ints[1:] * ints[:-1] + np.sin(ints[:-1])), rtol=1e-14)
    for call, message in [
        (lambda: vg(x=np.ones((2, 2))), r"argument 'x' must have rank 1, got an array of shape \(2, 2\)"),
        (lambda: vg(x=np.array(0.7)), r"argument 'x' must have rank 1, got an array of shape \(\)"),
        (lambda: vg(a, x=a), "got argument 'x' twice"),
        (lambda: vg(y=a), "unexpected argument 'y'; its inputs are x"),
        (lambda: vg(a, a), r"takes 1 argument \(x\), got 2"),
        (lambda: vg(), "missing argument 'x'"),
    ]:
        with pytest.raises(sg.InputError, match=message):
            call()


# ---- the kinds a compiled entry passes to the machine code as they are (runtime.direct_<dtype>)

I64 = 2**63


@pytest.fixture(scope="module")
def typed():
    """One numba function of a float64, a float32, an int64 and a bool scalar, and its numpy twin."""
    x, s = sg.scalar("x"), sg.scalar("s", dtype="float32")
    n, b = sg.scalar("n", dtype="int64"), sg.scalar("b", dtype="bool")
    outputs = [x * 3.0 + sg.sin(x), s * s, n * 3, sg.where(b, x, -x)]
    return {backend: sg.compile(outputs, inputs=[x, s, n, b], backend=backend) for backend in BACKENDS}


def _truth(x, s, n, b):
    # independent of symgrad: what float(), np.float32, int() and bool() make of each value
    x = float(x)
    return (
        x * 3.0 + math.sin(x),
        np.float32(s) * np.float32(s),
        (int(n) * 3 + I64) % 2**64 - I64,
        x if b else -x,
    )


class _Float(float):
    """A float subclass: read with float(), as numpy's float64 is."""


# (ints past int64 too: their float(), as numpy's float64 makes)
FLOAT64_KINDS = [
    0.7, _Float(0.7), np.float64(0.7), np.float32(0.7), np.float16(0.7), np.int8(-7), np.int16(7), np.int32(-7),
    np.int64(7), np.uint8(7), np.uint16(7), np.uint32(7), np.uint64(2**64 - 1), True, np.True_,
    3, I64 - 1, -I64, I64, -(I64 * 4), 2**70, 10**300, np.array(0.7), np.array(7), np.array(0.7, dtype=np.float32),
]  # fmt: skip
INT64_KINDS = [
    5,
    I64 - 1,
    -I64,
    True,
    np.True_,
    np.int64(-5),
    np.int32(5),
    np.uint8(5),
    np.uint32(5),
    np.array(5),
    np.array(-5, dtype=np.int32),
    np.array(True),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_scalar_kind_gives_the_value_float_int_and_bool_make_of_it(typed, backend):
    f = typed[backend]
    for x in FLOAT64_KINDS:
        assert f(x, 1.5, 2, True) == pytest.approx(_truth(x, 1.5, 2, True), rel=1e-15), repr(x)
    for n in INT64_KINDS:
        got = f(0.5, 1.5, n, False)
        assert got[2] == (int(n) * 3 + I64) % 2**64 - I64, repr(n)  # int64 arithmetic wraps
    for s in [np.float32(1.1), np.float16(1.5), 1.1, 2, np.float64(1.1), np.array(1.1, dtype=np.float32)]:
        assert f(0.5, s, 2, True)[1] == _truth(0.5, s, 2, True)[1], repr(s)
    for s in [np.array(1.1), np.array(2), np.array(1.5, dtype=np.float16)]:
        assert f(0.5, s, 2, True)[1] == _truth(0.5, s[()], 2, True)[1], repr(s)
    for b in [True, False, np.True_, np.False_, np.array(True), np.array(False)]:
        assert f(0.5, 1.5, 2, b)[3] == (0.5 if b else -0.5), repr(b)


def test_the_common_kinds_reach_the_machine_code_without_a_conversion_call(typed, monkeypatch):
    # each kind the entry tests for itself goes to the kernel as it is: runtime.scalar and
    # runtime.array are never called (a read-only array included: the kernel never writes it)
    from symgrad.codegen import runtime

    def refuse(*args):
        raise AssertionError(f"converted in Python: {args!r}")

    monkeypatch.setattr(runtime, "scalar", refuse)
    monkeypatch.setattr(runtime, "array", refuse)
    f = typed["numba"]
    # (a Python int of any size: numba's read of one too large raises, see the errors below)
    kinds = [0.7, _Float(0.7), np.float64(0.7), np.float32(0.7), np.int64(7), 3, -I64, I64, 2**70, 10**300]
    for x in kinds + [True, np.array(0.7)]:
        f(x, np.float32(1.5), 2, True)
    for n in [5, I64 - 1, -I64, np.int32(5), np.True_]:
        f(0.7, np.float16(1.5), n, np.True_)
    # an int too large for the parameter is refused by numba's read (OverflowError), then named
    # by runtime.scalar, the one conversion: here it raises AssertionError, not InputError
    with pytest.raises(AssertionError, match="converted in Python"):
        f(10**400, np.float32(1.5), 2, True)
    with pytest.raises(AssertionError, match="converted in Python"):
        f(0.7, np.float32(1.5), I64, True)
    # a 0-d array of the parameter's dtype: numba reads it as float(), int() and bool() do
    assert f(np.array(0.7), np.array(1.5, dtype=np.float32), np.array(-5), np.array(False)) == pytest.approx(
        _truth(0.7, 1.5, -5, False), rel=1e-15
    )
    x = sg.tensor("x", ("n",))
    g = sg.value_and_grad(sg.sum(x[1:] * x[:-1]), wrt=[x])
    a = np.linspace(-1.0, 1.0, 5)
    a.flags.writeable = False
    value, (grad,) = g(a)
    assert value == pytest.approx(float(np.sum(a[1:] * a[:-1])), rel=1e-15)
    np.testing.assert_array_equal(grad, np.r_[a[1:], 0.0] + np.r_[0.0, a[:-1]])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("position", "value", "message"),
    [
        (0, "1.5", "argument 'x' must be a float64 scalar, got str"),
        (0, np.array("1.5"), "argument 'x' must be a float64 scalar, got str_"),
        (0, np.array(None, dtype=object), "argument 'x' must be a float64 scalar, got NoneType"),
        (0, np.complex128(1.5), "argument 'x' must be a float64 scalar, got complex128"),
        (0, np.array([0.7]), r"argument 'x' must be a scalar, got an array of shape \(1,\)"),
        (0, 10**400, r"argument 'x': the int 10{36}\.\.\. is too large for float64"),
        (0, -(10**400), r"argument 'x': the int -10{35}\.\.\. is too large for float64"),
        (2, I64, "argument 'n': 9223372036854775808 does not fit in int64"),
        (2, -I64 - 1, "argument 'n': -9223372036854775809 does not fit in int64"),
        (2, 2**70, "argument 'n': 1180591620717411303424 does not fit in int64"),
        (3, 2**70, "argument 'b' must be a bool scalar, got int 1180591620717411303424"),
        (2, np.uint64(I64), "argument 'n': 9223372036854775808 does not fit in int64"),
        (2, 1.5, "argument 'n' must be an int64 scalar, got float64 1.5"),
        (2, np.float64(2.0), r"argument 'n' must be an int64 scalar, got float64 np.float64\(2.0\)"),
        (3, 1, "argument 'b' must be a bool scalar, got int64 1"),
        (3, 1.0, "argument 'b' must be a bool scalar, got float64 1.0"),
        (1, "x", "argument 's' must be a float32 scalar, got str"),
        # arrays that are not 0-d, or 0-d of a dtype the parameter cannot take
        (1, np.ones(1, dtype=np.float32), r"argument 's' must be a scalar, got an array of shape \(1,\)"),
        (1, np.array(1.5j, dtype=np.complex64), "argument 's' must be a float32 scalar, got complex64"),
        (2, np.array([5]), r"argument 'n' must be a scalar, got an array of shape \(1,\)"),
        (2, np.array(1.5), r"argument 'n' must be an int64 scalar, got float64 np.float64\(1.5\)"),
        (2, np.array(I64, dtype=np.uint64), "argument 'n': 9223372036854775808 does not fit in int64"),
        (3, np.ones((1, 1), dtype=bool), r"argument 'b' must be a scalar, got an array of shape \(1, 1\)"),
        (3, np.array(1), r"argument 'b' must be a bool scalar, got int64 np.int64\(1\)"),
        (3, np.array("True"), "argument 'b' must be a bool scalar, got str_"),
    ],
)
def test_scalars_of_a_kind_the_parameter_cannot_take_keep_their_error(
    typed, backend, position, value, message
):
    args = [0.7, np.float32(1.5), 2, True]
    args[position] = value
    with pytest.raises(sg.InputError, match=message):
        typed[backend](*args)


def test_a_saved_module_compiles_one_version_whatever_scalar_kinds_it_is_given(typed, tmp_path):
    # a saved module calls numba's dispatcher, which would compile a float32 (less precise)
    # version for np.float32 arguments: there only the kinds typed as the parameter go as they are
    import importlib.util

    path = typed["numba"].save(tmp_path / "typed_kinds.py")
    spec = importlib.util.spec_from_file_location("typed_kinds", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for x in [0.7, np.float64(0.7), np.float32(0.7), np.int32(-7), 3, np.array(0.7)]:
        for n, b in [(2, True), (np.int32(2), np.True_), (np.uint8(2), np.array(False))]:
            got = module.call(x, np.float16(1.5), n, b)
            assert got == pytest.approx(_truth(x, 1.5, n, b), rel=1e-15), (x, n, b)
    assert len(module.kernel.signatures) == 1


def test_two_d_arrays_of_any_layout_and_integer_dtype_give_numpys_result():
    # converted arrays (another dtype, a layout that is not C-ordered) reach the machine code as
    # new C-ordered arrays, whatever order the conversion would keep
    X = sg.tensor("X", ("n", "d"))
    f = sg.compile([sg.sum(sg.sin(X) * X[:, :1]), X * 2.0], inputs=[X])
    base = np.arange(12).reshape(3, 4) - 5
    layouts = [
        base,
        np.asfortranarray(base),
        np.asfortranarray(base).astype(np.float64),
        base.T.copy().T,
        base[::-1, ::-1],
        base.astype(np.float32)[:, ::-1],
    ]
    for arg in layouts:
        want = np.asarray(arg, dtype=np.float64)
        value, doubled = f(arg)
        assert value == pytest.approx(float(np.sum(np.sin(want) * want[:, :1])), rel=1e-14)
        np.testing.assert_array_equal(doubled, want * 2.0)


# ---- a scalar given as an array of rank > 0 (the machine code's read refuses it: runtime.RANK_READ_BY_KERNEL)


@pytest.mark.parametrize("bad", [np.array([0.5]), np.ones((1, 1)), np.array([0.5, 1.5])])
def test_a_scalar_given_as_an_array_of_rank_above_zero_is_an_input_error_naming_it(bad):
    p, q = sg.scalars("p q")
    f = sg.compile(p * q - sg.sin(q), inputs=[p, q])
    shape = re_shape(bad.shape)
    with pytest.raises(sg.InputError, match=rf"argument 'q' must be a scalar, got an array of shape {shape}"):
        f(0.5, bad)
    with pytest.raises(sg.InputError, match=rf"argument 'p' must be a scalar, got an array of shape {shape}"):
        f(q=2.0, p=bad)
    assert f(np.array(0.5), q=np.array(2.0)) == pytest.approx(0.5 * 2.0 - math.sin(2.0), rel=1e-15)


def re_shape(shape):
    return str(shape).replace("(", r"\(").replace(")", r"\)")


def test_a_type_error_of_the_machine_code_not_about_an_argument_is_raised_as_it_was(monkeypatch):
    p, q = sg.scalars("p q")
    f = sg.compile(p * q + sg.cos(q), inputs=[p, q])
    error = TypeError("raised by the kernel")

    def kernel_entry(*args):
        raise error

    monkeypatch.setitem(f._entry.__globals__, "kernel_entry", kernel_entry)
    with pytest.raises(TypeError) as raised:
        f(np.array(0.5), 2.0)
    assert raised.value is error
    with pytest.raises(sg.InputError, match=r"argument 'q' must be a scalar, got an array of shape \(1,\)"):
        f(0.5, np.array([2.0]))


def test_where_float_reads_a_size_one_array_the_entry_tests_the_rank_itself(monkeypatch):
    # NumPy 1.25-1.26: float(np.ones(1)) is 1.0 (with a DeprecationWarning), so numba's read
    # would take a (1,)-array for a scalar: the entry tests a 0-d array's rank before the call
    from symgrad.codegen import emit

    monkeypatch.setattr(emit, "RANK_READ_BY_KERNEL", ())
    p, q = sg.scalars("p q")
    f = sg.compile(p * q - sg.tanh(q), inputs=[p, q])
    assert "q.ndim" in f.source
    with pytest.raises(sg.InputError, match=r"argument 'q' must be a scalar, got an array of shape \(1,\)"):
        f(0.5, np.array([2.0]))
    assert f(np.array(0.5), np.array(2.0)) == pytest.approx(0.5 * 2.0 - math.tanh(2.0), rel=1e-15)
