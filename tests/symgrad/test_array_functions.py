"""numpy's array functions and Python constructs on traced values (issue 20).

Each case is one function of ``(xp, x)`` written with numpy's names: numpy runs it on arrays
(the truth), symgrad traces it, and JAX (when importable) runs it with ``jax.numpy``. Values
are compared with numpy's; gradients of ``sum(f(x) * W)`` (W random) with central differences
of numpy's own function, on both backends.
"""

import builtins

import numpy as np
import pytest

import symgrad as sg

RNG = np.random.default_rng(20)


def _split_join(parts):
    return np.concatenate([np.ravel(p) * (i + 1) for i, p in enumerate(parts)])


# name: (f(xp, x), shape of x). x is random in (-1.5, 1.5) with entries far apart (sort, select).
CASES = {
    "cumsum_flat": (lambda xp, x: xp.cumsum(x), (3, 4)),
    "cumsum_axis0": (lambda xp, x: xp.cumsum(x, axis=0), (3, 4)),
    "cumsum_axis1_3d": (lambda xp, x: xp.cumsum(x, axis=1), (2, 3, 4)),
    "cumsum_last": (lambda xp, x: xp.cumsum(x, axis=-1), (3, 4)),
    "cumprod_flat": (lambda xp, x: xp.cumprod(x), (5,)),
    "cumprod_axis0": (lambda xp, x: xp.cumprod(x, axis=0), (3, 4)),
    "cumprod_axis1": (lambda xp, x: xp.cumprod(x, axis=1), (3, 4)),
    "sort_last": (lambda xp, x: xp.sort(x), (3, 4)),
    "sort_axis0": (lambda xp, x: xp.sort(x, axis=0), (4, 3)),
    "sort_flat": (lambda xp, x: xp.sort(x, axis=None), (3, 4)),
    "sort_1d": (lambda xp, x: xp.sort(x), (7,)),
    "flip_all": (lambda xp, x: xp.flip(x), (3, 4)),
    "flip_axis1": (lambda xp, x: xp.flip(x, axis=1), (2, 3, 4)),
    "fliplr": (lambda xp, x: xp.fliplr(x), (3, 4)),
    "flipud": (lambda xp, x: xp.flipud(x), (3, 4)),
    "rot90": (lambda xp, x: xp.rot90(x), (3, 4)),
    "rot90_k2": (lambda xp, x: xp.rot90(x, 2), (3, 4)),
    "rot90_k3_axes": (lambda xp, x: xp.rot90(x, 3, axes=(1, 2)), (2, 3, 4)),
    "rot90_k_minus1": (lambda xp, x: xp.rot90(x, -1), (3, 4)),
    "roll": (lambda xp, x: xp.roll(x, 2), (3, 4)),
    "roll_axis1_negative": (lambda xp, x: xp.roll(x, -1, axis=1), (3, 4)),
    "roll_more_than_length": (lambda xp, x: xp.roll(x, 7, axis=0), (3, 4)),
    "roll_two_axes": (lambda xp, x: xp.roll(x, (1, 2), axis=(0, 1)), (3, 4)),
    "pad_constant": (lambda xp, x: xp.pad(x, ((1, 2), (0, 1)), constant_values=0.5), (3, 4)),
    "pad_constant_int_width": (lambda xp, x: xp.pad(x, 2), (4,)),
    "pad_traced_fill": (lambda xp, x: xp.pad(x[1:], (1, 2), constant_values=x[0]), (4,)),
    "pad_edge": (lambda xp, x: xp.pad(x, ((2, 1), (1, 0)), mode="edge"), (3, 4)),
    "pad_reflect": (lambda xp, x: xp.pad(x, ((2, 1), (1, 3)), mode="reflect"), (3, 4)),
    "pad_symmetric": (lambda xp, x: xp.pad(x, ((2, 1), (1, 3)), mode="symmetric"), (3, 4)),
    "pad_wrap": (lambda xp, x: xp.pad(x, ((2, 1), (1, 3)), mode="wrap"), (3, 4)),
    "tile": (lambda xp, x: xp.tile(x, (2, 3)), (3, 4)),
    "tile_rank_up": (lambda xp, x: xp.tile(x, (2, 1, 2)), (3,)),
    "tile_int": (lambda xp, x: xp.tile(x, 2), (2, 3)),
    "repeat_flat": (lambda xp, x: xp.repeat(x, 2), (2, 3)),
    "repeat_axis1": (lambda xp, x: xp.repeat(x, 3, axis=1), (2, 3)),
    "repeat_counts": (lambda xp, x: xp.repeat(x, [1, 0, 2], axis=0), (3, 2)),
    "split": (lambda xp, x: _split_join(xp.split(x, 2, axis=1)), (3, 4)),
    "split_indices": (lambda xp, x: _split_join(xp.split(x, [1, 3], axis=1)), (3, 4)),
    "array_split": (lambda xp, x: _split_join(xp.array_split(x, 3)), (7,)),
    "hsplit": (lambda xp, x: _split_join(xp.hsplit(x, 2)), (3, 4)),
    "vsplit": (lambda xp, x: _split_join(xp.vsplit(x, [1])), (3, 4)),
    "dsplit": (lambda xp, x: _split_join(xp.dsplit(x, 2)), (2, 3, 4)),
    "moveaxis": (lambda xp, x: xp.moveaxis(x, 0, -1), (2, 3, 4)),
    "moveaxis_many": (lambda xp, x: xp.moveaxis(x, (0, 1), (2, 0)), (2, 3, 4)),
    "rollaxis": (lambda xp, x: xp.rollaxis(x, 2), (2, 3, 4)),
    "rollaxis_start": (lambda xp, x: xp.rollaxis(x, 0, 2), (2, 3, 4)),
    "atleast_1d": (lambda xp, x: xp.atleast_1d(x[0, 0]) * xp.sum(x), (2, 3)),
    "atleast_2d": (lambda xp, x: xp.atleast_2d(x[0]), (2, 3)),
    "atleast_3d_1d": (lambda xp, x: xp.atleast_3d(x[0]), (2, 3)),
    "atleast_3d_2d": (lambda xp, x: xp.atleast_3d(x), (2, 3)),
    "column_stack": (lambda xp, x: xp.column_stack([x[0], x[1] * 2, x[2]]), (3, 4)),
    "column_stack_2d": (lambda xp, x: xp.column_stack([x, x[:, :1]]), (3, 4)),
    "vstack_of_rows": (lambda xp, x: xp.vstack([x[0], x[2]]), (3, 4)),
    "hstack_one_array": (lambda xp, x: xp.hstack(x), (3, 4)),
    "vstack_one_array": (lambda xp, x: xp.vstack(x), (3, 4)),
    "dstack": (lambda xp, x: xp.dstack([x, 2 * x]), (3, 4)),
    "append_flat": (lambda xp, x: xp.append(x, x[0] * 3), (3, 4)),
    "append_axis": (lambda xp, x: xp.append(x, x[:1] ** 2, axis=0), (3, 4)),
    "select": (
        lambda xp, x: xp.select([x < -0.5, x > 0.5], [x**2, xp.sin(x)], default=x * 3),
        (4, 5),
    ),
    "linspace": (lambda xp, x: xp.linspace(x[0], x[1], 5), (3,)),
    "linspace_no_endpoint": (lambda xp, x: xp.linspace(x[0], x[1], 4, endpoint=False), (3,)),
    "linspace_arrays": (lambda xp, x: xp.linspace(x[0], x[1], 4, axis=1), (2, 3)),
    "linspace_concrete": (lambda xp, x: xp.linspace(0.0, 1.0, 6) * x[0], (3,)),
    "fmax": (lambda xp, x: xp.fmax(x[0], x[1]), (2, 5)),
    "fmin": (lambda xp, x: xp.fmin(x[0], x[1]), (2, 5)),
    "degrees": (lambda xp, x: xp.degrees(x), (4,)),
    "radians": (lambda xp, x: xp.radians(x), (4,)),
    "sinc": (lambda xp, x: xp.sinc(x), (6,)),
    "nan_to_num": (lambda xp, x: xp.nan_to_num(x), (4,)),
    "real_imag_conj": (lambda xp, x: xp.real(x) + xp.imag(x) + xp.conjugate(x) * 2 + xp.conj(x), (4,)),
    "gradient": (lambda xp, x: xp.gradient(x), (6,)),
    "gradient_spacing_edge2": (lambda xp, x: xp.gradient(x, 0.5, edge_order=2), (6,)),
    "gradient_2d": (lambda xp, x: xp.stack(xp.gradient(x)), (4, 5)),
    "gradient_axis": (lambda xp, x: xp.gradient(x, axis=1), (4, 5)),
    "remainder": (lambda xp, x: xp.remainder(x, 0.7), (5,)),
    "mod": (lambda xp, x: xp.mod(x, 0.7), (5,)),
    "fmod": (lambda xp, x: xp.fmod(x, 0.7), (5,)),
    "floor_ceil_round": (lambda xp, x: xp.floor(x) + xp.ceil(x) + xp.round(x) + x, (5,)),
    "methods": (
        lambda xp, x: (
            x.real
            + x.imag
            + x.conj()
            + x.conjugate()
            + x.cumsum(axis=1)
            + x.cumprod(0)
            + xp.take(x, x.argsort(axis=1)[:, :2].ravel(), axis=1).sum(1, keepdims=True)
            + x.repeat(1, axis=0)
        ),
        (3, 4),
    ),
    "take_and_take_along_axis": (
        lambda xp, x: (
            xp.take(x, [2, 0, 2]) + xp.take_along_axis(x, xp.array([[1, 0], [3, 3], [0, 2]]), 1).sum()
        ),
        (3, 4),
    ),
    "partition": (lambda xp, x: xp.sort(xp.partition(x, 2, axis=0), axis=0), (4, 3)),
    "argpartition": (lambda xp, x: xp.sort(xp.take_along_axis(x, xp.argpartition(x, 1), -1)), (3, 4)),
    # Python constructs
    "np_array_of_scalars": (lambda xp, x: xp.array([x[0], x[1] * 2, 3.0]), (3,)),
    "np_array_nested": (lambda xp, x: xp.array([[x[0], x[1]], [x[2], 1.0]]), (3,)),
    "np_array_of_rows": (lambda xp, x: xp.array([x[0], x[1] + 1]), (2, 3)),
    "np_asarray_of_list": (lambda xp, x: xp.asarray([x[1], x[0]]), (2,)),
    "np_stack_of_scalars": (lambda xp, x: xp.stack([x[0], x[1] ** 2]), (2,)),
    "mean_std_var_norm_of_lists": (
        lambda xp, x: (
            xp.mean([x[0], x[1]])
            + xp.std((x[0], x[1], x[2]))
            + xp.var([x[1], x[2]])
            + xp.linalg.norm([x[0], x[2]])
        ),
        (3,),
    ),
    "r_": (lambda xp, x: xp.r_[x[0], x[1:], 2.0], (3,)),
    "c_": (lambda xp, x: xp.c_[x[0], x[1]], (2, 3)),
    "builtin_max_min": (lambda xp, x: builtins.max(x[0], x[1]) - builtins.min(x[1], x[2], x[0]), (3,)),
    "builtin_max_of_array": (lambda xp, x: builtins.max(x), (5,)),
    "builtin_min_of_list": (lambda xp, x: builtins.min([x[0] * 2, x[1]]), (2,)),
    "builtin_sum_abs": (lambda xp, x: builtins.sum(x) + builtins.abs(x[0]), (3, 2)),
    "builtin_sum_of_generator": (lambda xp, x: builtins.sum(v**2 for v in x), (3, 2)),
    "iterate_rows": (lambda xp, x: xp.stack([r * (i + 1) for i, r in enumerate(x)]), (3, 2)),
    "mixed_advanced_index": (lambda xp, x: x[1, 1:, [0, 2]], (2, 3, 4)),
    "mixed_advanced_index_adjacent": (lambda xp, x: x[:, 1, [3, 0, 3]], (2, 3, 4)),
}

JAX_UNAVAILABLE = {
    # constructs only numpy's array protocol has (JAX traces them differently or refuses them)
    "np_array_nested",
    "mean_std_var_norm_of_lists",
    "builtin_max_min",
    "builtin_max_of_array",
    "builtin_min_of_list",
    "builtin_sum_of_generator",
    "r_",
    "c_",
    "repeat_counts",
}


def _input(shape):
    # distinct, away from 0 and from the kinks of select/floor/mod (|x| in (0.15, 1.45))
    n = int(np.prod(shape))
    values = RNG.permutation(np.linspace(0.15, 1.45, n)) * RNG.choice([-1.0, 1.0], n)
    values += RNG.uniform(-0.01, 0.01, n)
    return values.reshape(shape)


def _numpy_loss(fn, W):
    return lambda x: float(np.sum(np.asarray(fn(np, x), dtype=float) * W))


def _central_differences(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = eps
        g[i] = (f(x + d) - f(x - d)) / (2 * eps)
    return g


def _case(name):
    fn, shape = CASES[name]
    x = _input(shape)
    if name.startswith("floor") or name in ("remainder", "mod", "fmod"):
        x = x + 0.05  # keep a distance from the jumps at integers and multiples of 0.7
    W = RNG.normal(size=np.shape(fn(np, x)))
    return fn, x, W


def _traced(fn, W):
    return lambda x: np.sum(fn(np, x) * W)


@pytest.mark.parametrize("name", sorted(CASES))
def test_value_and_gradient_match_numpy_and_central_differences(name):
    fn, x, W = _case(name)
    vg = sg.value_and_grad(_traced(fn, W), backend="numpy")
    value, grad = vg(x)
    truth = _numpy_loss(fn, W)
    np.testing.assert_allclose(value, truth(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, _central_differences(truth, x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(CASES))
def test_traced_array_values_match_numpy(name):
    # the whole output, not only a weighted sum of it: the function on a symbolic input, compiled
    fn, x, _ = _case(name)
    if name.startswith(("np_", "mean_std", "r_", "c_", "builtin_")):
        pytest.skip("a construct routed only while a function is traced (checked above)")
    out = fn(np, sg.tensor("x", x.shape))
    got = sg.compile(out, backend="numpy")(x)
    want = fn(np, x)
    assert np.shape(got) == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# the numba backend: the new ops' lowerings (cumsum, cumprod, argsort) and one case of each
# composite's building blocks (reversed slices, gathers, scatters, concatenations, where)
NUMBA_CASES = [
    "cumsum_axis0",
    "cumsum_axis1_3d",
    "cumprod_flat",
    "cumprod_axis0",
    "sort_axis0",
    "sort_flat",
    "flip_axis1",
    "rot90_k3_axes",
    "roll_two_axes",
    "pad_reflect",
    "repeat_counts",
    "select",
    "linspace_arrays",
    "fmax",
    "sinc",
    "gradient_2d",
    "mixed_advanced_index",
]


def test_numba_backend_values_and_gradients():
    # one compiled function for the cases (numba compiles once): each case's loss on its own input
    names = NUMBA_CASES
    cases = [_case(n) for n in names]

    def total(*xs):
        return builtins.sum(
            np.sum(fn(np, x) * W) * (k + 1) for k, (x, (fn, _, W)) in enumerate(zip(xs, cases))
        )

    vg = sg.value_and_grad(total, argnums=tuple(range(len(names))), backend="numba")
    xs = [c[1] for c in cases]
    value, grads = vg(*xs)
    want = builtins.sum(_numpy_loss(fn, W)(x) * (k + 1) for k, (fn, x, W) in enumerate(cases))
    np.testing.assert_allclose(value, want, rtol=1e-10)
    for k, (name, (fn, x, W), g) in enumerate(zip(names, cases, grads)):
        expected = _central_differences(_numpy_loss(fn, W), x) * (k + 1)
        np.testing.assert_allclose(g, expected, rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("name", sorted(set(CASES) - JAX_UNAVAILABLE))
def test_gradients_match_jax(name):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    fn, x, W = _case(name)
    try:
        jax_grad = np.asarray(jax.grad(lambda v: jnp.sum(fn(jnp, v) * W))(jnp.asarray(x)))
    except (AttributeError, TypeError, NotImplementedError) as exc:
        pytest.skip(f"JAX cannot run this case: {exc}")
    _, grad = sg.value_and_grad(_traced(fn, W), backend="numpy")(x)
    np.testing.assert_allclose(grad, jax_grad, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- functional updates (x.at[...])


def _np_at(x, key, op, v):
    out = np.array(x, dtype=float)
    if op == "set":
        out[key] = v
    elif op == "add":
        np.add.at(out, key, v)
    elif op == "multiply":
        out[key] = out[key] * v
    elif op == "divide":
        out[key] = out[key] / v
    elif op == "min":
        out[key] = np.minimum(out[key], v)
    else:
        out[key] = np.maximum(out[key], v)
    return out


AT_CASES = {
    "set_int": ((1,), "set", lambda x: x[0, 0] * 3),
    "set_slice_row": ((slice(1, None), 2), "set", lambda x: x[0, :2] ** 2),
    "set_scalar_number": ((0, slice(None, 2)), "set", lambda x: 5.0),
    "add_slice": ((slice(None), slice(1, 3)), "add", lambda x: x[:, :2] * 2),
    "multiply": ((2,), "multiply", lambda x: x[0] + 2),
    "divide": ((slice(0, 2), 0), "divide", lambda x: x[2, 1:3] + 3),
    "min": ((1,), "min", lambda x: x[2] * 0.5),
    "max": ((0, slice(1, None)), "max", lambda x: -x[1, 1:]),
    "add_index_array_repeats": ((np.array([0, 2, 0]),), "add", lambda x: x[:3] * 2),
    "set_index_array_columns": ((slice(None), np.array([3, 1])), "set", lambda x: x[:, :2] ** 2),
}


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", sorted(AT_CASES))
def test_functional_index_updates_match_numpy_assignment(name, backend):
    if backend == "numba" and name not in ("set_slice_row", "add_index_array_repeats", "divide"):
        pytest.skip("numba: one basic update, one division and one scatter suffice")
    key, op, value = AT_CASES[name]
    x0 = _input((3, 4))
    W = RNG.normal(size=(3, 4))

    def traced(x):
        update = x.at[key if len(key) > 1 else key[0]]
        return np.sum(getattr(update, op)(value(x)) * W)

    def truth(x):
        return float(np.sum(_np_at(x, key if len(key) > 1 else key[0], op, value(x)) * W))

    v, g = sg.value_and_grad(traced, backend=backend)(x0)
    np.testing.assert_allclose(v, truth(x0), rtol=1e-12)
    np.testing.assert_allclose(g, _central_differences(truth, x0), rtol=1e-6, atol=1e-7)


def test_at_get_is_indexing_and_set_keeps_infinities_outside_the_updated_place():
    x = sg.tensor("x", ("n",))
    assert x.at[1:].get() is x[1:]
    f = sg.compile(x.at[0].set(2.0), backend="numpy")
    np.testing.assert_array_equal(f(np.array([np.inf, -np.inf, np.nan])), [2.0, -np.inf, np.nan])


def test_at_set_on_a_symbolic_length_checks_the_index_when_called():
    x = sg.tensor("x", ("n",))
    f = sg.compile(sg.sum(x.at[4].set(1.0)), backend="numpy")
    assert f(np.zeros(5)) == 1.0
    with pytest.raises(sg.InputError, match="n"):
        f(np.zeros(3))


# ---------------------------------------------------------------- symbolic sizes


def test_array_functions_on_symbolic_sizes_serve_every_length():
    X = sg.tensor("X", ("n", "d"))
    outs = [
        sg.cumsum(X, axis=0),
        sg.cumprod(X, axis=1),
        sg.sort(X, axis=0),
        sg.argsort(X, axis=1),
        sg.flip(X),
        sg.roll(X, 2, axis=0),
        sg.roll(X, -1, axis=1),
        sg.pad(X, ((1, 2), (2, 0)), mode="reflect"),
        sg.pad(X, 1, mode="edge"),
        sg.tile(X, (2, 1)),
        sg.repeat(X, 2, axis=1),
        sg.linspace(X[0, 0], X[1, 0], X.shape[0]),
        sg.gradient(X, axis=0),
        sg.moveaxis(X, 0, 1),
    ]
    for backend in ("numpy", "numba"):
        f = sg.compile(outs, backend=backend)
        for n, d in ((4, 3), (7, 5)):
            Xv = _input((n, d))
            want = [
                np.cumsum(Xv, axis=0),
                np.cumprod(Xv, axis=1),
                np.sort(Xv, axis=0),
                np.argsort(Xv, axis=1, kind="stable"),
                np.flip(Xv),
                np.roll(Xv, 2, axis=0),
                np.roll(Xv, -1, axis=1),
                np.pad(Xv, ((1, 2), (2, 0)), mode="reflect"),
                np.pad(Xv, 1, mode="edge"),
                np.tile(Xv, (2, 1)),
                np.repeat(Xv, 2, axis=1),
                np.linspace(Xv[0, 0], Xv[1, 0], n),
                np.gradient(Xv, axis=0),
                np.moveaxis(Xv, 0, 1),
            ]
            for k, (got, expected) in enumerate(zip(f(Xv), want)):
                np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15, err_msg=f"{backend} {k}")


def test_iterating_a_symbolic_length_traces_again_with_the_length_concrete():
    vg = sg.value_and_grad(lambda x: builtins.sum(v * v for v in x), backend="numpy")
    value, grad = vg(np.array([1.0, 2.0, 3.0]))
    assert value == 14.0
    np.testing.assert_array_equal(grad, [2.0, 4.0, 6.0])


def test_argsort_is_stable_and_integer_with_no_gradient():
    x = sg.tensor("x", (6,))
    f = sg.compile(sg.argsort(x), backend="numba")
    xv = np.array([2.0, 1.0, 2.0, 1.0, 0.0, 2.0])
    got = f(xv)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, np.argsort(xv, kind="stable"))
    (g,) = sg.grad(sg.sum(sg.cast(sg.argsort(x), "float64") * x), [x])
    np.testing.assert_array_equal(
        sg.compile(g, inputs=[x], backend="numpy")(xv), np.argsort(xv, kind="stable")
    )


@pytest.mark.parametrize("build", ["cumsum", "cumprod", "sort"])
def test_forward_mode_and_second_derivatives_of_the_new_ops(build):
    # JVP (forward Jacobian) = VJP (reverse Jacobian) = central differences; the Hessian of a
    # cubic of the op's output agrees with central differences of the gradient
    x = sg.tensor("x", (2, 4))
    out = getattr(sg, build)(x, axis=1)
    xv = np.abs(_input((2, 4))) + 0.5
    fwd = sg.compile(sg.jacobian(out, [x], mode="forward")[0], inputs=[x], backend="numpy")(xv)
    rev = sg.compile(sg.jacobian(out, [x], mode="reverse")[0], inputs=[x], backend="numpy")(xv)
    value = getattr(np, build)
    numeric = np.stack(
        [_central_differences(lambda v, i=i: value(v, axis=1).ravel()[i], xv) for i in range(8)]
    ).reshape(2, 4, 2, 4)
    np.testing.assert_allclose(np.asarray(fwd).reshape(2, 4, 2, 4), numeric, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.asarray(rev).reshape(2, 4, 2, 4), numeric, rtol=1e-6, atol=1e-8)
    W = RNG.normal(size=(2, 4))
    loss = sg.sum(out**3 * W)
    H = sg.compile(sg.hessian(loss, [x])[0][0], inputs=[x], backend="numpy")(xv)
    (g,) = sg.grad(loss, [x])
    grad = sg.compile(g, inputs=[x], backend="numpy")
    numeric_h = np.stack([_central_differences(lambda v, i=i: grad(v).ravel()[i], xv) for i in range(8)])
    np.testing.assert_allclose(np.asarray(H).reshape(8, 8), numeric_h.reshape(8, 8), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- what stays refused, and says why


def _trace(fn, *args):
    return sg.value_and_grad(fn, backend="numpy")(*args)


REFUSED = [
    (lambda x: np.sum(x[x > 0]), sg.UnsupportedError, r"bool mask .*use sg.where\(mask, x, 0\)"),
    (lambda x: x[0] if x[0] > 0 else x[1], sg.UnsupportedError, r"truth value .*sg.where"),
    (lambda x: np.sum(np.pad(x, 1, mode="linear_ramp")), sg.UnsupportedError, r"np.pad.*linear_ramp"),
    (lambda x: np.sum(np.pad(x, 1, mode="edge", stat_length=2)), sg.UnsupportedError, r"stat_length"),
    (lambda x: np.sum(np.repeat(x, np.sum(x))), sg.UnsupportedError, r"np.repeat with symbolic repeats"),
    (lambda x: builtins.max(x, key=abs), sg.UnsupportedError, r"max\(x, key=...\) of a symbolic value"),
    (lambda x: builtins.max([x[0], x[1]], key=abs), sg.UnsupportedError, r"max\(..., key=...\)"),
    (lambda x: np.sum(np.r_[x, 0:3]), sg.UnsupportedError, r"np.r_\[...\] with a slice"),
    (lambda x: np.sum(np.sort(x, kind="heapsort", order="f")), sg.UnsupportedError, r"np.sort\(..., order"),
    (lambda x: np.sum(np.cumsum(x, out=x)), sg.UnsupportedError, r"np.cumsum\(..., out=...\)"),
    (lambda x: np.sum(np.linspace(0, 1, x[0])), sg.UnsupportedError, r"operator.index .*static value"),
    (lambda x: np.sum(np.gradient(x, x)), sg.UnsupportedError, r"np.gradient with traced coordinates"),
    (lambda x: np.sum(np.flip(x, 1)), sg.ShapeError, r"flip: axis 1 is out of range for rank 1"),
    (lambda x: np.sum(np.split(x, 2)[0]), sg.ShapeError, r"split: an axis of length 3 does not split into 2"),
    (lambda x: np.sum(np.pad(x, 5, mode="reflect")), sg.InputError, r"x\[1:6\] needs it to be at least 6"),
    (lambda x: np.sum(np.select([x > 0], [x, x])), sg.ShapeError, r"select: 1 conditions for 2 choices"),
    (
        lambda x: np.sum(x.at[np.array([0]), np.array([0])].set(1.0)),
        sg.UnsupportedError,
        r"x.at\[...\] with this",
    ),
    (lambda x: np.sum(np.ptp(x)), sg.UnsupportedError, r"np.ptp is not supported on symbolic values"),
]


@pytest.mark.parametrize("case", range(len(REFUSED)))
def test_refused_constructs_say_what_to_write_instead(case):
    fn, error, message = REFUSED[case]
    with pytest.raises(error, match=message):
        _trace(fn, np.array([0.5, -1.0, 2.0]))


def test_refused_constructs_outside_a_trace():
    X = sg.tensor("X", ("n", 3))
    with pytest.raises(
        sg.UnsupportedError, match=r"cannot iterate over an expression of shape \(n, 3\).*sg.scan"
    ):
        list(X)
    with pytest.raises(sg.UnsupportedError, match=r"cannot iterate over an expression of shape \(\)"):
        list(X[0, 0])
    with pytest.raises(
        sg.UnsupportedError, match=r"np.array_split into 2 sections of the symbolic dimension n"
    ):
        sg.array_split(X, 2)
    with pytest.raises(sg.UnsupportedError, match=r"x.at\[...\] with this index"):
        X.at[np.array([0]), np.array([1])].set(1.0)
    with pytest.raises(
        sg.UnsupportedError, match=r"this advanced-indexing pattern \(more than one index array"
    ):
        sg.tensor("Y", (3, 4))[np.array([0, 1]), np.array([1, 2])]
    with pytest.raises(sg.ShapeError, match=r"repeat: repeats .* one int per element of axis 0"):
        sg.repeat(X, [1, 2], axis=0)
    with pytest.raises(sg.UnsupportedError, match=r"vstack of one array whose first dimension n is symbolic"):
        sg.vstack(X)
    with pytest.raises(sg.UnsupportedError, match=r"max\(\) of a symbolic value of shape \(n, 3\)"):
        import symgrad.frontends.numpy_protocol as protocol

        protocol._builtin_extreme("max", sg.maximum, sg.max)(builtins.max)(X)


def test_top_k_values_indices_and_gradient():
    x = sg.tensor("x", (2, 5))
    xv = np.array([[0.3, 2.0, -1.0, 2.0, 0.5], [1.0, 0.0, 4.0, -2.0, 3.0]])
    values, indices = sg.top_k(x, 3)
    W = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    (g,) = sg.grad(sg.sum(values * W), [x])
    got_v, got_i, got_g = sg.compile([values, indices, g], inputs=[x], backend="numba")(xv)
    want_i = np.array([[1, 3, 4], [2, 4, 0]])  # ties: the lower index first, as lax.top_k
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_array_equal(got_v, np.take_along_axis(xv, want_i, 1))
    want_g = np.zeros_like(xv)
    np.put_along_axis(want_g, want_i, W, 1)
    np.testing.assert_array_equal(got_g, want_g)
    with pytest.raises(sg.ShapeError, match="top_k: k = 6 for a last axis of length 5"):
        sg.top_k(x, 6)


def test_assignment_into_a_traced_value_points_to_at():
    def f(x):
        x[0] = 1.0
        return np.sum(x)

    with pytest.raises(sg.UnsupportedError, match=r"assignment into a symbolic value .*x.at\[...\].set"):
        sg.value_and_grad(f, backend="numpy")(np.ones(3))


@pytest.mark.parametrize(
    "text, build",
    [
        ("cumsum(X, axis=0)", lambda X, v: sg.cumsum(X, axis=0)),
        ("cumprod(v)", lambda X, v: sg.cumprod(v)),
        ("sort(X, axis=0)", lambda X, v: sg.sort(X, axis=0)),
        ("argsort(v)", lambda X, v: sg.argsort(v)),
        ("flip(X, axis=1)", lambda X, v: sg.flip(X, 1)),
        ("rot90(X, 3)", lambda X, v: sg.rot90(X, 3)),
        ("roll(v, 2)", lambda X, v: sg.roll(v, 2)),
        ("pad(X, ((1, 0), (0, 2)))", lambda X, v: sg.pad(X, ((1, 0), (0, 2)))),
        ("tile(v, (2, 1))", lambda X, v: sg.tile(v, (2, 1))),
        ("repeat(X, 2, axis=1)", lambda X, v: sg.repeat(X, 2, axis=1)),
        ("moveaxis(X, 0, 1)", lambda X, v: sg.moveaxis(X, 0, 1)),
        ("fmax(v, 0.5) + sinc(v) + degrees(v)", lambda X, v: sg.fmax(v, 0.5) + sg.sinc(v) + sg.degrees(v)),
        ("linspace(0, 1, 5) * v[0]", lambda X, v: sg.linspace(0, 1, 5) * v[0]),
    ],
)
def test_formulas_call_the_array_functions_by_their_numpy_names(text, build):
    X, v = sg.tensor("X", ("n", 3)), sg.tensor("v", (3,))
    assert sg.parse(text, shapes={"X": ("n", 3), "v": (3,)}) is build(X, v)


@pytest.mark.parametrize("edge_order", [1, 2])
def test_gradient_at_coordinates_matches_numpy_and_central_differences(edge_order):
    # non-uniform spacing: numpy's second-order weights inside (and at the ends for edge_order 2)
    x = np.array([0.0, 0.3, 1.0, 1.2, 2.5, 3.1])
    a = np.random.default_rng(7).normal(size=(6, 4))

    def call(v):
        by_coords = np.gradient(v, x, 0.5, edge_order=edge_order)
        return by_coords[0] + np.gradient(v, [0.0, 1.0, 3.0, 3.5], axis=1, edge_order=edge_order)

    np.testing.assert_allclose(sg.compile(call, backend="numpy")(a), call(a), rtol=1e-12, atol=1e-12)
    vg = sg.value_and_grad(lambda v: np.sum(call(v) ** 2), backend="numpy")
    assert sg.check_grad(vg.compiled_for(a), a) < 1e-7


def test_gradient_refuses_traced_coordinates_and_wrong_lengths():
    with pytest.raises(sg.UnsupportedError, match=r"np.gradient with traced coordinates"):
        sg.value_and_grad(lambda v, x: np.sum(np.gradient(v, x)), backend="numpy")(np.ones(4), np.arange(4.0))
    with pytest.raises(sg.ShapeError, match=r"gradient: coordinates of shape \(3,\) for axis 0 of length 4"):
        sg.value_and_grad(lambda v: np.sum(np.gradient(v, np.arange(3.0))), backend="numpy")(np.ones(4))
