"""Sparse Jacobians: the structural pattern (sg.jacobian_sparsity), its colouring into forward
or reverse passes and the compiled CSR Jacobian (sg.sparse_jacobian), against dense Jacobians
from central differences of plain numpy code, and against SciPy's least_squares run with a
hand-written Jacobian."""

import numpy as np
import pytest
import scipy.sparse
from scipy.optimize import least_squares

import symgrad as sg
from symgrad.errors import InputError, UnsupportedError

RNG = np.random.default_rng(7)


def reaction_diffusion(u, D=1.0, rate=1.0):
    """Steady 1-D reaction-diffusion D u'' + rate u (1 - u) = 0 on (0, 1), u(0) = 1, u(1) = 0,
    by central differences: plain numpy, traced by symgrad as it is."""
    h = 1.0 / (u.shape[0] - 1)
    inner = D * (u[:-2] - 2 * u[1:-1] + u[2:]) / h**2 + rate * u[1:-1] * (1 - u[1:-1])
    return np.concatenate([u[:1] - 1.0, inner, u[-1:]])


def reaction_diffusion_jacobian(u, D=1.0, rate=1.0):
    """The same residual's Jacobian by hand: tridiagonal, assembled as CSR."""
    n = u.shape[0]
    h = 1.0 / (n - 1)
    c = D / h**2
    diag = np.ones(n)
    diag[1:-1] = -2 * c + rate * (1 - 2 * u[1:-1])
    lower = np.zeros(n - 1)
    upper = np.zeros(n - 1)
    lower[:-1] = c  # row i (1..n-2) column i-1
    upper[1:] = c  # row i (1..n-2) column i+1
    return scipy.sparse.diags([lower, diag, upper], [-1, 0, 1], format="csr")


def central_jacobian(f, x, eps=1e-6):
    x = np.asarray(x, dtype=np.float64)
    columns = []
    for j in range(x.size):
        step = np.zeros_like(x)
        step.flat[j] = eps
        columns.append(((np.asarray(f(x + step)) - np.asarray(f(x - step))) / (2 * eps)).ravel())
    return np.stack(columns, axis=1)


def dense_pattern(f, n, points=3):
    """The entries non-zero at some random point: what the structural pattern must hold."""
    seen = np.zeros((np.asarray(f(np.ones(n))).size, n), dtype=bool)
    for _ in range(points):
        seen |= np.abs(central_jacobian(f, RNG.uniform(0.5, 1.5, n))) > 1e-7
    return seen


def mixing(x):
    """A Jacobian with structure from reshape, transpose, a constant gather and a matmul."""
    grid = np.reshape(x, (3, 4))
    a = np.sin(grid.T[:, 1:]) * grid.T[:, :-1]
    b = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]) @ np.exp(grid[:, ::2])
    return np.concatenate([np.reshape(a, (-1,)), np.reshape(b, (-1,)), x[np.array([5, 0, 5])] ** 2])


def few_outputs(x):
    """Two outputs that read every input: rows colour in 2 reverse passes, columns need 12."""
    return np.stack([np.sum(x**2), np.sum(np.sin(x))])


CASES = [(reaction_diffusion, 12), (mixing, 12), (few_outputs, 12)]


@pytest.mark.parametrize("f, n", CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_pattern_equals_the_nonzeros_of_dense_jacobians_at_random_points(f, n):
    x = sg.tensor("x", (n,))
    pattern = sg.jacobian_sparsity(f(x), x)
    assert isinstance(pattern, scipy.sparse.csr_matrix) and pattern.dtype == bool
    np.testing.assert_array_equal(pattern.toarray(), dense_pattern(f, n))
    # the function form traces at the example's shape and gives the same pattern
    np.testing.assert_array_equal(sg.jacobian_sparsity(f, np.zeros(n)).toarray(), pattern.toarray())


@pytest.mark.parametrize("f, n", CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_sparse_jacobian_values_match_central_differences(f, n):
    x = sg.tensor("x", (n,))
    sj = sg.sparse_jacobian(f(x), x, backend="numpy")
    x0 = RNG.uniform(0.5, 1.5, n)
    value, J = sj.value_and_jacobian(x0)
    assert isinstance(J, scipy.sparse.csr_matrix) and J.shape == (np.asarray(f(x0)).size, n)
    np.testing.assert_allclose(value, f(x0), rtol=1e-13)
    np.testing.assert_allclose(J.toarray(), central_jacobian(f, x0), rtol=1e-6, atol=1e-5)
    assert J.has_canonical_format and J.nnz == sj.pattern.nnz


def test_fewer_colours_side_is_chosen_and_the_count_is_minimal_for_known_structures():
    x = sg.tensor("x", (12,))
    tri = sg.sparse_jacobian(reaction_diffusion(x), x, backend="numpy")
    assert (tri.mode, tri.passes) == ("forward", 3)  # a tridiagonal matrix needs 3 column colours
    wide = sg.sparse_jacobian(few_outputs(x), x, backend="numpy")
    assert (wide.mode, wide.passes) == ("reverse", 2)  # two dense rows: one VJP each
    # one colour's columns share no row (forward) / one colour's rows share no column (reverse)
    for sj in (tri, wide):
        pattern = sj.pattern.toarray()
        lines = pattern.T if sj.mode == "forward" else pattern
        for c in range(sj.passes):
            assert (lines[sj.colors == c].sum(axis=0) <= 1).all()


def arrow(x):
    """An arrow pattern: a dense first row, a dense first column and the diagonal; colouring
    either side alone needs one pass per element."""
    return np.concatenate([np.sum(np.sin(x), keepdims=True), x[1:] ** 2 * x[0]])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_an_arrow_pattern_takes_three_bidirectional_passes(backend):
    n = 30
    x = sg.tensor("x", (n,))
    sj = sg.sparse_jacobian(arrow(x), x, backend=backend)
    assert (sj.mode, sj.passes) == ("bidirectional", 3)
    x0 = RNG.uniform(0.5, 1.5, n)
    value, J = sj.value_and_jacobian(x0)
    np.testing.assert_allclose(value, arrow(x0), rtol=1e-13)
    np.testing.assert_allclose(J.toarray(), central_jacobian(arrow, x0), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(J.toarray() != 0, dense_pattern(arrow, n))


def test_a_dense_column_split_off_to_forward_passes_the_rest_in_reverse():
    # a pattern one column-coloured side needs 4 passes for; its dense column 3 by a forward
    # pass and the other entries by reverse passes take 3
    entries = [(0, 0), (1, 1), (1, 2), (1, 7), (2, 2), (3, 8), (4, 4), (6, 4), (7, 7), (7, 10)]
    entries += [(i, 3) for i in range(12)] + [(i, i) for i in range(5, 12)]
    M = np.zeros((12, 12))
    for i, j in entries:
        M[i, j] = RNG.uniform(1.0, 2.0)
    x = sg.tensor("x", (12,))
    sj = sg.sparse_jacobian(sg.constant(M) @ x + sg.sin(x), x, backend="numpy")
    assert (sj.mode, sj.passes) == ("bidirectional", 3)
    x0 = RNG.normal(size=12)
    np.testing.assert_allclose(sj(x0).toarray(), M + np.diag(np.cos(x0)), rtol=1e-14)


def test_tridiagonal_jacobian_of_10000_unknowns_in_three_passes_equals_the_hand_assembly():
    n = 10_000
    u = sg.tensor("u", (n,))
    sj = sg.sparse_jacobian(reaction_diffusion(u), u, backend="numpy")
    assert sj.passes == 3 and sj.pattern.nnz == 3 * n - 4
    u0 = RNG.uniform(0.0, 1.0, n)
    value, J = sj.value_and_jacobian(u0)
    np.testing.assert_allclose(value, reaction_diffusion(u0), rtol=1e-12, atol=1e-6)
    expected = reaction_diffusion_jacobian(u0)
    assert abs(J - expected).max() <= 1e-9 * abs(expected).max()


# SciPy's sparse trust-region steps (LSMR) solved tightly: Newton steps on this stiff system
LSMR = {"tr_options": {"regularize": False, "atol": 1e-14, "btol": 1e-14, "maxiter": 5000}}


def test_least_squares_takes_the_same_steps_as_with_the_hand_written_jacobian():
    n = 100
    u = sg.tensor("u", (n,))
    sj = sg.sparse_jacobian(reaction_diffusion(u, 1.0, 4.0), u)  # numba
    u0 = np.linspace(1.0, 0.0, n)
    ours = least_squares(sj.fun, u0, jac=sj.jac, jac_sparsity=sj.pattern, **LSMR)
    theirs = least_squares(
        lambda v: reaction_diffusion(v, 1.0, 4.0),
        u0,
        jac=lambda v: reaction_diffusion_jacobian(v, 1.0, 4.0),
        **LSMR,
    )
    assert ours.success and theirs.success
    assert (ours.nfev, ours.njev) == (theirs.nfev, theirs.njev) and ours.nfev < 10
    np.testing.assert_allclose(ours.x, theirs.x, rtol=1e-9, atol=1e-12)
    assert np.abs(reaction_diffusion(ours.x, 1.0, 4.0)).max() < 1e-8


def test_function_form_traces_per_shape_and_serves_least_squares_with_extra_args():
    sj = sg.sparse_jacobian(reaction_diffusion, backend="numpy")
    u0 = np.linspace(1.0, 0.0, 30)
    J = sj(u0, 0.5, 2.0)
    np.testing.assert_allclose(J.toarray(), reaction_diffusion_jacobian(u0, 0.5, 2.0).toarray(), rtol=1e-12)
    assert sj.for_args(u0, 0.5, 2.0).passes == 3
    assert sj(np.zeros(8), 0.5, 2.0).shape == (8, 8)  # a new size: traced again
    ours = least_squares(sj.fun, u0, jac=sj.jac, args=(0.5, 2.0), **LSMR)
    theirs = least_squares(reaction_diffusion, u0, jac=reaction_diffusion_jacobian, args=(0.5, 2.0), **LSMR)
    assert ours.success and ours.nfev == theirs.nfev
    np.testing.assert_allclose(ours.x, theirs.x, rtol=1e-9, atol=1e-12)


def test_several_wrt_tensors_give_columns_in_wrt_order():
    a, b, s = sg.tensor("a", (3,)), sg.tensor("b", (2, 2)), sg.scalar("s")
    out = sg.concatenate([a * s, sg.reshape(b, (4,)) ** 2 + a[0]])
    sj = sg.sparse_jacobian(out, [a, b], inputs=[a, b, s], backend="numpy")
    a0, b0 = RNG.normal(size=3), RNG.normal(size=(2, 2))

    def flat(v):
        return np.concatenate([v[:3] * 1.5, v[3:] ** 2 + v[0]])

    J = sj(a0, b0, 1.5)
    assert J.shape == (7, 7)
    np.testing.assert_allclose(
        J.toarray(), central_jacobian(flat, np.concatenate([a0, b0.ravel()])), atol=1e-7
    )


def test_errors_name_what_is_wrong():
    n = sg.tensor("x", ("n",))
    with pytest.raises(UnsupportedError, match=r"sparse_jacobian: the output has symbolic shape \(n,\)"):
        sg.sparse_jacobian(n * 2.0, n)
    with pytest.raises(UnsupportedError, match=r"jacobian_sparsity: input x has symbolic shape \(n,\)"):
        sg.jacobian_sparsity(sg.sum(n), n)
    x = sg.tensor("x", (3,))
    with pytest.raises(UnsupportedError, match=r"jacobian_sparsity\(expr\): say which symbols"):
        sg.jacobian_sparsity(x * 2.0)
    with pytest.raises(UnsupportedError, match=r"example arguments are for a Python function"):
        sg.jacobian_sparsity(x * 2.0, x, np.zeros(3))
    with pytest.raises(UnsupportedError, match=r"returned a tuple; the sparse Jacobian needs one array"):
        sg.jacobian_sparsity(lambda v: (v, v), np.zeros(3))
    with pytest.raises(UnsupportedError, match=r"argnums must be one int"):
        sg.sparse_jacobian(reaction_diffusion, argnums=(0, 1))(np.zeros(3))
    with pytest.raises(UnsupportedError, match=r"argument 1 of 'reaction_diffusion' is differentiated"):
        sg.jacobian_sparsity(reaction_diffusion, np.zeros(3), "fast", argnums=1)
    with pytest.raises(UnsupportedError, match=r"only float expressions have derivatives"):
        sg.sparse_jacobian(sg.tensor("k", (3,), dtype="int64") * 2, x)
    with pytest.raises(UnsupportedError, match=r"inputs= is for expressions"):
        sg.sparse_jacobian(reaction_diffusion, inputs=[x])


@pytest.mark.filterwarnings("ignore:delta_grad == 0.0")  # trust-constr's quasi-Newton on a linear constraint
def test_constraint_jacobians_for_minimize_match_hand_written_ones():
    from scipy.optimize import minimize

    n = 8
    x, a = sg.tensor("x", (n,)), sg.tensor("a", (n,))
    p = sg.value_and_grad(sg.sum((x - a) ** 2), wrt=x, backend="numpy").scipy()
    a0 = RNG.normal(size=n)
    # increasing by at least 0.1 (a bidiagonal Jacobian) and on a sphere; a is not fixed: args
    steps = p.constraint(x[1:] - x[:-1] - 0.1, args=(a0,))
    sphere = p.constraint(sg.sum(x**2) - 3.0, "eq", args=(a0,))
    x0 = np.linspace(-1.0, 1.0, n)
    J = steps["jac"](x0, a0)
    assert isinstance(J, np.ndarray) and J.shape == (n - 1, n)
    np.testing.assert_allclose(J, central_jacobian(lambda v: v[1:] - v[:-1], x0), atol=1e-8)
    np.testing.assert_allclose(sphere["jac"](x0, a0), [2 * x0], rtol=1e-12)
    ours = minimize(p.fun, x0, args=(a0,), jac=True, method="SLSQP", constraints=[steps, sphere])
    hand = [
        {
            "type": "ineq",
            "fun": lambda v: v[1:] - v[:-1] - 0.1,
            "jac": lambda v: np.eye(n)[1:] - np.eye(n)[:-1],
        },
        {"type": "eq", "fun": lambda v: np.sum(v**2) - 3.0, "jac": lambda v: 2 * v},
    ]
    theirs = minimize(
        lambda v, a: (np.sum((v - a) ** 2), 2 * (v - a)),
        x0,
        args=(a0,),
        jac=True,
        method="SLSQP",
        constraints=hand,
    )
    assert ours.success and theirs.success and ours.nit == theirs.nit
    np.testing.assert_allclose(ours.x, theirs.x, rtol=1e-9, atol=1e-12)
    # trust-constr with the CSR Jacobian reaches the same point
    fixed = sg.value_and_grad(sg.sum((x - a) ** 2), wrt=x, backend="numpy").scipy(a=a0)
    constraints = [
        fixed.nonlinear_constraint(x[1:] - x[:-1], 0.1, np.inf),
        fixed.nonlinear_constraint(sg.sum(x**2), 3.0, 3.0),
    ]
    assert scipy.sparse.issparse(constraints[0].jac(x0))
    trust = minimize(
        fixed.fun, x0, jac=True, hessp=fixed.hessp, method="trust-constr", constraints=constraints
    )
    np.testing.assert_allclose(trust.x, theirs.x, atol=1e-3)  # trust-constr's own tolerance


def test_constraint_errors_name_what_is_wrong():
    x, a = sg.tensor("x", (3,)), sg.tensor("a", (3,))
    p = sg.value_and_grad(sg.sum((x - a) ** 2), wrt=x, backend="numpy").scipy()
    with pytest.raises(UnsupportedError, match=r"constraint: type must be 'eq' or 'ineq', got 'le'"):
        p.constraint(x[0], "le")
    with pytest.raises(InputError, match=r"nonlinear_constraint: the inputs a are not fixed"):
        p.nonlinear_constraint(x[0], 0.0, 1.0)
    y = sg.tensor("y", ("n",))
    q = sg.value_and_grad(sg.sum(y**2), wrt=y, backend="numpy").scipy()
    with pytest.raises(UnsupportedError, match=r"constraint: y has a symbolic shape"):
        q.constraint(y[0])
