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


def test_numba_backend_values_and_gradients_of_every_case():
    # one compiled function for all cases (numba compiles once): each case's loss on its own input
    names = sorted(CASES)
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
