"""``save()`` for every op of the registry: each saved module runs in an isolated interpreter.

The ops are built in a few small value-and-grad functions (the gradients bring in the
adjoint ops: slice_grad, scatter_add0, argmax_mask, prod_others, ...); a check walks the
graphs and fails if an op of ``symgrad.ops.registry.OPS`` is in none of them. All saved
modules are imported by ONE subprocess (``python -I``, symgrad and codegen blocked from
importing, only the saved files on its path), called on the inputs, and compared with the
numpy backend's values (an independent lowering), passed in as JSON.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np

import symgrad as sg
from symgrad.graph import topo_order
from symgrad.ops.linalg import share_factor
from symgrad.ops.registry import OPS

DRIVER = textwrap.dedent("""
    import importlib, importlib.abc, json, sys

    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("symgrad", "codegen"):
                raise ImportError(f"a saved module imported {name}")
            return None

    sys.meta_path.insert(0, Blocked())
    sys.path.insert(0, sys.argv[1])
    import numpy as np

    cases = json.load(open(sys.argv[2]))
    failures = []
    for name, case in cases.items():
        try:
            module = importlib.import_module(name)
            args = [np.asarray(a, dtype=d)[()] if np.ndim(a) == 0 else np.asarray(a, dtype=d)
                    for a, d in zip(case["args"], case["dtypes"])]
            out = module.call(*args)
            flat = []
            stack = [out]
            while stack:
                v = stack.pop(0)
                if isinstance(v, tuple):
                    stack[:0] = list(v)
                else:
                    flat.append(v)
            if len(flat) != len(case["expected"]):
                failures.append(f"{name}: {len(flat)} outputs, expected {len(case['expected'])}")
            for k, (got, want) in enumerate(zip(flat, case["expected"])):
                if not np.allclose(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64),
                                   rtol=1e-12, atol=1e-12, equal_nan=True):
                    failures.append(f"{name}: output {k}: {got!r} != {want!r}")
            if case.get("bad_args_for_kernel_checked"):
                # kernel_checked is saved too: the same values, and a size mismatch is a ValueError
                checked = module.kernel_checked(*args)
                if not np.allclose(checked[0], flat[0], rtol=1e-12):
                    failures.append(f"{name}: kernel_checked gave {checked[0]!r}, call() {flat[0]!r}")
                bad = [np.asarray(a, dtype=d) for a, d in zip(case["bad_args_for_kernel_checked"], case["dtypes"])]
                try:
                    module.kernel_checked(*bad)
                    failures.append(f"{name}: kernel_checked took mismatched sizes")
                except ValueError as exc:
                    if "kernel_checked: argument" not in str(exc):
                        failures.append(f"{name}: kernel_checked's message: {exc}")
        except Exception as exc:
            failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:800]}")
    assert "symgrad" not in sys.modules and "codegen" not in sys.modules
    print(json.dumps(failures))
""")


def _cases():
    """name -> (outputs, inputs, wrt or None, args)."""
    rng = np.random.default_rng(5)
    x = sg.tensor("x", ("n",))
    y = sg.tensor("y", ("n",))
    M = sg.tensor("M", ("n", 3))
    idx = sg.tensor("idx", ("k",), dtype="int64")
    lab = sg.tensor("lab", ("n",), dtype="int64")
    xv = rng.uniform(0.2, 0.8, size=5)
    yv = rng.uniform(-0.9, 0.9, size=5)
    Mv = rng.normal(size=(5, 3))
    t = sg.tanh(x)  # in (-1, 1): every unary op's domain
    unary = (
        -x
        + sg.abs(y)
        + sg.sign(y)
        + sg.exp(x)
        + sg.expm1(x)
        + sg.log(x)
        + sg.log1p(x)
        + sg.sqrt(x)
        + sg.square(y)
        + sg.reciprocal(x)
        + sg.sin(y)
        + sg.cos(y)
        + sg.tan(y)
        + sg.arcsin(t)
        + sg.arccos(t)
        + sg.arctan(y)
        + sg.sinh(y)
        + sg.cosh(y)
        + sg.tanh(y)
        + sg.sigmoid(y)
        + sg.relu(y)
        + sg.softplus(y)
        + sg.erf(y)
        + sg.erfinv(y)
        + sg.gammaln(x)
        + sg.digamma(x)
        + sg.polygamma(2, x)
        + sg.ndtr(y)
        + sg.log_ndtr(y)
        + sg.ndtri(0.5 + 0.4 * y)
        + sg.erfcinv(1 + 0.8 * y)
        + sg.logit(0.5 + 0.4 * y)
        + sg.i0e(y)
        + sg.i1e(y)
        + sg.floor(3 * y)
        + sg.ceil(3 * y)
        + sg.round(3 * y)
        + sg.trunc(3 * y)
    )
    binary = (
        x * y
        + x / (y + 2)
        - sg.pow(x, y)
        + sg.maximum(x, y)
        + sg.minimum(x, y)
        + sg.logaddexp(x, -y)
        + sg.arctan2(y, x)
        + sg.mod(x, y + 2)
        + sg.fmod(y, x)
        + sg.floor(y * 3)
        + sg.ceil(y * 3)
        + sg.round(y * 3)
        + sg.trunc(y * 3)
        + sg.xlogy(y, x)
        + sg.xlog1py(y, x)
        + sg.betaln(x, x + 1)
    )
    logic = sg.where(
        sg.logical_or(
            sg.logical_and(sg.less(x, y), sg.less_equal(x, 0.5)),
            sg.logical_not(sg.logical_and(sg.greater(x, y), sg.greater_equal(y, 0.0))),
        ),
        x,
        y,
    ) + sg.where(sg.logical_and(sg.equal(x, x), sg.not_equal(x, y)), 1.0, 0.0) * sg.where(
        sg.isfinite(x), x, 0.0
    )
    reductions = (
        sg.sum(M, axis=0) @ sg.max(M, axis=0)
        + sg.sum(sg.min(M, axis=1))
        + sg.sum(sg.prod(M, axis=1))
        + sg.max(M)
        + sg.min(M)
        + sg.prod(x)
        + sg.mean(x)
    )
    structure = (
        sg.sum(sg.reshape(M, (3, -1)) @ x)
        + sg.sum(sg.transpose(M) @ sg.transpose(sg.broadcast_to(y, (3, y.shape[0]))))
        + sg.sum(M[1:, :2] ** 2)
        + sg.sum(sg.concatenate([x, y * 2]) ** 2)
        + sg.sum(sg.stop_gradient(x) * y)
        + sg.sum(_custom_softplus(x) * y)
        + sg.sum(sg.cast(sg.cast(x, "float32") * 1.5, "float64"))
        + sg.sum(sg.arange(x.shape[0]) * x)
        + sg.sum(sg.cumsum(M, axis=0) * sg.cumprod(M, axis=1) * sg.sort(M, axis=0))
    )
    gathers = sg.sum(x[idx] ** 2) + sg.sum(sg.take_along_axis(M, lab[:, None], axis=1) ** 2)
    carry, stacked = sg.scan(lambda c, row: (sg.tanh(c * y[0] + row), sg.sum(c * row)), x[:3], M)
    loop = sg.sum(carry) + sg.sum(stacked**2)
    A = sg.tensor("A", ("n", "n"))
    Av = rng.normal(size=(5, 5)) + 5 * np.eye(5)
    spd = A @ A.T + 3 * sg.linalg.eye(A.shape[0])
    sign, logabs = sg.linalg.slogdet(A)
    u, s, vt = sg.linalg.svd(A, full_matrices=False)
    q, r = sg.linalg.qr(A)
    # sign-free functions of eigen- and singular vectors (numba's LAPACK and numpy's may pick
    # different signs)
    linalg = (
        sg.sum(sg.linalg.solve(A, y) ** 2)
        + sg.sum(sg.linalg.inv(A))
        + sg.linalg.det(A) * 1e-3
        + sign * logabs
        + sg.sum(sg.linalg.cholesky(spd) ** 2 * x)
        + sg.sum(sg.linalg.cho_solve((sg.linalg.cholesky(spd), True), y) * y)  # through the factor:
        + sg.linalg.slogdet(spd)[1]  # cho_solve, cho_logdet
        + sg.sum(sg.linalg.inv(spd)) * 1e-2  # and cho_inverse
        + sg.sum(sg.linalg.pinv(A) * 1e-2)
        + sg.sum(sg.linalg.solve_triangular(A, y, lower=True) ** 2)
        + sg.sum(sg.linalg.eigh(spd)[0] * x)
        + sg.sum(sg.linalg.eigh(spd)[1] ** 2 * y)
        + sg.sum(s * x)
        + sg.sum(u**2 @ y)
        + sg.sum(vt**2 @ y)
        + sg.sum(q**3)
        + sg.sum(r**2)
    )
    labv = np.array([0, 2, 1, 1, 0])
    idxv = np.array([0, 4, -1, 2])
    float_args = [xv, yv]
    return {
        "op_unary": ([sg.sum(unary)], [x, y], [x, y], float_args),
        "op_binary": ([sg.sum(binary)], [x, y], [x, y], float_args),
        "op_logic": ([sg.sum(logic)], [x, y], [x, y], float_args),
        "op_reductions": ([reductions], [M, x], [M, x], [Mv, xv]),
        "op_structure": ([structure], [M, x, y], [M, x, y], [Mv, xv, yv]),
        "op_gathers": ([gathers], [x, M, idx, lab], [x, M], [xv, Mv, idxv, labv]),
        "op_linalg": ([linalg], [A, x, y], [A, x, y], [Av, xv, yv]),
        # a loop (sg.scan) over the rows of M, carrying a vector and stacking a scalar per step
        "op_loop": ([loop], [M, x, y], [M, x], [Mv, xv, yv]),
        "op_logaddexp_loss": (None, None, None, None),  # the README's Dask loss, added below
    }


@sg.custom_jvp
def _custom_softplus(x):
    return sg.softplus(x)


_custom_softplus.defjvp(
    lambda primals, tangents: (sg.softplus(primals[0]), tangents[0] * sg.sigmoid(primals[0]))
)


# ops whose modules save() refuses, and why (tests/symgrad/test_implicit.py checks the refusal)
CANNOT_SAVE = {"host_call": "the kernel calls a Python callable back (sg.root's solver) while it runs"}


def test_every_op_of_the_registry_saves_a_module_that_runs_without_symgrad(tmp_path):
    cases = _cases()
    rng = np.random.default_rng(6)
    Xs, ys, w = sg.tensor("X", ("n", "d")), sg.tensor("y", ("n",)), sg.tensor("w", ("d",))
    loss = sg.mean(sg.logaddexp(0, -ys * (Xs @ w))) + 1e-3 * sg.sum(w * w)
    cases["op_logaddexp_loss"] = (
        [loss],
        [w, Xs, ys],
        [w],
        [rng.normal(size=4), rng.normal(size=(30, 4)), np.sign(rng.normal(size=30))],
    )
    seen, payload = set(), {}
    for name, (outputs, inputs, wrt, args) in cases.items():
        grads = sg.grad(outputs[0], wrt)
        # the ops compiled: after the compiler takes solves and determinants from a Cholesky factor
        seen |= {n.op for n in topo_order(share_factor(list(outputs) + list(grads)))}
        saved = sg.compile(list(outputs) + list(grads), inputs=inputs, backend="numba")
        saved.save(tmp_path / f"{name}.py")
        expected = sg.compile(list(outputs) + list(grads), inputs=inputs, backend="numpy")(*args)
        payload[name] = {
            "args": [np.asarray(a).tolist() for a in args],
            "dtypes": [str(np.asarray(a).dtype) for a in args],
            "expected": [np.asarray(v, dtype=np.float64).tolist() for v in expected],
        }
    w0, X0, y0 = payload["op_logaddexp_loss"]["args"]
    payload["op_logaddexp_loss"]["bad_args_for_kernel_checked"] = [w0, X0, y0[:-1]]  # one label short
    assert set(OPS) - seen == set(CANNOT_SAVE), f"ops no case builds: {sorted(set(OPS) - seen)}"
    (tmp_path / "cases.json").write_text(json.dumps(payload))
    (tmp_path / "driver_main.py").write_text(DRIVER)
    run = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "driver_main.py"), str(tmp_path), str(tmp_path / "cases.json")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    failures = json.loads(run.stdout.strip().splitlines()[-1])
    assert failures == [], "\n".join(failures)
