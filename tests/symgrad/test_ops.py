"""The op table against independent truth.

Every op must carry a shape/dtype rule, a numpy definition, a VJP rule for each
differentiable input and a lowering in every backend; every VJP rule is checked
against central differences of a plain-numpy definition written here (never
against symgrad's own output), on both backends and with broadcasting.

The numpy backend runs the broad shape sweep (it builds in milliseconds); the
numba backend, whose compiles cost a fraction of a second each, gets at least
one broadcasting shape per op.
"""

import math

import numpy as np
import pytest
import scipy.special

import symgrad as sg
from symgrad import batching
from symgrad.errors import UnsupportedError
from symgrad.graph import dim_symbol, topo_order
from symgrad.ops import reduce as reduce_ops, structure as structure_ops
from symgrad.ops.registry import OPS, make
from symgrad.codegen.numba_backend import NumbaEmitter
from symgrad.codegen.numpy_backend import NumpyEmitter

BACKENDS = ["numpy", "numba"]
NAMES = "abcdefgh"


# ---------------------------------------------------------------- the truth: plain numpy and central differences


def _five_point(f, arrays, index, h):
    """d f / d arrays[index], elementwise, by the O(h^4) central-difference stencil."""
    base = arrays[index]
    grad = np.zeros(base.shape)
    for idx in np.ndindex(base.shape):
        step = h * max(1.0, abs(float(base[idx])))
        values = []
        for k in (-2, -1, 1, 2):
            moved = [a.copy() for a in arrays]
            moved[index][idx] += k * step
            values.append(f(*moved))
        grad[idx] = (values[0] - 8 * values[1] + 8 * values[2] - values[3]) / (12 * step)
    return grad


def check_vjp(build, truth, arrays, backend, *, rtol=1e-6, h=1e-3, seed=1):
    """Compile sum(build(*inputs) * W) with its gradient and compare with plain numpy.

    ``truth`` is the op's definition in numpy; ``W`` is a random weight so every
    output element gets its own cotangent. Only float inputs are differentiated."""
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(a) for a in arrays]
    symbols = [sg.tensor(NAMES[i], a.shape, dtype=a.dtype.name) for i, a in enumerate(arrays)]
    out = build(*symbols)
    expected = np.asarray(truth(*arrays))
    assert out.shape == expected.shape, f"shape rule {out.shape} vs numpy {expected.shape}"
    assert out.dtype == expected.dtype.name, f"dtype rule {out.dtype} vs numpy {expected.dtype}"
    weight = rng.normal(size=expected.shape)
    loss = sg.sum(out * sg.constant(weight))
    wrt = [k for k, a in enumerate(arrays) if a.dtype.kind == "f"]
    vg = sg.value_and_grad(loss, wrt=[symbols[k] for k in wrt], inputs=symbols, backend=backend)
    value, grads = vg(*arrays)

    def f(*xs):
        return float(np.sum(np.asarray(truth(*xs), dtype=np.float64) * weight))

    np.testing.assert_allclose(value, f(*arrays), rtol=1e-12, atol=1e-12)
    for k, g in zip(wrt, grads):
        g = np.asarray(g)
        assert g.shape == arrays[k].shape and g.dtype == arrays[k].dtype, (g.shape, g.dtype)
        assert not np.isnan(g).any()
        numeric = _five_point(f, [a.astype(np.float64) for a in arrays], k, h)
        scale = max(1.0, float(np.max(np.abs(numeric), initial=0.0)))
        np.testing.assert_allclose(
            g, numeric, rtol=rtol, atol=rtol * scale, err_msg=f"gradient of input {NAMES[k]} ({backend})"
        )
    return vg


def uniform(lo, hi, away=0.0):
    """Sampler of uniform values in [lo, hi] at least ``away`` from zero (off kinks and poles)."""

    def sample(rng, shape):
        x = rng.uniform(lo, hi, size=shape)
        if away:
            x = np.where(np.abs(x) < away, np.copysign(away + np.abs(x), x), x)
        return np.asarray(x, dtype=np.float64)

    return sample


def distinct(rng, shape, scale=0.3):
    """Values at least ~0.8*scale apart, so max/min/maximum have no ties near the evaluation point."""
    size = int(np.prod(shape))
    x = (rng.permutation(size) - size / 2) * scale + rng.uniform(-0.1, 0.1, size) * scale
    return x.reshape(shape)


def off_jumps(lo, hi):
    """Sampler of values in [lo, hi] whose fractional part is in [0.15, 0.35]: at least 0.15
    from every whole and every half number, where floor, ceil, round and trunc jump."""

    def sample(rng, shape):
        whole = np.floor(rng.uniform(lo, hi, size=shape))
        return np.asarray(whole + rng.uniform(0.15, 0.35, size=shape), dtype=np.float64)

    return sample


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


_erf = np.vectorize(math.erf, otypes=[np.float64])

# the builder of each op, as a function of its operands: polygamma's order n is an attribute
# (polygamma(n, x)); the table-walking tests sample it at n = 1, and n = 2 below
ATTRIBUTES = {"polygamma": {"n": 1}}


def builder(op):
    if op == "polygamma":
        return lambda x: sg.polygamma(1, x)
    return OPS[op].builder


# ---------------------------------------------------------------- the registry


@sg.custom_jvp
def _custom_softplus(x):
    return sg.softplus(x)


_custom_softplus.defjvp(
    lambda primals, tangents: (sg.softplus(primals[0]), tangents[0] * sg.sigmoid(primals[0]))
)


def _sample_graphs():
    """One small graph per registered op that contains a node of that op."""
    v = sg.tensor("v", (3,))
    M = sg.tensor("M", (2, 3))
    u = sg.tensor("u", ("n",))
    spd = M @ M.T + np.eye(2)  # symmetric positive definite, for the decompositions
    samples = {
        "symbol": v,
        "constant": v * np.arange(3.0),
        "where": sg.where(M > 0, M, v),
        "stop_gradient": sg.stop_gradient(v) * v,
        "custom": _custom_softplus(M) * v,  # a function with a user's derivative rule (sg.custom_jvp)
        # a value Python computes at run time: sg.root's solver (tests/symgrad/test_implicit.py)
        "host_call": sg.root(lambda x, p: x**3 + x - p, np.zeros(3), v),
        "cast": sg.cast(M, "float32"),
        "isfinite": sg.isfinite(M),
        "logical_not": sg.logical_not(M > 0),
        "logical_and": sg.logical_and(M > 0, v < 1),
        "logical_or": sg.logical_or(M > 0, v < 1),
        "argmax_mask": reduce_ops.argmax_mask(M, (1,)),
        "argmin_mask": reduce_ops.argmin_mask(M, (0,)),
        "prod_others": reduce_ops.prod_others(M, (1,)),
        "dimsize": sg.mean(u),
        "reshape": sg.reshape(M, (3, 2)),
        "broadcast_to": sg.broadcast_to(v, (2, 3)),
        "transpose": M.T,
        "getitem": M[:, 1:],
        "slice_grad": structure_ops.slice_grad(v, M[1:, :].attrs["key"], (2, 3)),
        "concatenate": sg.concatenate([M, M[:1]], axis=0),
        "matmul": M @ v,
        "take0": M[np.array([1, 0, 1])],
        "scatter_add0": structure_ops.scatter_add0(M, sg.constant(np.array([2, 0])), 3),
        "take_last": sg.take_along_axis(M, np.array([[2], [0]]), axis=1),
        "scatter_last": sg.grad(
            sg.sum(sg.take_along_axis(M, np.array([[2], [0]]), axis=1) * sg.reshape(v[:2], (2, 1))), M
        ),
        "arange": sg.arange(u.shape[0]),
        "cumsum": sg.cumsum(M, axis=1),
        "cumprod": sg.cumprod(M, axis=1),
        "argsort": sg.argsort(M, axis=1),
        # decompositions and solves (tests/symgrad/test_linalg_decomp.py checks them in depth)
        "solve": sg.linalg.solve(spd, M),
        "inv": sg.linalg.inv(spd),
        "det": sg.linalg.det(spd),
        "logabsdet": sg.linalg.slogdet(spd)[1],
        "detsign": sg.linalg.slogdet(spd)[0],
        "cholesky": sg.linalg.cholesky(spd),
        "solve_triangular": sg.linalg.solve_triangular(spd, M, lower=True),
        "eigh_w": sg.linalg.eigh(spd)[0],
        "eigh_v": sg.linalg.eigh(spd)[1],
        "svd_u": sg.linalg.svd(M, full_matrices=False)[0],
        "svd_s": sg.linalg.svd(M, full_matrices=False)[1],
        "svd_vt": sg.linalg.svd(M, full_matrices=False)[2],
        "qr_q": sg.linalg.qr(M.T)[0],
        "qr_r": sg.linalg.qr(M.T)[1],
        # a loop (sg.scan): the final carry and the stacked ys, each a part of the scan node
        "scan": sg.scan(lambda c, x: (c * x + 0.5, sg.sum(c)), v, M)[0],
        "part": sg.scan(lambda c, x: (c * x + 0.5, sg.sum(c)), v, M)[1],
        "pinv": sg.linalg.pinv(M),
        # through the Cholesky factor (tests/symgrad/test_cholesky_sharing.py)
        "cho_solve": sg.linalg.cho_solve((sg.linalg.cholesky(spd), True), M),
        "cho_inverse": make("cho_inverse", [spd, sg.linalg.cholesky(spd)]),
        "cho_logdet": make("cho_logdet", [spd, sg.linalg.cholesky(spd)]),
    }
    for name, op in OPS.items():  # every other elementwise op of the table, on M (and v)
        if op.elementwise and op.lower and name not in samples:
            samples[name] = builder(name)(*[M, v][: op.arity])
    for name in "sum max min prod".split():
        samples[name] = getattr(sg, name)(M, axis=1)
    return samples


SAMPLES = _sample_graphs()

# (op, input index) pairs that have no derivative, and why:
NON_DIFFERENTIABLE = {
    # piecewise constant: the derivative is 0 wherever it exists
    ("sign", 0),
    ("floor", 0),
    ("ceil", 0),
    ("round", 0),
    ("trunc", 0),
    ("isfinite", 0),
    *((op, i) for op in "less less_equal greater greater_equal equal not_equal".split() for i in (0, 1)),
    # bool in, bool out
    ("logical_not", 0),
    ("logical_and", 0),
    ("logical_and", 1),
    ("logical_or", 0),
    ("logical_or", 1),
    # zero derivative by definition
    ("stop_gradient", 0),
    # one-hot masks of the arg-extremum: piecewise constant (they only appear in max/min VJPs)
    ("argmax_mask", 0),
    ("argmin_mask", 0),
    # the sign of a determinant: piecewise constant
    ("detsign", 0),
    # the Cholesky factor of the matrix operand: the derivative is the matrix's, none through it
    ("cho_solve", 1),
    ("cho_inverse", 1),
    ("cho_logdet", 1),
    # the condition of where selects, it is not a value
    ("where", 0),
    # integer indices select, they are not values
    ("take0", 1),
    ("scatter_add0", 1),
    ("take_last", 1),
    ("scatter_last", 1),
    # integer indices of the sorted order
    ("argsort", 0),
    # a value Python computes (sg.root's solver): the custom node around it differentiates
    ("host_call", 0),
    ("host_call", 1),
}
NO_NUMPY_DEFINITION = {"symbol", "constant", "dimsize"}  # inputs, embedded values, runtime sizes
# a loop's definition is its body graph run step by step (_run_loop below), not a numpy function
# (a numpy definition would also fold a loop over constants into a constant as it is built)
NO_NUMPY_DEFINITION |= {"scan", "part"}


def _node_of(op):
    node = next((n for n in topo_order([SAMPLES[op]]) if n.op == op), None)
    assert node is not None, f"the sample graph for {op!r} has no {op!r} node"
    return node


def test_every_registered_op_has_a_sample_graph():
    # a new op must be added to SAMPLES so the checks below cover it
    assert set(OPS) == set(SAMPLES), (sorted(set(OPS) - set(SAMPLES)), sorted(set(SAMPLES) - set(OPS)))


@pytest.mark.parametrize("op", sorted(OPS))
def test_op_has_shape_rule_numpy_definition_and_vjp_rules(op):
    opdef = OPS[op]
    assert callable(opdef.infer)
    assert (opdef.impl is None) == (op in NO_NUMPY_DEFINITION), f"{op}: numpy definition"
    node = _node_of(op)
    if opdef.tuple_valued:  # a loop: one rule for all its inputs and results
        assert callable(opdef.tuple_vjp) and callable(opdef.tuple_jvp), op
        return
    if opdef.part:  # a result of a loop: autodiff hands its adjoint to the loop's rule
        return
    for index in range(len(node.inputs)):
        rule = opdef.vjp_rule(index)
        if (op, index) in NON_DIFFERENTIABLE:
            assert rule is None, f"{op} input {index} is listed as non-differentiable but has a rule"
        else:
            assert callable(rule), f"{op} input {index} has no VJP rule"


@pytest.mark.parametrize("emitter", [NumpyEmitter, NumbaEmitter], ids=["numpy", "numba"])
@pytest.mark.parametrize("op", sorted(OPS))
def test_op_lowers_in_every_backend(op, emitter):
    expr = SAMPLES[op]
    inputs = sorted((n for n in topo_order([expr]) if n.op == "symbol"), key=lambda s: s.serial)
    source = emitter().module([expr], ["out"], inputs, 1, "call", op, "out[0]")
    assert "def kernel(" in source


def _evaluate_with_definitions(outputs, env):
    """The graph evaluated node by node with each op's numpy definition (the backends' spec)."""
    values = {}
    for node in topo_order(outputs):
        if node.op == "symbol":
            values[id(node)] = env[node.name]
        elif node.op == "constant":
            values[id(node)] = node.value
        elif node.op == "dimsize":
            sizes = {dim_symbol("n"): env["u"].shape[0]}
            values[id(node)] = np.asarray(
                math.prod(d if isinstance(d, int) else int(d.subs(sizes)) for d in node.attrs["dims"]),
                dtype=node.dtype,
            )
        elif node.op == "arange":
            values[id(node)] = OPS["arange"].impl(
                n=int(node.attrs["n"].subs({dim_symbol("n"): env["u"].shape[0]}))
            )
        elif OPS[node.op].tuple_valued:
            values[id(node)] = _run_loop(node, [values[id(i)] for i in node.inputs], env)
        elif OPS[node.op].part:
            values[id(node)] = values[id(node.inputs[0])][node.attrs["index"]]
        else:
            values[id(node)] = OPS[node.op].impl(*[values[id(i)] for i in node.inputs], **node.attrs)
    return [values[id(o)] for o in outputs]


def _run_loop(node, operands, env):
    """A scan node's results: its body evaluated with the definitions, one step at a time."""
    body = node.attrs["body"]
    nc, nx = len(body.carry), len(body.xs)
    carry, xs, consts = operands[:nc], operands[nc : nc + nx], operands[nc + nx :]
    steps = len(xs[0]) if xs else int(node.attrs["length"])
    ys = []
    for t in reversed(range(steps)) if node.attrs["reverse"] else range(steps):
        names = {
            p.name: v for p, v in zip(body.carry + body.xs + body.consts, carry + [x[t] for x in xs] + consts)
        }
        out = _evaluate_with_definitions(list(body.outputs), {**env, **names})
        carry, y = out[:nc], out[nc:]
        ys.append((t, y))
    ys.sort(key=lambda item: item[0])
    stacked = [np.array([y[k] for _, y in ys]) for k in range(len(body.ys))]
    return list(carry) + stacked


def test_every_op_sample_computes_its_numpy_definition():
    # numpy only: numba compiles each lowering in the per-op tests below, and one kernel
    # holding every op would compile slower than all of those together
    rng = np.random.default_rng(0)
    env = {"v": rng.uniform(0.2, 0.9, 3), "M": rng.uniform(0.2, 0.9, (2, 3)), "u": rng.normal(size=5)}
    names = sorted(n for n in SAMPLES if n != "symbol")
    outputs = [SAMPLES[n] for n in names]
    inputs = [sg.tensor("v", (3,)), sg.tensor("M", (2, 3)), sg.tensor("u", ("n",))]
    f = sg.compile(outputs, inputs=inputs, backend="numpy")
    got = f(env["v"], env["M"], env["u"])
    for name, node, value, expected in zip(names, outputs, got, _evaluate_with_definitions(outputs, env)):
        value = np.asarray(value)
        assert value.shape == expected.shape, name
        assert node.shape == expected.shape or not all(isinstance(d, int) for d in node.shape), name
        assert expected.dtype == node.dtype, (name, "the dtype rule disagrees with the definition")
        assert value.dtype == expected.dtype, (name, value.dtype, expected.dtype)
        np.testing.assert_allclose(
            value, expected, rtol=1e-6 if value.dtype == np.float32 else 1e-13, err_msg=name
        )


# ---------------------------------------------------------------- batching (sg.vmap)

# the ops vmap refuses (their record's ``batch`` is the reason, shown in the error), and why
BATCH_REFUSED = {
    # no operands: never batched
    "arange": "no operands",
    "dimsize": "no operands",
    # the user's rules are Python functions of one example's shapes
    "custom": "custom_vjp",
    # a Python solver called back for one example's shapes
    "host_call": "one example's shapes",
    # a loop's body graph is built for one example (batching the body is future work)
    "scan": "sg.vmap of a loop",
    "part": "sg.vmap of a loop",
    # the kernels take one 2-D matrix (a stack per example is future work)
    **dict.fromkeys(
        "solve inv det logabsdet detsign solve_triangular cholesky eigh_w eigh_v svd_u svd_s svd_vt qr_q "
        "qr_r pinv cho_solve cho_inverse cho_logdet".split(),
        "one 2-D matrix",
    ),
}


@pytest.mark.parametrize("op", sorted(OPS))
def test_every_op_has_a_batching_rule_or_a_reasoned_refusal(op):
    rule = batching.rule_for(OPS[op])
    if OPS[op].given:
        assert rule is None  # a symbol or constant has no operands to batch
    elif op in BATCH_REFUSED:
        assert isinstance(rule, str) and BATCH_REFUSED[op] in rule, (op, rule)
    else:
        assert callable(rule), f"{op} has no batching rule: give it batch= or list it in BATCH_REFUSED"


_SAMPLE_VALUES = {"v": (3,), "M": (2, 3), "u": (5,)}


@pytest.mark.parametrize("mapped", ["v M u", "M", "v", "u"])
def test_every_batching_rule_matches_a_loop_over_examples(mapped):
    # each op's sample graph batched over the mapped inputs (a leading axis of symbolic size),
    # compiled once, against the graph evaluated example by example with the numpy definitions
    rng = np.random.default_rng(1)
    size = 3
    symbols = {"v": sg.tensor("v", (3,)), "M": sg.tensor("M", (2, 3)), "u": sg.tensor("u", ("n",))}
    stacked = {k: sg.tensor(f"batched_{k}", ("b",) + s.shape) for k, s in symbols.items()}
    mapping = {id(symbols[k]): stacked[k] for k in mapped.split()}
    names = [n for n in sorted(SAMPLES) if BATCH_REFUSED.get(n, "no operands") == "no operands"]
    batched = batching.batch([SAMPLES[n] for n in names], mapping, stacked["v"].shape[0])
    names, outputs = zip(*[(n, b) for n, b in zip(names, batched) if b is not None])
    values = {k: rng.uniform(0.2, 0.9, s) for k, s in _SAMPLE_VALUES.items()}
    values.update({f"batched_{k}": rng.uniform(0.2, 0.9, (size,) + s) for k, s in _SAMPLE_VALUES.items()})
    inputs = list(symbols.values()) + list(stacked.values())
    f = sg.compile(list(outputs), inputs=inputs, backend="numpy")
    got = f(*[values[s.name] for s in inputs])
    for i in range(size):
        env = {k: values[f"batched_{k}"][i] if k in mapped.split() else values[k] for k in symbols}
        want = _evaluate_with_definitions([SAMPLES[n] for n in names], env)
        for name, g, w in zip(names, got, want):
            g = np.asarray(g)
            assert g.shape == (size,) + w.shape, name
            np.testing.assert_allclose(g[i], w, rtol=1e-6 if w.dtype == np.float32 else 1e-12, err_msg=name)


@pytest.mark.parametrize("op", sorted(n for n in BATCH_REFUSED if n not in ("arange", "dimsize")))
def test_refused_ops_raise_naming_the_op_and_vmap(op):
    node = _node_of(op)
    # every operand mapped (a sample's later operand may itself be a refused op of the first:
    # cho_inverse(A, cholesky(A)))
    mapped = {
        id(operand): sg.tensor(f"stacked{k}", ("b",) + operand.shape, operand.dtype)
        for k, operand in enumerate(node.inputs)
    }
    with pytest.raises(UnsupportedError, match=rf"vmap: the op '{op}' cannot be batched: "):
        batching.batch([node], mapped, dim_symbol("b"))


# ---------------------------------------------------------------- elementwise unary

UNARY = {  # name: (plain numpy definition, domain)
    "neg": (np.negative, uniform(-2, 2)),
    "abs": (np.abs, uniform(-2, 2, away=0.1)),
    "sign": (np.sign, uniform(-2, 2, away=0.1)),
    "exp": (np.exp, uniform(-2, 2)),
    "expm1": (lambda x: np.exp(x) - 1, uniform(-2, 2)),
    "log": (np.log, uniform(0.2, 3)),
    "log1p": (lambda x: np.log(1 + x), uniform(-0.5, 3)),
    "sqrt": (np.sqrt, uniform(0.2, 3)),
    "square": (lambda x: x * x, uniform(-2, 2)),
    "reciprocal": (lambda x: 1 / x, uniform(-2, 2, away=0.3)),
    "sin": (np.sin, uniform(-3, 3)),
    "cos": (np.cos, uniform(-3, 3)),
    "tan": (np.tan, uniform(-1.2, 1.2)),
    "arcsin": (np.arcsin, uniform(-0.9, 0.9)),
    "arccos": (np.arccos, uniform(-0.9, 0.9)),
    "arctan": (np.arctan, uniform(-3, 3)),
    "sinh": (np.sinh, uniform(-2, 2)),
    "cosh": (np.cosh, uniform(-2, 2)),
    "tanh": (np.tanh, uniform(-2, 2)),
    "sigmoid": (_sigmoid, uniform(-4, 4)),
    "relu": (lambda x: np.where(x > 0, x, 0.0), uniform(-2, 2, away=0.1)),
    "softplus": (lambda x: np.log(1 + np.exp(x)), uniform(-4, 4)),
    "erf": (_erf, uniform(-2, 2)),
    "erfinv": (scipy.special.erfinv, uniform(-0.9, 0.9)),
    "gammaln": (scipy.special.gammaln, uniform(0.3, 5)),
    "digamma": (scipy.special.digamma, uniform(0.3, 5)),
    "polygamma": (lambda x: scipy.special.polygamma(1, x), uniform(0.3, 5)),  # n = 1 (builder)
    "ndtr": (scipy.special.ndtr, uniform(-3, 3)),
    "log_ndtr": (scipy.special.log_ndtr, uniform(-3, 3)),  # the far tail: test_special_functions
    "ndtri": (scipy.special.ndtri, uniform(0.05, 0.95)),
    "erfcinv": (scipy.special.erfcinv, uniform(0.1, 1.9)),
    "logit": (scipy.special.logit, uniform(0.05, 0.95)),
    "i0e": (scipy.special.i0e, uniform(-4, 4, away=0.2)),  # |x| inside: a kink at 0
    "i1e": (scipy.special.i1e, uniform(-4, 4, away=0.2)),
    "floor": (np.floor, off_jumps(-3, 3)),
    "ceil": (np.ceil, off_jumps(-3, 3)),
    "round": (np.round, off_jumps(-3, 3)),
    "trunc": (np.trunc, off_jumps(-3, 3)),
}


# the elementwise ops of the table that compute numbers (not bools), by arity
MATH = {
    k: sorted(n for n, op in OPS.items() if op.elementwise and op.lower and not op.boolean and op.arity == k)
    for k in (1, 2)
}


def test_unary_table_covers_every_unary_op():
    assert sorted(UNARY) == MATH[1]


@pytest.mark.parametrize("shape", [(), (5,), (2, 3)], ids=str)
@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_vjp_matches_central_differences_numpy(op, shape):
    truth, domain = UNARY[op]
    x = domain(np.random.default_rng(0), shape)
    check_vjp(builder(op), truth, [x], "numpy")


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_vjp_matches_central_differences_numba(op):
    truth, domain = UNARY[op]
    x = domain(np.random.default_rng(0), (2, 3))
    check_vjp(builder(op), truth, [x], "numba")


# ---------------------------------------------------------------- elementwise binary


def _untied(rng, sa, sb):
    """Operands for maximum/minimum at least 0.05 apart everywhere after broadcasting."""
    while True:
        a, b = rng.uniform(-2, 2, sa), rng.uniform(-2, 2, sb)
        if np.min(np.abs(np.subtract(a, b))) > 0.05:
            return a, b


def _off_remainder_jumps(rng, sa, sb):
    """Operands whose quotient a/b is at least 0.02 from a whole number everywhere after
    broadcasting (the remainder jumps there as b moves), with |b| >= 0.5."""
    while True:
        a, b = rng.uniform(-4, 4, sa), uniform(-2, 2, away=0.5)(rng, sb)
        q = np.divide(a, b)
        if np.min(np.abs(q - np.round(q))) > 0.02:
            return a, b


BINARY = {  # name: (plain numpy definition, sampler of both operands)
    "add": (lambda a, b: a + b, lambda r, sa, sb: (r.normal(size=sa), r.normal(size=sb))),
    "sub": (lambda a, b: a - b, lambda r, sa, sb: (r.normal(size=sa), r.normal(size=sb))),
    "mul": (lambda a, b: a * b, lambda r, sa, sb: (r.normal(size=sa), r.normal(size=sb))),
    "div": (lambda a, b: a / b, lambda r, sa, sb: (r.normal(size=sa), uniform(-2, 2, away=0.5)(r, sb))),
    "pow": (np.power, lambda r, sa, sb: (r.uniform(0.5, 2, sa), r.uniform(-2, 2, sb))),
    "maximum": (np.maximum, _untied),
    "minimum": (np.minimum, _untied),
    "arctan2": (np.arctan2, lambda r, sa, sb: (r.uniform(-2, 2, sa), uniform(-2, 2, away=0.3)(r, sb))),
    "logaddexp": (np.logaddexp, lambda r, sa, sb: (r.normal(size=sa) * 3, r.normal(size=sb) * 3)),
    # the truth's own formulas, not np.mod/np.fmod: a - b*floor(a/b) and a - b*trunc(a/b)
    "mod": (lambda a, b: a - b * np.floor(a / b), _off_remainder_jumps),
    "fmod": (lambda a, b: a - b * np.trunc(a / b), _off_remainder_jumps),
    "xlogy": (lambda a, b: a * np.log(b), lambda r, sa, sb: (r.uniform(-2, 2, sa), r.uniform(0.3, 3, sb))),
    "xlog1py": (
        lambda a, b: a * np.log1p(b),
        lambda r, sa, sb: (r.uniform(-2, 2, sa), r.uniform(-0.7, 3, sb)),
    ),
    "betaln": (scipy.special.betaln, lambda r, sa, sb: (r.uniform(0.3, 5, sa), r.uniform(0.3, 5, sb))),
}
BINARY_SHAPES = [
    ((), ()),
    ((), (4,)),
    ((4,), ()),
    ((4,), (4,)),
    ((3, 1), (1, 4)),
    ((2, 3), (3,)),
    ((2, 1, 3), (4, 1)),
]
# numba: one broadcasting pattern per op, the two patterns shared out between the ops
NUMBA_BINARY = [(op, ((3, 1), (1, 4)) if k % 2 == 0 else ((), (4,))) for k, op in enumerate(sorted(BINARY))]


def test_binary_table_covers_every_binary_op():
    assert sorted(BINARY) == MATH[2]


@pytest.mark.parametrize("shapes", BINARY_SHAPES, ids=str)
@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary_vjp_matches_central_differences_numpy(op, shapes):
    truth, sample = BINARY[op]
    a, b = sample(np.random.default_rng(0), *shapes)
    check_vjp(getattr(sg, op), truth, [np.asarray(a), np.asarray(b)], "numpy")


@pytest.mark.parametrize("op, shapes", NUMBA_BINARY, ids=str)
def test_binary_vjp_matches_central_differences_numba(op, shapes):
    truth, sample = BINARY[op]
    a, b = sample(np.random.default_rng(0), *shapes)
    check_vjp(getattr(sg, op), truth, [np.asarray(a), np.asarray(b)], "numba")


# ---------------------------------------------------------------- every claim of the op table
# Each elementwise op's record says how a formula, numpy/scipy and SymPy spell it and how the
# backends lower it; these walk the table and check every claim against the truth above.


def _operands(op, shapes, seed=0):
    """Float operands of ``op`` in its domain (UNARY/BINARY above), shaped ``shapes``."""
    rng = np.random.default_rng(seed)
    if op in UNARY:
        return [UNARY[op][1](rng, shapes[0])], UNARY[op][0]
    a, b = BINARY[op][1](rng, *shapes)
    return [np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)], BINARY[op][0]


def _five_point_direction(f, arrays, tangents, h=1e-3):
    def at(k):
        return np.asarray(f(*[a + k * h * t for a, t in zip(arrays, tangents)]), dtype=np.float64)

    return (at(-2) - 8 * at(-1) + 8 * at(1) - at(2)) / (12 * h)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", MATH[1] + MATH[2])
def test_jvp_matches_central_differences(op, backend):
    shapes = [(2, 3)] if op in UNARY else [(3, 1), (1, 4)]
    arrays, truth = _operands(op, shapes)
    tangents = [np.random.default_rng(7).normal(size=a.shape) for a in arrays]
    symbols = [sg.tensor(NAMES[i], a.shape) for i, a in enumerate(arrays)]
    out = builder(op)(*symbols)
    f = sg.compile([out, sg.jvp(out, symbols, tangents)], inputs=symbols, backend=backend)
    value, tangent = f(*arrays)
    np.testing.assert_allclose(value, truth(*arrays), rtol=1e-12, atol=1e-12)
    want = _five_point_direction(truth, arrays, tangents)
    np.testing.assert_allclose(tangent, want, rtol=1e-6, atol=1e-6 * max(1.0, np.max(np.abs(want))))


@pytest.mark.parametrize("op", MATH[1] + MATH[2])
def test_numba_gives_numpy_value_on_scalars_arrays_and_float32(op):
    for shapes in ([()] * 2, [(5,), (5,)]):
        arrays, truth = _operands(op, shapes[: 1 if op in UNARY else 2], seed=3)
        for dtype in ("float64", "float32"):
            xs = [a.astype(dtype) for a in arrays]
            symbols = [sg.tensor(NAMES[i], a.shape, dtype) for i, a in enumerate(xs)]
            out = builder(op)(*symbols)
            got = [np.asarray(sg.compile(out, inputs=symbols, backend=b)(*xs)) for b in BACKENDS]
            assert got[0].dtype == got[1].dtype == np.dtype(out.dtype), (op, dtype)
            rtol = 1e-5 if dtype == "float32" else 1e-13
            np.testing.assert_allclose(got[1], got[0], rtol=rtol, atol=rtol)
            np.testing.assert_allclose(
                got[0], truth(*[x.astype(np.float64) for x in xs]), rtol=rtol, atol=rtol
            )


@pytest.mark.parametrize("op", sorted(n for n in MATH[2] if OPS[n].lower.startswith("_rt.")))
def test_runtime_helpers_of_two_operands_take_broadcast_arrays_of_mixed_dtypes(op, monkeypatch):
    # unfused (SYMGRAD_FUSION=0), the numba kernel calls the helper on whole arrays
    monkeypatch.setenv("SYMGRAD_FUSION", "0")
    (a, b), truth = _operands(op, [(3, 1), (1, 4)])
    a, b = a.astype(np.float32), b.astype(np.float64)
    symbols = [sg.tensor("a", a.shape, "float32"), sg.tensor("b", b.shape)]
    out = OPS[op].builder(*symbols)
    got = sg.compile(out, inputs=symbols, backend="numba")(a, b)
    assert got.dtype == np.float64 and got.shape == (3, 4)
    np.testing.assert_allclose(got, truth(a.astype(np.float64), b), rtol=1e-13)


ELEMENTWISE = sorted(n for n, op in OPS.items() if op.elementwise)
# operands a spelling is applied to: bools for logic, a condition first for where
_SPELLING_ARGS = {
    "logical_and": ("p", "q"),
    "logical_or": ("p", "q"),
    "logical_not": ("p",),
    "where": ("p", "x", "y"),
}


def _spelling_args(op):
    return _SPELLING_ARGS.get(op, ("x", "y")[: OPS[op].arity])


@pytest.mark.parametrize("op", ELEMENTWISE)
def test_every_parser_name_parses_to_the_op(op):
    assert OPS[op].parse, f"{op} has no parser name"
    literals = "".join(f"{v}, " for v in ATTRIBUTES.get(op, {}).values())  # polygamma(1, x)
    for spelling in OPS[op].parse:
        e = sg.parse(
            f"{spelling}({literals}{', '.join(_spelling_args(op))})", dtypes={"p": "bool", "q": "bool"}
        )
        assert e.op == op and e.attrs == ATTRIBUTES.get(op, {}), (spelling, e.op)
        assert sg.parse(f"{spelling}({literals}x)" if OPS[op].arity == 1 else "x") is not None


@pytest.mark.parametrize("op", ELEMENTWISE)
def test_every_numpy_ufunc_traces_to_the_op(op):
    import importlib

    values = {n: sg.tensor(n, (3,), "bool" if n in "pq" else "float64") for n in "pqxy"}
    for spelling in OPS[op].numpy:
        if isinstance(spelling, str):
            module, _, name = spelling.rpartition(".")
            spelling = getattr(importlib.import_module(module), name)
        assert isinstance(spelling, np.ufunc), spelling
        e = spelling(*[values[n] for n in _spelling_args(op)])
        assert e.op == op, (spelling, e.op)


@pytest.mark.parametrize("op", ELEMENTWISE)
def test_sympy_spelling_both_ways(op):
    import sympy

    opdef = OPS[op]
    symbols = {n: sympy.Symbol(n, real=True) for n in "xy"}
    conditions = {"p": symbols["x"] > 0.5, "q": symbols["y"] < 0.5}
    args = [conditions[n] if n in conditions else symbols[n] for n in _spelling_args(op)]
    if opdef.sympy is not None:  # SymPy -> symgrad (SymPy's arguments are the builder's: polygamma(n, x))
        e = sg.from_sympy(opdef.sympy(*ATTRIBUTES.get(op, {}).values(), *args, evaluate=False))
        assert e.op == op and e.attrs == ATTRIBUTES.get(op, {}), (opdef.sympy, e.op)
    if opdef.sympy is None and opdef.to_sympy is None:
        return
    # symgrad -> SymPy, evaluated by SymPy at points of the op's domain, against the truth
    x, y = sg.scalar("x"), sg.scalar("y")
    values = {"x": x, "y": y, "p": x > 0.5, "q": y < 0.5}
    expr = sg.to_sympy(builder(op)(*[values[n] for n in _spelling_args(op)]))
    fn = sympy.lambdify([symbols["x"], symbols["y"]], expr, modules=["scipy", "numpy"])
    if op in UNARY or op in BINARY:
        arrays, truth = _operands(op, [(4,)] * opdef.arity)
        arrays = arrays + [np.zeros(4)] * (2 - len(arrays))
    else:
        arrays = list(np.random.default_rng(1).uniform(0, 1, (2, 4)))

        def truth(x, y=None):
            named = {"x": x, "y": y, "p": np.bool_(x > 0.5), "q": np.bool_(y < 0.5)}
            return opdef.impl(*[named[n] for n in _spelling_args(op)])

    for x_value, y_value in zip(*arrays):
        math_op = op in UNARY or op in BINARY
        want = truth(*[np.float64(x_value), np.float64(y_value)][: opdef.arity if math_op else 2])
        got = fn(float(x_value), float(y_value))
        assert float(got) == pytest.approx(float(want), rel=1e-12, abs=1e-12), (op, x_value, y_value, got)


def test_every_builder_is_exported():
    for name, op in OPS.items():
        if op.builder is not None:
            assert getattr(sg, name) is op.builder, name


@pytest.mark.parametrize(
    "build, truth",
    [
        (lambda x: x**3, lambda x: x**3),
        (lambda x: x**0.5, np.sqrt),
        (lambda x: 2.0**x, lambda x: 2.0**x),
        (lambda x: 1 / x, lambda x: 1 / x),
        (lambda x: 3 - x, lambda x: 3 - x),
        (lambda x: sg.maximum(x, 0.5), lambda x: np.maximum(x, 0.5)),
    ],
    ids=["cube", "pow_half", "exp2", "rdiv", "rsub", "maximum_const"],
)
def test_binary_with_python_number_vjp(build, truth):
    x = np.array([0.3, 0.8, 1.7, 2.4])
    check_vjp(build, truth, [x], "numpy")


# ---------------------------------------------------------------- where


WHERE_SHAPES = [((4,), (4,), (4,)), ((3, 1), (1, 4), ()), ((), (3,), (2, 3)), ((2, 3), (3,), (2, 1))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shapes", WHERE_SHAPES, ids=str)
def test_where_vjp_routes_gradient_by_condition(shapes, backend):
    if backend == "numba" and shapes not in WHERE_SHAPES[1:3]:
        pytest.skip("numba runs the broadcasting shapes")
    rng = np.random.default_rng(0)
    c = uniform(-1, 1, away=0.2)(rng, shapes[0])
    a, b = rng.normal(size=shapes[1]), rng.normal(size=shapes[2])
    # the condition's input gets a zero gradient (the comparison is piecewise constant)
    check_vjp(
        lambda c, a, b: sg.where(c > 0, a, b), lambda c, a, b: np.where(c > 0, a, b), [c, a, b], backend
    )


COMPARISONS = {
    "less": np.less,
    "less_equal": np.less_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "equal": np.equal,
    "not_equal": np.not_equal,
}


@pytest.mark.parametrize("op", sorted(COMPARISONS))
def test_comparison_broadcasts_and_has_zero_gradient(op):
    a, b = _untied(np.random.default_rng(0), (3, 1), (1, 4))
    check_vjp(
        lambda a, b: sg.where(getattr(sg, op)(a, b), a * b, a - b),
        lambda a, b: np.where(COMPARISONS[op](a, b), a * b, a - b),
        [a, b],
        "numpy",
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_comparisons_and_logic_at_ties(backend):
    # exact ties are where <= and < (and == and !=) differ; compare with numpy's answers
    a, b = sg.tensor("a", (3, 1)), sg.tensor("b", (1, 3))
    outputs = [getattr(sg, op)(a, b) for op in sorted(COMPARISONS)]
    outputs += [
        sg.logical_and(a < b, a > 0),
        sg.logical_or(a < b, a > 0),
        sg.logical_not(a == b),
        sg.isfinite(a / b),
    ]
    f = sg.compile(outputs, inputs=[a, b], backend=backend)
    av, bv = np.array([[-1.0], [0.5], [2.0]]), np.array([[0.5, 0.0, -1.0]])
    with np.errstate(divide="ignore"):
        expected = [COMPARISONS[op](av, bv) for op in sorted(COMPARISONS)]
        expected += [(av < bv) & (av > 0), (av < bv) | (av > 0), ~(av == bv), np.isfinite(av / bv)]
    for got, want in zip(f(av, bv), expected):
        assert got.dtype == np.bool_
        np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------- reductions

REDUCTIONS = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "prod": np.prod}
AXES = [(None, False), (None, True), (0, False), (-1, True), ((0, 2), False), ((-1, -3), True), (1, False)]


def _reduction_input(op, rng, shape):
    if op in ("max", "min"):
        return distinct(rng, shape)
    if op == "prod":
        return uniform(-1.5, 1.5, away=0.5)(rng, shape)
    return rng.normal(size=shape)


@pytest.mark.parametrize("axis, keepdims", AXES, ids=str)
@pytest.mark.parametrize("op", sorted(REDUCTIONS))
def test_reduction_vjp_numpy(op, axis, keepdims):
    x = _reduction_input(op, np.random.default_rng(0), (2, 3, 4))
    check_vjp(
        lambda x: getattr(sg, op)(x, axis=axis, keepdims=keepdims),
        lambda x: REDUCTIONS[op](x, axis=axis, keepdims=keepdims),
        [x],
        "numpy",
    )


# numba lowers a full reduction and a partial one differently; each op gets one, max both
NUMBA_REDUCTIONS = [
    ("sum", (0, 2), False),
    ("mean", None, True),
    ("max", None, True),
    ("max", (0, 2), False),
    ("min", -1, True),
    ("prod", (0, 2), False),
]


@pytest.mark.parametrize("op, axis, keepdims", NUMBA_REDUCTIONS, ids=str)
def test_reduction_vjp_numba(op, axis, keepdims):
    x = _reduction_input(op, np.random.default_rng(0), (2, 3, 4))
    check_vjp(
        lambda x: getattr(sg, op)(x, axis=axis, keepdims=keepdims),
        lambda x: REDUCTIONS[op](x, axis=axis, keepdims=keepdims),
        [x],
        "numba",
    )


@pytest.mark.parametrize(
    "axis, backend", [(None, "numpy"), (1, "numpy"), (0, "numpy"), (1, "numba")], ids=str
)
def test_prod_vjp_with_zero_elements_is_product_of_the_others(axis, backend):
    x = np.array([[0.5, 0.0, 1.5, -2.0], [0.0, 0.0, 1.2, 0.7], [1.1, -0.9, 0.8, 1.3]])
    check_vjp(lambda x: sg.prod(x, axis=axis), lambda x: np.prod(x, axis=axis), [x], backend)


def test_prod_second_derivative_needing_a_mask_above_the_constant_bound_is_refused(monkeypatch):
    from symgrad.ops import registry

    monkeypatch.setattr(registry, "MAX_CONSTANT_ELEMENTS", 100)
    x = sg.tensor("x", (11,))
    g = sg.grad(sg.prod(x), x)
    with pytest.raises(sg.UnsupportedError, match=r"prod over 11 elements need a 11x11 mask, more than 100"):
        sg.grad(sg.sum(g * np.arange(11.0)), x)
    y = sg.tensor("y", (10,))  # 10x10 is within the bound
    sg.grad(sg.sum(sg.grad(sg.prod(y), y)), y)


@pytest.mark.parametrize(
    "axis, backend", [(None, "numpy"), (1, "numpy"), ((0, 2), "numpy"), ((0, 2), "numba")], ids=str
)
def test_prod_hessian_vector_product_with_zero_elements(axis, backend):
    rng = np.random.default_rng(0)
    data = rng.uniform(0.5, 1.5, (2, 3, 4))
    data[0, 1, 2] = data[1, 0, 0] = data[1, 0, 3] = 0.0
    weight = rng.normal(size=np.prod(data, axis=axis).shape)
    x, v = sg.tensor("x", data.shape), sg.tensor("v", data.shape)
    gx = sg.grad(sg.sum(sg.prod(x, axis=axis) * weight), x)
    hvp = sg.compile(sg.grad(sg.sum(gx * v), x), inputs=[x, v], backend=backend)
    direction = rng.normal(size=data.shape)

    def loss(z):
        return np.sum(np.prod(z, axis=axis) * weight)

    # loss is multilinear, so mixed central differences give its Hessian exactly, whatever h
    n, h = data.size, 0.5
    hessian = np.zeros((n, n))
    for k in range(n):
        for m in range(n):
            e_k, e_m = np.eye(n)[k].reshape(data.shape) * h, np.eye(n)[m].reshape(data.shape) * h
            hessian[k, m] = (
                loss(data + e_k + e_m)
                - loss(data + e_k - e_m)
                - loss(data - e_k + e_m)
                + loss(data - e_k - e_m)
            ) / (4 * h * h)
    np.testing.assert_allclose(
        hvp(data, direction), (hessian @ direction.ravel()).reshape(data.shape), rtol=1e-12, atol=1e-12
    )


def test_prod_second_derivative_over_a_symbolic_size_is_a_clear_error():
    x = sg.tensor("x", ("n",))
    with pytest.raises(sg.UnsupportedError, match="symbolic"):
        sg.grad(sg.sum(sg.grad(sg.prod(x), x)), x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reductions_of_a_vector_and_a_scalar(backend):
    x = np.array([0.3, -1.2, 2.0, 0.9])
    check_vjp(
        lambda x: sg.max(x) * sg.mean(x) + sg.prod(x) - sg.min(x, keepdims=True),
        lambda x: np.max(x) * np.mean(x) + np.prod(x) - np.min(x, keepdims=True),
        [x],
        backend,
    )
    check_vjp(lambda s: sg.sum(s) + sg.max(s, keepdims=True), lambda s: s + s, [np.array(0.7)], backend)


# ---------------------------------------------------------------- logsumexp, softmax, log_softmax


def _np_logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _np_softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _np_log_softmax(x, axis=-1):
    return x - _np_logsumexp(x, axis=axis, keepdims=True)


STABLE = {"logsumexp": _np_logsumexp, "softmax": _np_softmax, "log_softmax": _np_log_softmax}
STABLE_CASES = [
    ((5,), -1, False),
    ((3, 4), 0, False),
    ((3, 4), 1, True),
    ((2, 3, 4), (0, 2), False),
    ((3, 4), None, True),
]


@pytest.mark.parametrize("shape, axis, keepdims", STABLE_CASES, ids=str)
@pytest.mark.parametrize("op", sorted(STABLE))
def test_stable_composite_vjp_numpy(op, shape, axis, keepdims):
    x = np.random.default_rng(0).normal(size=shape) * 2
    kw = {"keepdims": keepdims} if op == "logsumexp" else {}
    check_vjp(lambda x: getattr(sg, op)(x, axis, **kw), lambda x: STABLE[op](x, axis, **kw), [x], "numpy")


@pytest.mark.parametrize("op", sorted(STABLE))
def test_stable_composite_vjp_numba(op):
    x = np.random.default_rng(0).normal(size=(3, 4)) * 2
    check_vjp(lambda x: getattr(sg, op)(x, 0), lambda x: STABLE[op](x, 0), [x], "numba")


@pytest.mark.parametrize(
    "op, backend",
    [("softmax", "numpy"), ("log_softmax", "numpy"), ("logsumexp", "numpy"), ("softmax", "numba")],
    ids=str,
)
def test_large_scores_are_finite_with_exact_gradient(op, backend):
    s = np.array([[1000.0, 999.0, 998.5, 1001.0], [-1000.0, -1001.0, -999.5, -1002.0]])
    vg = check_vjp(lambda x: getattr(sg, op)(x, 1), lambda x: STABLE[op](x, 1), [s], backend, h=1e-6)
    value, grad = vg(s)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("backend", BACKENDS)
def test_logsumexp_of_all_minus_inf_is_minus_inf_with_nan_free_gradient(backend):
    x = sg.tensor("x", (3, 4))
    lse = sg.logsumexp(x, axis=1)
    grad = sg.grad(sg.sum(sg.where(sg.isfinite(lse), lse, 0.0)), x)
    f = sg.compile([lse, grad], inputs=[x], backend=backend)
    data = np.array([[-np.inf] * 4, [0.5, -np.inf, 1.5, -np.inf], [0.1, 0.2, -0.3, 0.4]])
    value, g = f(data)
    assert value[0] == -np.inf
    np.testing.assert_allclose(value[1:], _np_logsumexp(data[1:], axis=1), rtol=1e-13)
    assert not np.isnan(g).any()
    # d logsumexp / dx = softmax(x): zero where x = -inf, and the all -inf row gets no gradient
    np.testing.assert_allclose(g[0], 0.0)
    np.testing.assert_allclose(g[1:], _np_softmax(data[1:], axis=1), rtol=1e-13)


# ---------------------------------------------------------------- linear algebra

MATMUL_SHAPES = [
    ((3,), (3,)),
    ((2, 3), (3,)),
    ((3,), (3, 4)),
    ((2, 3), (3, 4)),
    ((2, 2, 3), (2, 3, 4)),
    ((2, 2, 3), (3, 4)),
    ((2, 3), (2, 3, 4)),
    ((1, 2, 3), (2, 3, 4)),
    ((2, 2, 3), (3,)),
    ((3,), (2, 3, 4)),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_vjp_in_every_rank_combination(shapes, backend):
    if backend == "numba" and len(shapes[0]) + len(shapes[1]) == 4 and 1 in map(len, shapes):
        pytest.skip("a vector with a batch is built as a reshaped batched product, which numba runs too")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=shapes[0]), rng.normal(size=shapes[1])
    check_vjp(lambda a, b: a @ b, np.matmul, [a, b], backend)


@pytest.mark.parametrize(
    "shapes, backend",
    [
        (((3,), (3,)), "numpy"),
        (((2, 3), (3, 4)), "numpy"),
        (((2, 3), (3,)), "numpy"),
        (((), (3,)), "numpy"),
        (((2, 3), (3,)), "numba"),
    ],
    ids=str,
)
def test_dot_vjp(shapes, backend):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=shapes[0]), rng.normal(size=shapes[1])
    check_vjp(sg.dot, np.dot, [a, b], backend)


@pytest.mark.parametrize(
    "shapes, backend",
    [(((3,), (4,)), "numpy"), (((2, 2), (3,)), "numpy"), (((2, 2), (3,)), "numba")],
    ids=str,
)
def test_outer_vjp(shapes, backend):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=shapes[0]), rng.normal(size=shapes[1])
    check_vjp(sg.outer, np.outer, [a, b], backend)


# ---------------------------------------------------------------- structure

STRUCTURE = {  # id: (builder, plain numpy definition, input shapes)
    "transpose_2d": (lambda x: x.T, lambda x: x.T, [(2, 3)]),
    "transpose_axes": (
        lambda x: sg.transpose(x, (1, 2, 0)),
        lambda x: np.transpose(x, (1, 2, 0)),
        [(2, 3, 4)],
    ),
    "transpose_negative_axes": (
        lambda x: sg.transpose(x, (-1, 0, 1)),
        lambda x: np.transpose(x, (-1, 0, 1)),
        [(2, 3, 4)],
    ),
    "reshape": (lambda x: sg.reshape(x, (3, 2)), lambda x: np.reshape(x, (3, 2)), [(2, 3)]),
    "reshape_minus_one": (lambda x: sg.reshape(x, (-1, 4)), lambda x: np.reshape(x, (-1, 4)), [(2, 3, 4)]),
    "reshape_flat": (lambda x: x.reshape(-1), lambda x: x.reshape(-1), [(2, 3)]),
    "reshape_of_transpose": (lambda x: sg.reshape(x.T, (6,)), lambda x: np.reshape(x.T, (6,)), [(2, 3)]),
    "reshape_to_scalar": (lambda x: sg.reshape(x, ()), lambda x: np.reshape(x, ()), [(1, 1)]),
    "reshape_from_scalar": (lambda x: sg.reshape(x, (1, 1)), lambda x: np.reshape(x, (1, 1)), [()]),
    "expand_dims_0": (lambda x: sg.expand_dims(x, 0), lambda x: np.expand_dims(x, 0), [(3,)]),
    "expand_dims_last": (lambda x: sg.expand_dims(x, -1), lambda x: np.expand_dims(x, -1), [(2, 3)]),
    "expand_dims_tuple": (lambda x: sg.expand_dims(x, (0, 2)), lambda x: np.expand_dims(x, (0, 2)), [(2, 3)]),
    "squeeze_all": (sg.squeeze, np.squeeze, [(1, 3, 1)]),
    "squeeze_axis": (lambda x: sg.squeeze(x, 0), lambda x: np.squeeze(x, 0), [(1, 3, 1)]),
    "broadcast_vector": (lambda x: sg.broadcast_to(x, (2, 3)), lambda x: np.broadcast_to(x, (2, 3)), [(3,)]),
    "broadcast_column": (
        lambda x: sg.broadcast_to(x, (3, 4)),
        lambda x: np.broadcast_to(x, (3, 4)),
        [(3, 1)],
    ),
    "broadcast_scalar": (lambda x: sg.broadcast_to(x, (2, 2)), lambda x: np.broadcast_to(x, (2, 2)), [()]),
    "broadcast_middle": (
        lambda x: sg.broadcast_to(x, (2, 4, 3)),
        lambda x: np.broadcast_to(x, (2, 4, 3)),
        [(2, 1, 3)],
    ),
    "slice_from_1": (lambda x: x[1:], lambda x: x[1:], [(5,)]),
    "slice_to_minus_1": (lambda x: x[:-1], lambda x: x[:-1], [(5,)]),
    "column_0": (lambda x: x[:, 0], lambda x: x[:, 0], [(3, 4)]),
    "step_2": (lambda x: x[::2], lambda x: x[::2], [(5,)]),
    "step_back": (lambda x: x[::-2], lambda x: x[::-2], [(5,)]),
    "new_axis": (lambda x: x[None], lambda x: x[None], [(4,)]),
    "new_axis_middle": (lambda x: x[:, None, 1:], lambda x: x[:, None, 1:], [(2, 3)]),
    "negative_index": (lambda x: x[-1], lambda x: x[-1], [(5,)]),
    "negative_row": (lambda x: x[-2], lambda x: x[-2], [(3, 4)]),
    "ellipsis": (lambda x: x[..., 1], lambda x: x[..., 1], [(2, 3, 4)]),
    "mixed_slice": (lambda x: x[1:, 1:3], lambda x: x[1:, 1:3], [(3, 4)]),
    "element": (lambda x: x[1, 2], lambda x: x[1, 2], [(3, 4)]),
    "concatenate_0": (
        lambda a, b: sg.concatenate([a, b]),
        lambda a, b: np.concatenate([a, b]),
        [(2, 3), (1, 3)],
    ),
    "concatenate_last": (
        lambda a, b: sg.concatenate([a, b, a], axis=-1),
        lambda a, b: np.concatenate([a, b, a], axis=-1),
        [(2, 3), (2, 2)],
    ),
    "stack_0": (lambda a, b: sg.stack([a, b]), lambda a, b: np.stack([a, b]), [(3,), (3,)]),
    "stack_last": (
        lambda a, b: sg.stack([a, b, a], axis=-1),
        lambda a, b: np.stack([a, b, a], axis=-1),
        [(2, 3), (2, 3)],
    ),
    "stack_scalars": (lambda a, b: sg.stack([a, b]), lambda a, b: np.stack([a, b]), [(), ()]),
}


# the cases whose numba lowering takes a path of its own (views, scalars, steps, None)
NUMBA_STRUCTURE = (
    "transpose_axes reshape_of_transpose reshape_to_scalar reshape_from_scalar "
    "squeeze_all broadcast_scalar broadcast_middle step_2 step_back new_axis_middle "
    "negative_row element concatenate_last stack_scalars"
).split()


@pytest.mark.parametrize("case", sorted(STRUCTURE))
def test_structural_vjp_numpy(case):
    build, truth, shapes = STRUCTURE[case]
    rng = np.random.default_rng(0)
    check_vjp(build, truth, [rng.normal(size=s) for s in shapes], "numpy")


@pytest.mark.parametrize("case", NUMBA_STRUCTURE)
def test_structural_vjp_numba(case):
    build, truth, shapes = STRUCTURE[case]
    rng = np.random.default_rng(0)
    check_vjp(build, truth, [rng.normal(size=s) for s in shapes], "numba")


@pytest.mark.parametrize("backend", BACKENDS)
def test_slicing_on_a_symbolic_dimension(backend):
    x = sg.tensor("x", ("n",))
    y = x[1:] - x[:-1]
    loss = sg.sum(y * y) + x[-1] * x[0]
    vg = sg.value_and_grad(loss, wrt=x, backend=backend)
    data = np.array([0.3, -1.2, 2.0, 0.9, 0.4])
    value, g = vg(data)
    d = np.diff(data)
    assert value == pytest.approx(np.sum(d * d) + data[-1] * data[0], rel=1e-13)
    expected = np.zeros(5)
    expected[1:] += 2 * d
    expected[:-1] -= 2 * d
    expected[-1] += data[0]
    expected[0] += data[-1]
    np.testing.assert_allclose(g, expected, rtol=1e-13)


# ---------------------------------------------------------------- cast


@pytest.mark.parametrize("backend", BACKENDS)
def test_cast_through_float32_passes_the_gradient_rounded_to_float32(backend):
    x = sg.tensor("x", (2, 3))
    weight = np.random.default_rng(0).normal(size=(2, 3))
    loss = sg.sum(sg.cast(sg.cast(x, "float32"), "float64") * weight)
    vg = sg.value_and_grad(loss, wrt=x, backend=backend)
    data = np.random.default_rng(1).normal(size=(2, 3))
    value, g = vg(data)
    # d cast = 1: the cotangent comes back through float32, so it is rounded there
    assert g.dtype == np.float64
    np.testing.assert_allclose(g, weight.astype(np.float32), rtol=0)
    assert value == pytest.approx(np.sum(data.astype(np.float32).astype(np.float64) * weight), rel=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cast_of_an_int_input_gets_no_gradient(backend):
    k = np.array([1, -2, 3])
    check_vjp(
        lambda x, k: x * sg.cast(k, "float64"),
        lambda x, k: x * k.astype(np.float64),
        [np.array([0.5, 1.5, -0.7]), k],
        backend,
    )


# ---------------------------------------------------------------- integer operands


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_operands_keep_numpy_dtypes(backend):
    # narrow ints stay narrow elementwise, and sum/prod accumulate in 64 bits, as numpy does
    k, u = sg.tensor("k", (2, 3), dtype="int32"), sg.tensor("u", (3,), dtype="uint8")
    outputs = [
        sg.relu(k),
        k * 2,
        sg.abs(k),
        sg.max(k, axis=1),
        sg.sum(k),
        sg.sum(k, axis=0),
        sg.prod(k, axis=1, keepdims=True),
        sg.sum(u),
        sg.mean(k),
        k / 2,
        sg.relu(k[0, 1]),
    ]
    kv, uv = np.array([[1, -2, 3], [4, 5, -6]], dtype=np.int32), np.array([200, 100, 7], dtype=np.uint8)
    expected = [
        np.maximum(kv, 0),
        kv * 2,
        np.abs(kv),
        np.max(kv, axis=1),
        np.sum(kv),
        np.sum(kv, axis=0),
        np.prod(kv, axis=1, keepdims=True),
        np.sum(uv),
        np.mean(kv),
        kv / 2,
        np.maximum(kv[0, 1], 0),
    ]
    f = sg.compile(outputs, inputs=[k, u], backend=backend)
    for node, got, want in zip(outputs, f(kv, uv), expected):
        assert node.dtype == np.asarray(want).dtype, (node, node.dtype, np.asarray(want).dtype)
        assert np.asarray(got).dtype == np.asarray(want).dtype, (node, np.asarray(got).dtype)
        np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------- float32 end to end

FLOAT32_OPS = {
    "exp": (sg.exp, uniform(-2, 2)),
    "log": (sg.log, uniform(0.2, 3)),
    "sigmoid": (sg.sigmoid, uniform(-4, 4)),
    "softplus": (sg.softplus, uniform(-4, 4)),
    "erf": (sg.erf, uniform(-2, 2)),
    "relu": (sg.relu, uniform(-2, 2, away=0.1)),
    "tanh_pow": (lambda x: sg.tanh(x) ** 3 + x / 2.5, uniform(-2, 2)),
    "softmax": (lambda x: sg.softmax(x), uniform(-3, 3)),
    "logsumexp": (lambda x: sg.logsumexp(x, keepdims=True), uniform(-3, 3)),
    "max_mean": (lambda x: sg.max(x) - sg.mean(x) * x, distinct),
    "outer_matmul": (lambda x: sg.outer(x, x) @ x, uniform(-1, 1)),
    "slice_prod": (lambda x: sg.concatenate([x[:1], x[1:] * sg.prod(x[:-1])]), uniform(-1.5, 1.5, away=0.5)),
    # every jump of these is at a multiple of 0.25; the samples are 0.125 +- 0.05 from them
    "rounding": (
        lambda x: sg.floor(x * 2) + x % 0.75 + sg.fmod(x, 0.75) * sg.round(x) + sg.ceil(x) * sg.trunc(x),
        lambda rng, shape: 0.125 + 0.25 * rng.integers(-12, 12, shape) + rng.uniform(-0.05, 0.05, shape),
    ),
}


# numba gets the ops whose float32 code differs: runtime ufuncs, masks, prod_others, BLAS
NUMBA_FLOAT32 = "sigmoid softplus erf relu softmax max_mean slice_prod outer_matmul rounding".split()


@pytest.mark.parametrize(
    "case, backend",
    [(c, "numpy") for c in sorted(FLOAT32_OPS)] + [(c, "numba") for c in NUMBA_FLOAT32],
    ids=str,
)
def test_float32_end_to_end(case, backend):
    build, domain = FLOAT32_OPS[case]
    data = domain(np.random.default_rng(0), (5,))
    weight = np.random.default_rng(1).normal(size=5)
    results = {}
    # the float64 reference runs on numpy whatever the backend under test (one compile fewer)
    for dtype, where in (("float32", backend), ("float64", "numpy")):
        x, w = sg.tensor("x", ("n",), dtype=dtype), sg.tensor("w", ("n",), dtype=dtype)
        loss = sg.sum(build(x) * w)
        assert loss.dtype == dtype
        vg = sg.value_and_grad(loss, wrt=x, inputs=[x, w], backend=where)
        results[dtype] = vg(data.astype(dtype), weight.astype(dtype))
    (v32, g32), (v64, g64) = results["float32"], results["float64"]
    assert np.asarray(v32).dtype == np.float32, type(v32)
    assert g32.dtype == np.float32 and g32.shape == (5,)
    np.testing.assert_allclose(float(v32), v64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-4 * max(1.0, np.max(np.abs(g64))))


# ---------------------------------------------------------------- non-smooth conventions

CONVENTIONS = {  # id: (builder, point, the documented subgradient there)
    "abs_at_0": (sg.abs, np.array([0.0, 1.0, -2.0]), [0.0, 1.0, -1.0]),
    "relu_at_0": (sg.relu, np.array([0.0, 1.0, -2.0]), [0.0, 1.0, 0.0]),
    "maximum_x_0_at_0": (lambda x: sg.maximum(x, 0.0), np.array([0.0, 1.0, -2.0]), [0.0, 1.0, 0.0]),
    "maximum_0_x_at_0": (lambda x: sg.maximum(0.0, x), np.array([0.0, 1.0, -2.0]), [0.0, 1.0, 0.0]),
    "minimum_x_0_at_0": (lambda x: sg.minimum(x, 0.0), np.array([0.0, 1.0, -2.0]), [0.0, 0.0, 1.0]),
    "where_x_pos_at_0": (lambda x: sg.where(x > 0, x, 0.0), np.array([0.0, 1.0, -2.0]), [0.0, 1.0, 0.0]),
    "max_tie_first": (sg.max, np.array([1.0, 3.0, 3.0, 2.0]), [0.0, 1.0, 0.0, 0.0]),
    "min_tie_first": (sg.min, np.array([1.0, -3.0, 2.0, -3.0]), [0.0, 1.0, 0.0, 0.0]),
    "max_tie_rows": (
        lambda x: sg.sum(sg.max(x, axis=1)),
        np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]]),
        [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
    ),
    "max_tie_columns": (
        lambda x: sg.sum(sg.max(x, axis=0)),
        np.array([[1.0, 3.0, 3.0], [2.0, 3.0, 3.0]]),
        [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]],
    ),
    "max_tie_all_2d": (sg.max, np.array([[1.0, 3.0], [3.0, 3.0]]), [[0.0, 1.0], [0.0, 0.0]]),
    # rounding ops: 0 at their jumps too
    "floor_at_jumps": (sg.floor, np.array([-1.0, 0.0, 2.0]), [0.0, 0.0, 0.0]),
    "ceil_at_jumps": (sg.ceil, np.array([-1.0, 0.0, 2.0]), [0.0, 0.0, 0.0]),
    "round_at_halves": (sg.round, np.array([-0.5, 0.5, 2.5]), [0.0, 0.0, 0.0]),
    "trunc_at_jumps": (sg.trunc, np.array([-1.0, 0.0, 2.0]), [0.0, 0.0, 0.0]),
    # mod/fmod where a/b is a whole number k: d/da = 1, d/db = -k
    "mod_dividend_at_jumps": (lambda x: x % 2.0, np.array([-4.0, 0.0, 6.0]), [1.0, 1.0, 1.0]),
    "mod_divisor_at_jumps": (lambda x: 6.0 % x, np.array([3.0, 2.0, -3.0]), [-2.0, -3.0, 2.0]),
    "fmod_divisor_at_jumps": (lambda x: sg.fmod(-6.0, x), np.array([3.0, 2.0, -3.0]), [2.0, 3.0, -2.0]),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(CONVENTIONS))
def test_non_smooth_convention(case, backend):
    build, point, expected = CONVENTIONS[case]
    x = sg.tensor("x", point.shape)
    vg = sg.value_and_grad(sg.sum(build(x)), wrt=x, backend=backend)
    _, g = vg(point)
    np.testing.assert_array_equal(g, np.array(expected))


# ---------------------------------------------------------------- rounding and remainders


@pytest.mark.parametrize("backend", BACKENDS)
def test_rounding_and_remainders_match_numpy_at_ties_and_signs(backend):
    # halves round to even (np.round), mod takes the divisor's sign, fmod the dividend's;
    # floats of both widths and int64 keep numpy's dtypes
    halves = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.7, -3.7])
    divisors = np.array([2.0, -2.0, 0.75, -0.75, 3.0, -3.0, 1.5, -1.5])
    ints, int_divisors = np.array([-7, -3, 0, 4, 9, -8, 5, 7]), np.array([3, -3, 5, -5, 0, -3, 2, -2])
    for dtype in ("float64", "float32"):
        a, b = sg.tensor("a", (8,), dtype), sg.tensor("b", (8,), dtype)
        A, B = halves.astype(dtype), divisors.astype(dtype)
        outputs = [sg.floor(a), sg.ceil(a), sg.round(a), sg.trunc(a), a % b, 2 % a, sg.fmod(a, b)]
        truths = [
            np.floor(A),
            np.ceil(A),
            np.round(A),
            np.trunc(A),
            np.mod(A, B),
            np.mod(2, A),
            np.fmod(A, B),
        ]
        # the fused loop (several elementwise ops in one) and the per-op statements
        outputs.append(sg.exp(sg.fmod(a, b) * 0.5) + sg.round(a * 3) % 4)
        truths.append(np.exp(np.fmod(A, B) * np.float32(0.5).astype(dtype)) + np.mod(np.round(A * 3), 4))
        got = sg.compile(outputs, inputs=[a, b], backend=backend)(A, B)
        for k, (value, truth) in enumerate(zip(got, truths)):
            assert value.dtype == truth.dtype == np.dtype(dtype), (k, value.dtype, truth.dtype)
            np.testing.assert_allclose(value, truth, rtol=1e-6, err_msg=f"{dtype} output {k}")
    i, j = sg.tensor("i", (8,), "int64"), sg.tensor("j", (8,), "int64")
    with np.errstate(divide="ignore"):
        truths = [np.mod(ints, int_divisors), np.fmod(ints, int_divisors), np.floor(ints)]
    got = sg.compile([i % j, sg.fmod(i, j), sg.floor(i)], inputs=[i, j], backend=backend)(ints, int_divisors)
    for value, truth in zip(got, truths):
        assert value.dtype == truth.dtype
        np.testing.assert_array_equal(value, truth)


def test_python_operators_and_rounding_builtins_on_expressions():
    x, y = sg.scalars("x y")
    assert x % y is sg.mod(x, y) and 2 % x is sg.mod(2, x)
    assert round(x) is sg.round(x) and math.floor(x) is sg.floor(x)
    assert math.ceil(x) is sg.ceil(x) and math.trunc(x) is sg.trunc(x)
    with pytest.raises(sg.UnsupportedError, match=r"round\(x, 2\) on a symbolic value"):
        round(x, 2)


def test_numpy_rounding_and_remainder_functions_trace_to_the_ops():
    v0 = np.array([-2.7031, -0.3512, 1.2213, 2.3117, 3.1389, 0.1213])  # off every jump

    def f(v):
        return np.sum(
            np.mod(v, 1.5) * np.remainder(v, 2)
            + np.fmod(v, 2.0)
            + np.floor(v) * v
            + np.ceil(v)
            + np.round(v, 2)
            + np.around(v)
            + np.rint(v)
            + np.trunc(v) * v
            + v % 3
            + 3 % v
            + np.round(v * 1000, -2)
        )

    value, grad = sg.value_and_grad(f)(v0)
    np.testing.assert_allclose(value, f(v0), rtol=1e-13)
    h = 1e-6
    numeric = [(f(v0 + h * e) - f(v0 - h * e)) / (2 * h) for e in np.eye(len(v0))]
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


def test_a_misspelled_keyword_of_an_op_declaration_is_refused():
    from symgrad.ops.elementwise import unary

    with pytest.raises(TypeError, match=r"op 'not_an_op': unknown keyword\(s\) \['sympi'\]"):
        unary("not_an_op", None, "", sympi=None)
    assert "not_an_op" not in OPS


# ---------------------------------------------------------------- special functions: polygamma's order


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_polygamma_of_each_order_and_its_derivative_match_scipy_and_central_differences(n, backend):
    x = uniform(0.3, 5)(np.random.default_rng(n), (2, 3))
    check_vjp(lambda a: sg.polygamma(n, a), lambda a: scipy.special.polygamma(n, a), [x], backend)
    # the first and second derivatives are polygamma(n + 1), polygamma(n + 2): SciPy's values
    s = sg.scalar("s")
    e = sg.polygamma(n, s)
    d1 = sg.grad(e, s)
    f = sg.compile([e, d1, sg.grad(d1, s)], inputs=[s], backend=backend)
    for point in (0.4, 1.7, 4.2):
        want = [scipy.special.polygamma(k, point) for k in (n, n + 1, n + 2)]
        np.testing.assert_allclose(f(point), want, rtol=1e-12)


def test_polygamma_of_order_zero_is_digamma_and_keeps_float32():
    x = sg.tensor("x", (3,), "float32")
    assert sg.polygamma(0, x) is sg.digamma(x)
    assert sg.polygamma(np.int64(2), x).attrs == {"n": 2} and sg.polygamma(2, x).dtype == "float32"
    assert sg.polygamma(1, sg.tensor("k", (3,), "int64")).dtype == "float64"


@pytest.mark.parametrize("n", [-1, 1.0, True, None, "1"])
def test_polygamma_order_must_be_a_non_negative_int(n):
    with pytest.raises(
        sg.UnsupportedError, match=r"polygamma\(n, x\): the order n must be a non-negative integer"
    ):
        sg.polygamma(n, sg.scalar("x"))
    with pytest.raises(sg.UnsupportedError, match="the order n must be a non-negative integer"):
        sg.polygamma(sg.scalar("k"), sg.scalar("x"))


def test_special_functions_from_sympy():
    import sympy

    x = sympy.Symbol("x", real=True)
    e = sg.from_sympy(sympy.polygamma(3, x))
    assert (e.op, e.attrs) == ("polygamma", {"n": 3})
    assert sg.from_sympy(sympy.polygamma(0, x)).op == "digamma"
    assert sg.from_sympy(sympy.digamma(x)).op == "digamma"
    assert sg.from_sympy(sympy.erfinv(x)).op == "erfinv"
    # SymPy's loggamma is log Γ (complex for x < 0); gammaln is log|Γ|: the same for x > 0
    assert sg.from_sympy(sympy.loggamma(x)).op == "gammaln"
    with pytest.raises(sg.UnsupportedError, match="the order n must be a non-negative integer"):
        sg.from_sympy(sympy.polygamma(sympy.Symbol("k", integer=True), x))


# ---------------------------------------------------------------- traits the passes ask the records for

# The spec of which ops have each trait: the op-name sets the passes kept before the traits
# (autodiff._MOVES_ADJOINT / _REDUCTIONS, sparsity._REDUCTIONS, decompose._ROW_PRESERVING / _LINEAR /
# its reduction and product tests, printing._INFIX, emit._VIEWS / GATHER_OPS and its max/min and
# symbol/constant tests, the simplifier's reduction rule).
_REDUCTIONS = {"sum", "max", "min", "prod"}
TRAIT_SPEC = {
    "reduction": _REDUCTIONS,
    "along_axes": _REDUCTIONS | {"argmax_mask", "argmin_mask", "prod_others"},
    "linear": {"add", "sub", "neg", "sum", "reshape", "transpose", "broadcast_to", "getitem", "concatenate"}
    | {"slice_grad"},
    "bilinear": {"mul", "matmul"},
    "keeps_rows": _REDUCTIONS
    | {"argmax_mask", "argmin_mask", "prod_others", "reshape", "transpose", "broadcast_to", "getitem"}
    | {"concatenate", "matmul", "take0", "take_last", "arange"},
    "given": {"symbol", "constant"},
    "needs_nonempty": {"max", "min"},
    "aliases": {"symbol", "constant", "transpose", "broadcast_to", "reshape", "getitem", "stop_gradient"}
    | {"custom"},
    "index_operand": {"take0", "scatter_add0", "take_last", "scatter_last"},
}
MOVES_ADJOINT_SPEC = {
    **dict.fromkeys(["reshape", "broadcast_to", "transpose", "getitem", "slice_grad", "take0"], (0,)),
    **dict.fromkeys(["scatter_add0", "take_last", "scatter_last", "sum", "cast"], (0,)),
    "concatenate": "all",
}
INFIX_SPEC = {
    "add": ("+", 1),
    "sub": ("-", 1),
    "mul": ("*", 2),
    "div": ("/", 2),
    "mod": ("%", 2),
    "matmul": ("@", 2),
    "pow": ("**", 4),
    "less": ("<", 0),
    "less_equal": ("<=", 0),
    "greater": (">", 0),
    "greater_equal": (">=", 0),
    "equal": ("==", 0),
    "not_equal": ("!=", 0),
}


@pytest.mark.parametrize("trait", sorted(TRAIT_SPEC))
def test_trait_is_declared_on_exactly_the_ops_the_passes_used(trait):
    assert {name for name, op in OPS.items() if getattr(op, trait)} == TRAIT_SPEC[trait]


def test_value_of_is_declared_on_the_ops_whose_value_is_an_operand():
    # ir.build computes nothing for them (stop_gradient's operand, a custom call's primal result)
    assert {name: op.value_of for name, op in OPS.items() if op.value_of is not None} == {
        "stop_gradient": 0,
        "custom": "n",
    }


def test_moves_adjoint_and_infix_traits_are_the_passes_old_tables():
    assert {name: op.moves_adjoint for name, op in OPS.items() if op.moves_adjoint} == MOVES_ADJOINT_SPEC
    assert {name: (op.infix, op.precedence) for name, op in OPS.items() if op.infix} == INFIX_SPEC


def test_tables_the_passes_derive_are_the_old_sets():
    from symgrad import autodiff
    from symgrad.codegen import emit

    assert {n for n, op in OPS.items() if autodiff._reads_values(op)} == {"max", "min", "prod"}
    assert emit._VIEWS == TRAIT_SPEC["aliases"]
    assert emit.GATHER_OPS == TRAIT_SPEC["index_operand"]


@pytest.mark.parametrize("op", sorted(MOVES_ADJOINT_SPEC))
def test_moves_adjoint_rules_read_no_value(op):
    # the adjoint it sends to a moved input is built from the incoming adjoint (and index operands)
    # alone: neither that input's value nor the output's enters it
    node = _node_of(op)
    g = sg.tensor("g_adjoint", shape=node.shape, dtype=node.dtype)
    moved = range(len(node.inputs)) if OPS[op].moves_adjoint == "all" else OPS[op].moves_adjoint
    for index in moved:
        adjoint = OPS[op].vjp_rule(index)(g, *node.inputs, node)
        used = {id(n) for n in topo_order([adjoint])}
        assert id(node.inputs[index]) not in used and id(node) not in used, (op, index)


def _values(node, rng):
    return [np.array(i.value) if i.op == "constant" else rng.standard_normal(i.shape) for i in node.inputs]


@pytest.mark.parametrize("op", sorted(TRAIT_SPEC["linear"] | TRAIT_SPEC["bilinear"]))
def test_linear_and_bilinear_ops_are_linear_by_their_numpy_definition(op):
    # linear: f(a x + y) = a f(x) + f(y) in all inputs at once; bilinear: in each input alone
    rng = np.random.default_rng(3)
    node, impl = _node_of(op), OPS[op].impl
    x, y = _values(node, rng), _values(node, rng)
    groups = [range(len(x))] if OPS[op].linear else [[k] for k in range(len(x))]
    for moved in groups:
        mixed = [1.5 * x[k] + y[k] if k in moved else x[k] for k in range(len(x))]
        others = [y[k] if k in moved else x[k] for k in range(len(x))]
        expected = 1.5 * impl(*x, **node.attrs) + impl(*others, **node.attrs)
        np.testing.assert_allclose(impl(*mixed, **node.attrs), expected, rtol=1e-12, atol=1e-12)


# modules that ask the op records instead of keeping op-name sets, and the one-op rules they keep:
# (module, op) -> why that rule is about that op alone
_CONVERTED = ["symgrad/autodiff.py", "symgrad/sparsity.py", "symgrad/decompose.py", "symgrad/printing.py"]
_CONVERTED += ["symgrad/passes/simplify.py", "codegen/emit.py", "codegen/schedule.py"]
_CONVERTED += ["symgrad/frontends/sympy_bridge.py"]
_CONVERTED += ["codegen/ir.py", "codegen/branches.py", "codegen/rolling.py", "codegen/tiling.py"]
_CONVERTED += ["codegen/fusion.py", "codegen/numba_backend.py"]
_CONVERTED += ["symgrad/batching.py", "codegen/placement.py"]
_LEAF = "a symbol has a name and a constant a value: reading them is about that leaf"
_ONE_OP_RULES = {
    ("symgrad/autodiff.py", "symbol"): _LEAF,
    ("symgrad/autodiff.py", "constant"): _LEAF,
    ("symgrad/autodiff.py", "where"): "where's branch masks (the NaN-safe where)",
    (
        "symgrad/autodiff.py",
        "matmul",
    ): "matmul's masked-operand rule (_matmul_hits); a whole Jacobian's A @ J",
    (
        "symgrad/autodiff.py",
        "getitem",
    ): "a whole Jacobian (symbolic sizes) takes the slice's key on its leading axes",
    (
        "symgrad/autodiff.py",
        "concatenate",
    ): "a whole Jacobian (symbolic sizes) concatenates its inputs' Jacobians",
    ("symgrad/sparsity.py", "constant"): _LEAF,
    (
        "symgrad/sparsity.py",
        "cast",
    ): "cast is elementwise in shape but no elementwise-table op (a dtype attr)",
    ("symgrad/sparsity.py", "prod_others"): "prod_others' own pattern (slices times slices)",
    ("symgrad/decompose.py", "symbol"): _LEAF,
    (
        "symgrad/decompose.py",
        "cast",
    ): "cast is elementwise in shape but no elementwise-table op (a dtype attr)",
    ("symgrad/decompose.py", "dimsize"): "dimsize reads the row dim by name",
    ("symgrad/decompose.py", "sum"): "the one op that sums rows into a per-block partial",
    ("symgrad/decompose.py", "matmul"): "matmul's row rules (r @ X, X @ w)",
    ("symgrad/decompose.py", "getitem"): "getitem's key decides which rows it keeps",
    ("symgrad/decompose.py", "take0"): "take0 gathers rows by index",
    ("symgrad/decompose.py", "take_last"): "take_last's row rule",
    ("symgrad/decompose.py", "broadcast_to"): "broadcast_to's row rule (rows moved to another axis)",
    ("symgrad/decompose.py", "concatenate"): "concatenate along axis 0",
    ("symgrad/decompose.py", "div"): "division by a parameter term keeps a sum affine",
    ("symgrad/decompose.py", "where"): "a where on a parameter condition keeps a sum affine",
    ("symgrad/printing.py", "symbol"): _LEAF,
    ("symgrad/printing.py", "constant"): _LEAF,
    ("symgrad/printing.py", "pow"): "** is right-associative and printed without spaces",
    ("symgrad/printing.py", "neg"): "the prefix minus",
    ("symgrad/printing.py", "getitem"): "x[key] spelling",
    ("codegen/emit.py", "symbol"): _LEAF,
    ("codegen/emit.py", "where"): "a scalar where's condition is no operand its dtype converts",
    ("codegen/emit.py", "cast"): "cast's scalar spelling is its dtype (an attr, no template)",
    ("codegen/emit.py", "getitem"): "getitem's bounds (the slice's requires attr)",
    ("codegen/ir.py", "symbol"): _LEAF,
    ("codegen/branches.py", "where"): "branch sinking is about where's branches",
    ("codegen/tiling.py", "sum"): "a running sum moves to the last scalar pass of a tile",
    ("codegen/tiling.py", "matmul"): "a dot product's inner loop keeps its pass scalar",
    # loop rolling's per-step reads, constants and stacks (codegen/schedule.py, rolling.py)
    ("codegen/schedule.py", "getitem"): "a scalar getitem of an array rolls as a per-step element read",
    ("codegen/schedule.py", "constant"): "a constant differing per step is read from an array of them",
    (
        "codegen/schedule.py",
        "slice_grad",
    ): "the adjoint of a per-step read xs[t] rolls as a per-step row write",
    ("codegen/rolling.py", "concatenate"): "a stack of per-step scalars is stored into its array",
    ("codegen/rolling.py", "reshape"): "the (1,) reshapes of those scalars are dropped",
    ("codegen/rolling.py", "getitem"): "time_axes: a read of a step's row",
    ("codegen/rolling.py", "slice_grad"): "time_axes: the adjoint writes one step's row",
    ("codegen/rolling.py", "matmul"): "time_axes: a product's outer axes are its operands'",
    ("codegen/rolling.py", "transpose"): "time_axes: a transpose permutes the steps' axis",
    ("codegen/numba_backend.py", "getitem"): "a scalar getitem may be a statement of a rolled loop",
    # the fused loop's own handling of single ops: how it reads through them or accumulates them
    ("codegen/fusion.py", "sum"): "a sum is accumulated by the loop computing its operand",
    ("codegen/fusion.py", "matmul"): "row-wise products (A @ v, A.T @ r) in the loop over A's rows",
    ("codegen/fusion.py", "transpose"): "A.T @ r is spelled with a transpose of A",
    ("codegen/fusion.py", "slice_grad"): "the adjoint of a slice is read through as a window",
    ("codegen/fusion.py", "broadcast_to"): "a broadcast is read through with index arithmetic",
    ("codegen/fusion.py", "reshape"): "an (n, 1) reshape of a loop value is read per row",
    ("codegen/fusion.py", "cast"): "cast is elementwise in shape but no elementwise-table op",
    ("codegen/fusion.py", "where"): "a where's branches own the members only they read",
    ("codegen/fusion.py", "add"): "gradients of slices added up are accumulated in place",
    ("codegen/placement.py", "concatenate"): "the pass writes a concatenate's operands in place",
    ("codegen/placement.py", "reshape"): "an operand reshaped to add or drop unit axes is placed through it",
    ("symgrad/frontends/sympy_bridge.py", "symbol"): _LEAF,
    ("symgrad/frontends/sympy_bridge.py", "constant"): _LEAF,
    ("symgrad/frontends/sympy_bridge.py", "neg"): "SymPy's x + (-1)*y given back as a subtraction",
}
# the simplifier's rewrites are rules of one op each (x * 1, -(-x), log1p(exp(x)), ...)
_ONE_OP_RULES.update(
    {
        ("symgrad/passes/simplify.py", name): "a rewrite rule of this op"
        for name in ["mul", "div", "sub", "add", "neg", "pow", "reshape", "transpose", "broadcast_to", "cast"]
        + ["stop_gradient", "where", "log1p", "exp", "sigmoid", "sum", "constant"]
    }
)
_ONE_OP_SETS = {
    ("symgrad/passes/simplify.py", ("log", "log1p")): "the stable-log rewrites of log and log1p",
    (
        "symgrad/passes/simplify.py",
        ("constant", "stop_gradient"),
    ): "stop_gradient of these is the node itself",
    # loop rolling matches both operand orders of add and mul only: the commutative trait holds
    # more ops (maximum, equal, logic), and widening it would change which statements roll
    ("codegen/schedule.py", ("add", "mul")): "the ops loop rolling matches in either operand order",
    ("codegen/fusion.py", ("sum", "matmul")): "accumulated members stay outside a where's branches",
    ("codegen/emit.py", ("add", "mul")): "a trip-count kernel prints these two operands in text order",
    # rolling.time_axes follows the steps' axis through each structural op by its own rule
    ("codegen/rolling.py", ("getitem", "slice_grad")): "a key's whole axes are the piece's",
    ("codegen/rolling.py", ("where", "cast", "broadcast_to")): "elementwise in their axes, not in the table",
}


def _op_name_uses(path):
    """(sets, compares): literal collections of 2+ op names, and ``<x>.op == "<name>"`` / ``op == ...``."""
    import ast

    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    sets, compares = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Set, ast.Tuple, ast.List)) and len(node.elts) >= 2:
            names = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            if len(names) == len(node.elts) and all(isinstance(n, str) and n in OPS for n in names):
                sets.add(tuple(names))
        elif isinstance(node, ast.Dict) and len(node.keys) >= 2:
            names = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            if len(names) == len(node.keys) and all(isinstance(n, str) and n in OPS for n in names):
                sets.add(tuple(names))
        elif isinstance(node, ast.Compare):
            left = node.left
            if (isinstance(left, ast.Attribute) and left.attr == "op") or (
                isinstance(left, ast.Name) and left.id == "op"
            ):
                for cmp, right in zip(node.ops, node.comparators):
                    if isinstance(cmp, (ast.Eq, ast.NotEq)) and isinstance(right, ast.Constant):
                        if right.value in OPS:
                            compares.add(right.value)
    return sets, compares


ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", _CONVERTED)
def test_converted_passes_keep_no_op_name_sets(path):
    sets, compares = _op_name_uses(path)
    assert {s for s in sets if (path, s) not in _ONE_OP_SETS} == set()
    assert {c for c in compares if (path, c) not in _ONE_OP_RULES} == set()
    # the allow-list holds only rules still in the module
    assert {name for (p, name) in _ONE_OP_RULES if p == path} <= compares
    assert {s for (p, s) in _ONE_OP_SETS if p == path} <= sets


def test_the_op_name_check_sees_a_set_and_a_compare():
    # the AST check itself: it would have flagged the sets the passes kept before
    import ast

    tree = ast.parse('_R = ("sum", "max")\nif node.op == "prod": pass\nif k == "prod": pass\n')
    sets = [n for n in ast.walk(tree) if isinstance(n, ast.Tuple)]
    assert len(sets) == 1
    path = ROOT / "tests" / "symgrad" / "_op_name_probe.py"
    try:
        path.write_text(ast.unparse(tree), encoding="utf-8")
        assert _op_name_uses("tests/symgrad/_op_name_probe.py") == ({("sum", "max")}, {"prod"})
    finally:
        path.unlink()
