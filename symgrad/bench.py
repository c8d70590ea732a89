"""``symgrad bench``: build time, forward and value-and-grad time, next to references and peers.

Every workload has a hand-written numpy forward+backward as the reference (every
system must match it to 1e-6 relative) and, for rosen and ew, a hand-fused numba
loop: the limit a perfect code generator could reach. Each case runs in its own
subprocess with a timeout; inside it, every system is timed side by side (medians
of repeated runs), so the ratios mean something on a shared, noisy machine even
when the absolute times do not.

Peers (JAX, PyTorch, autograd, SymPy lambdify, SymEngine's LLVM Lambdify, PyTensor,
CasADi SX) are used when importable and shown as absent otherwise; none is a dependency
(``pip install symgrad[bench]`` installs them). A peer that cannot express a workload
shows n/a: SymPy takes small scalar graphs only; SymEngine and CasADi take workloads of at
most SCALARIZE_LIMIT input elements, written element by element (scalar symbols in numpy
object arrays); PyTensor runs every workload, compiled with its C backend (mode "CVM",
not PyTensor 3's default Numba). A peer's build time includes its differentiation and
compilation (and the first call). symgrad's ``startup`` column is its once-per-process cost,
timed apart as the peers' imports are: importing numba and its first function (a one-line
graph), which loads numba's registries and SciPy's BLAS; ``build`` is per function after that.

    symgrad bench                         # every workload
    symgrad bench rosen/1e6 seed_scalar   # a subset ("rosen" selects every size)
    symgrad bench --json out.json         # also write the raw numbers
    symgrad bench --suite build [programs] # build latency, cold and warm, beside JAX (bench_build.py)
    symgrad bench --suite args             # each argument kind's call against the fastest (bench_args.py)
    symgrad bench --suite threads          # long loops on 1 thread against all, bits compared (bench_threads.py)
    python -m symgrad.bench ...           # the same
"""

import argparse
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import symgrad as sg
from symgrad.graph import topo_order

from . import bench_args, bench_build, bench_dask, bench_threads


NAMES = [
    "seed_scalar",
    "rosen/10",
    "rosen/1000",
    "rosen/1e6",
    "mlp/64",
    "mlp/1024",
    "logreg/1e6",
    "recur/10",
    "recur/100",
    "recur/1000",
    "ew/1e7",
    "xor",
    "bilinear/4096",
    "attention/256",
    "gp/500",
    "pe_logreg/1e4",
    "pe_mlp/64",
    "rdjac/1e4",
]
PEERS = ["jax", "torch", "autograd", "sympy", "symengine", "pytensor", "casadi"]
SCALARIZE_LIMIT = 1000  # SymEngine, CasADi: at most this many input elements, scalarized
PYTENSOR_MODE = "CVM"  # PyTensor's C backend


def median_call_seconds(fn, *args, repeat=7, min_time=0.05):
    """Median over ``repeat`` runs of the per-call time of fn(*args), each run looping >= min_time."""
    fn(*args)
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            fn(*args)
        if time.perf_counter() - start >= min_time / 5 or loops >= 1 << 20:
            break
        loops *= 4
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(loops):
            fn(*args)
        runs.append((time.perf_counter() - start) / loops)
    return statistics.median(runs)


def format_seconds(seconds):
    if seconds is None:
        return "-"
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _size(text):
    return int(float(text))


# ---------------------------------------------------------------- workloads
# Each returns a Workload: the symgrad expression, wrt and inputs; the arguments; the
# numpy reference (value, grads) and forward; the loss written once over an array module
# (``xp``) for the peers; optionally a hand-fused numba kernel.


class Workload:
    def __init__(
        self,
        expr,
        wrt,
        inputs,
        args,
        by_hand,
        forward_by_hand,
        loss=None,
        fused=None,
        loop=None,
        twin=None,
        sparse_jacobian=False,
    ):
        self.expr, self.wrt, self.inputs, self.args = expr, list(wrt), list(inputs), tuple(args)
        # the vector expr's Jacobian as CSR (sg.sparse_jacobian's value_and_jacobian) instead of a
        # gradient: by_hand returns (value, (csr,)); no peer runs it
        self.sparse_jacobian = sparse_jacobian
        self.by_hand, self.forward_by_hand = by_hand, forward_by_hand
        self.loss = loss  # loss(xp, *args) for the peers; grads w.r.t. the first len(wrt) args
        self.fused = fused  # numba kernel: same (value, grads) contract as by_hand
        self.loop = loop  # (steps, rate): gradient descent through vg in a Python loop
        self.twin = twin  # the same loss written another way in symgrad (einsum's: with matmul)
        self.per_example = None  # PerExample: the workload is per-example gradients (sg.vmap)


class PerExample:
    """A per-example-gradient workload: ``loss(xp, *args)`` of one example, differentiated in
    ``argnums`` and mapped over ``in_axes``; symgrad runs ``sg.vmap(sg.grad(...))``, JAX
    ``jit(vmap(grad(...)))``, the reference is numpy by hand. ``by_hand``/``forward_by_hand``
    of the Workload give (per-example losses, per-example gradients) and the losses."""

    def __init__(self, loss, argnums, in_axes):
        self.loss, self.argnums, self.in_axes = loss, tuple(argnums), tuple(in_axes)


def seed_by_hand(x, y):
    """x*y + sin(x) and its gradient, written out in numpy."""
    return x * y + np.sin(x), (y + np.cos(x), x)


def mlp_by_hand(W1, b1, W2, b2, X, T):
    """A tanh MLP's softmax cross-entropy (mean over the batch) and its backward pass, in numpy."""
    n = X.shape[0]
    hid = np.tanh(X @ W1 + b1)
    s = hid @ W2 + b2
    m = s.max(axis=1, keepdims=True)
    e = np.exp(s - m)
    z = e.sum(axis=1, keepdims=True)
    value = -np.sum(T * (s - m - np.log(z))) / n
    ds = (e / z * T.sum(axis=1, keepdims=True) - T) / n
    dh = ds @ W2.T * (1 - hid * hid)
    return value, (X.T @ dh, dh.sum(axis=0), hid.T @ ds, ds.sum(axis=0))


def _seed(sg, _):
    x, y = sg.scalars("x y")
    return Workload(
        x * y + sg.sin(x),
        [x, y],
        [x, y],
        (0.7, -1.3),
        seed_by_hand,
        lambda x, y: x * y + np.sin(x),
        loss=lambda xp, x, y: x * y + xp.sin(x),
    )


_FUSED = {}


def _fused(name):
    if name not in _FUSED:
        import numba

        @numba.njit(cache=True, nogil=True)
        def rosen_fused(x):
            n = x.shape[0]
            g = np.zeros(n)
            f = 0.0
            for i in range(n - 1):
                a = x[i + 1] - x[i] * x[i]
                b = 1.0 - x[i]
                f += 100.0 * a * a + b * b
                g[i + 1] += 200.0 * a
                g[i] += -400.0 * a * x[i] - 2.0 * b
            return f, (g,)

        @numba.njit(cache=True, nogil=True)
        def ew_fused(x):
            g = np.empty_like(x)
            f = 0.0
            for i in range(x.shape[0]):
                v = x[i]
                e = math.exp(math.sin(v))
                t = math.tanh(v)
                q = 1.0 / (1.0 + v * v)
                f += e * t * t * q
                g[i] = e * q * (math.cos(v) * t * t + 2.0 * t * (1.0 - t * t) - t * t * 2.0 * v * q)
            return f, (g,)

        _FUSED.update(rosen=rosen_fused, ew=ew_fused)
    return _FUSED[name]


def _rosen(sg, n):
    x = sg.tensor("x", ("n",))
    expr = sg.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    def by_hand(x):
        a = x[1:] - x[:-1] ** 2
        b = 1 - x[:-1]
        g = np.zeros_like(x)
        g[1:] += 200 * a
        g[:-1] += -400 * a * x[:-1] - 2 * b
        return np.sum(100 * a * a + b * b), (g,)

    def loss(xp, x):
        return xp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    arg = np.random.default_rng(0).uniform(-1, 1, _size(n))
    return Workload(expr, [x], [x], (arg,), by_hand, lambda x: loss(np, x), loss, _fused("rosen"))


def _ew(sg, n):
    x = sg.tensor("x", ("n",))
    expr = sg.sum(sg.exp(sg.sin(x)) * sg.tanh(x) ** 2 / (1 + x**2))

    def by_hand(x):
        e = np.exp(np.sin(x))
        t = np.tanh(x)
        q = 1 / (1 + x * x)
        return np.sum(e * t * t * q), (e * q * (np.cos(x) * t * t + 2 * t * (1 - t * t) - t * t * 2 * x * q),)

    def loss(xp, x):
        return xp.sum(xp.exp(xp.sin(x)) * xp.tanh(x) ** 2 / (1 + x**2))

    arg = np.random.default_rng(0).normal(size=_size(n))
    return Workload(expr, [x], [x], (arg,), by_hand, lambda x: loss(np, x), loss, _fused("ew"))


def _mlp(sg, batch):
    d, h, k, n = 784, 128, 10, _size(batch)
    W1, b1 = sg.tensor("W1", ("d", "h")), sg.tensor("b1", ("h",))
    W2, b2 = sg.tensor("W2", ("h", "k")), sg.tensor("b2", ("k",))
    X, T = sg.tensor("X", ("n", "d")), sg.tensor("T", ("n", "k"))
    scores = sg.tanh(X @ W1 + b1) @ W2 + b2
    expr = -sg.mean(sg.sum(T * sg.log_softmax(scores, axis=1), axis=1))

    def loss(xp, W1, b1, W2, b2, X, T):
        s = xp.tanh(X @ W1 + b1) @ W2 + b2
        m = s.max(axis=1, keepdims=True) if xp is not _torch() else s.max(dim=1, keepdim=True)[0]
        lse = m + xp.log(xp.exp(s - m).sum(**{"dim" if xp is _torch() else "axis": 1}).reshape((-1, 1)))
        return -xp.sum(T * (s - lse)) / X.shape[0]

    rng = np.random.default_rng(0)
    args = (
        rng.normal(size=(d, h)) * 0.05,
        np.zeros(h),
        rng.normal(size=(h, k)) * 0.1,
        np.zeros(k),
        rng.normal(size=(n, d)),
        np.eye(k)[rng.integers(0, k, n)],
    )
    return Workload(
        expr, [W1, b1, W2, b2], [W1, b1, W2, b2, X, T], args, mlp_by_hand, lambda *a: mlp_by_hand(*a)[0], loss
    )


def _logreg(sg, n):
    d = 16
    w, X, y = sg.tensor("w", ("d",)), sg.tensor("X", ("n", "d")), sg.tensor("y", ("n",))
    expr = sg.mean(sg.logaddexp(0.0, -y * (X @ w))) + 1e-3 * sg.dot(w, w)

    def by_hand(w, X, y):
        m = -y * (X @ w)
        value = np.mean(np.logaddexp(0.0, m)) + 1e-3 * (w @ w)
        dm = 0.5 * (1 + np.tanh(0.5 * m)) / m.shape[0]  # sigmoid(m) / N
        return value, (X.T @ (-y * dm) + 2e-3 * w,)

    def loss(xp, w, X, y):
        return xp.mean(xp.logaddexp(0.0 * y, -y * (X @ w))) + 1e-3 * xp.sum(w * w)

    rng = np.random.default_rng(0)
    args = (rng.normal(size=d) * 0.1, rng.normal(size=(_size(n), d)), rng.choice([-1.0, 1.0], _size(n)))
    return Workload(expr, [w], [w, X, y], args, by_hand, lambda *a: by_hand(*a)[0], loss)


def _recur(sg, depth):
    depth = _size(depth)
    x0, c = sg.scalars("x0 c")
    x = x0
    for _ in range(depth):
        x = sg.sin(x) * x + c
    expr = x

    def by_hand(x0, c):
        xs = [x0]
        for _ in range(depth):
            xs.append(np.sin(xs[-1]) * xs[-1] + c)
        dx, dc = 1.0, 0.0
        for xk in reversed(xs[:-1]):
            dc += dx
            dx *= np.cos(xk) * xk + np.sin(xk)
        return xs[-1], (dx, dc)

    def loss(xp, x0, c):
        x = x0
        for _ in range(depth):
            x = xp.sin(x) * x + c
        return x

    return Workload(expr, [x0, c], [x0, c], (0.3, 0.1), by_hand, lambda *a: by_hand(*a)[0], loss)


def _xor(sg, _):
    W1, b1 = sg.tensor("W1", (2, 2)), sg.tensor("b1", (2,))
    W2, b2 = sg.tensor("W2", (2, 1)), sg.tensor("b2", (1,))
    X, T = sg.tensor("X", (4, 2)), sg.tensor("T", (4, 1))
    out = sg.sigmoid(sg.sigmoid(X @ W1 + b1) @ W2 + b2)
    expr = 0.5 * sg.sum((out - T) ** 2)

    def sig(z):
        return 1 / (1 + np.exp(-z))

    def by_hand(W1, b1, W2, b2, X, T):
        h = sig(X @ W1 + b1)
        o = sig(h @ W2 + b2)
        do = (o - T) * o * (1 - o)
        dh = do @ W2.T * h * (1 - h)
        return 0.5 * np.sum((o - T) ** 2), (X.T @ dh, dh.sum(axis=0), h.T @ do, do.sum(axis=0))

    def loss(xp, W1, b1, W2, b2, X, T):
        def s(z):
            return 1 / (1 + xp.exp(-z))

        return 0.5 * xp.sum((s(s(X @ W1 + b1) @ W2 + b2) - T) ** 2)

    rng = np.random.default_rng(1)
    args = (
        rng.normal(size=(2, 2)),
        np.zeros(2),
        rng.normal(size=(2, 1)),
        np.zeros(1),
        np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]),
        np.array([[0.0], [1.0], [1.0], [0.0]]),
    )
    return Workload(
        expr,
        [W1, b1, W2, b2],
        [W1, b1, W2, b2, X, T],
        args,
        by_hand,
        lambda *a: by_hand(*a)[0],
        loss,
        loop=(10_000, 0.5),
    )


def _bilinear(sg, n):
    """A bilinear regression, s_i = x_i^T W y_i, written with einsum; its twin with matmul."""
    n, d = _size(n), 64
    W, X = sg.tensor("W", ("d", "d")), sg.tensor("X", ("n", "d"))
    Y, t = sg.tensor("Y", ("n", "d")), sg.tensor("t", ("n",))
    expr = 0.5 * sg.mean((sg.einsum("nd,de,ne->n", X, W, Y) - t) ** 2)
    twin = 0.5 * sg.mean((sg.sum((X @ W) * Y, axis=1) - t) ** 2)

    def by_hand(W, X, Y, t):
        r = np.sum((X @ W) * Y, axis=1) - t
        g = (r / r.shape[0])[:, None] * Y
        return 0.5 * np.mean(r * r), (X.T @ g, g @ W.T)

    def loss(xp, W, X, Y, t):
        return 0.5 * xp.mean((xp.einsum("nd,de,ne->n", X, W, Y) - t) ** 2)

    rng = np.random.default_rng(0)
    args = (rng.normal(size=(d, d)) / 8, rng.normal(size=(n, d)), rng.normal(size=(n, d)), rng.normal(size=n))
    return Workload(expr, [W, X], [W, X, Y, t], args, by_hand, lambda *a: by_hand(*a)[0], loss, twin=twin)


def _attention(sg, n):
    """Multi-head softmax attention (8 heads of width 64 over n positions), written with einsum;
    its twin with matmul."""
    h, n, d = 8, _size(n), 64
    Q, K, V = (sg.tensor(name, ("h", "n", "d")) for name in "QKV")
    scale = 1 / np.sqrt(d)

    def attend(scores, mix):
        p = sg.softmax(scores(Q, K) * scale, axis=-1)
        return 0.5 * sg.sum(mix(p, V) ** 2)

    expr = attend(lambda q, k: sg.einsum("hqd,hkd->hqk", q, k), lambda p, v: sg.einsum("hqk,hkd->hqd", p, v))
    twin = attend(lambda q, k: q @ sg.transpose(k, (0, 2, 1)), lambda p, v: p @ v)

    def forward(Q, K, V):
        S = Q @ K.transpose(0, 2, 1) * scale
        E = np.exp(S - S.max(axis=-1, keepdims=True))
        P = E / E.sum(axis=-1, keepdims=True)
        return P, P @ V

    def by_hand(Q, K, V):
        P, O = forward(Q, K, V)
        dP = O @ V.transpose(0, 2, 1)
        dS = P * (dP - np.sum(dP * P, axis=-1, keepdims=True)) * scale
        return 0.5 * np.sum(O * O), (dS @ K, dS.transpose(0, 2, 1) @ Q, P.transpose(0, 2, 1) @ O)

    def loss(xp, Q, K, V):
        s = xp.einsum("hqd,hkd->hqk", Q, K) * scale
        if xp is _torch():
            e = xp.exp(s - s.max(dim=-1, keepdim=True)[0])
            p = e / e.sum(dim=-1, keepdim=True)
        else:
            e = xp.exp(s - xp.max(s, axis=-1, keepdims=True))
            p = e / xp.sum(e, axis=-1, keepdims=True)
        return 0.5 * xp.sum(xp.einsum("hqk,hkd->hqd", p, V) ** 2)

    rng = np.random.default_rng(0)
    args = tuple(rng.normal(size=(h, n, d)) for _ in range(3))
    return Workload(expr, [Q, K, V], [Q, K, V], args, by_hand, lambda *a: forward(*a)[1], loss, twin=twin)


def _gp(sg, n):
    """A Gaussian process's negative log marginal likelihood (RBF kernel, noise) in its three log
    parameters: cholesky, cho_solve and slogdet of the n x n kernel matrix."""
    n = _size(n or 500)
    logp, x, y = sg.tensor("log_params", (3,)), sg.tensor("x", ("n",)), sg.tensor("y", ("n",))

    def loss(xp, log_params, x, y):
        p = xp.exp(log_params)
        d2 = (x[:, None] - x[None, :]) ** 2
        k = p[0] * xp.exp(-0.5 * d2 / p[1] ** 2) + (p[2] + 1e-6) * _eye(xp, x.shape[0])
        low = xp.linalg.cholesky(k)
        alpha = _cho_solve(xp, low, y)
        return 0.5 * xp.sum(y * alpha) + 0.5 * xp.linalg.slogdet(k)[1]  # + n log(2 pi) / 2

    def by_hand(log_params, x, y):
        import scipy.linalg

        amp, ell, noise = np.exp(log_params)
        d2 = (x[:, None] - x[None, :]) ** 2
        e = np.exp(-0.5 * d2 / ell**2)
        k = amp * e + (noise + 1e-6) * np.eye(x.shape[0])
        low = scipy.linalg.cholesky(k, lower=True)
        alpha = scipy.linalg.cho_solve((low, True), y)
        value = 0.5 * y @ alpha + np.sum(np.log(np.diag(low)))
        dk = 0.5 * (scipy.linalg.cho_solve((low, True), np.eye(x.shape[0])) - np.outer(alpha, alpha))
        grad = np.array([np.sum(dk * e) * amp, np.sum(dk * e * d2) * amp / ell**2, np.trace(dk) * noise])
        return value, (grad,)

    expr = loss(sg, logp, x, y)
    rng = np.random.default_rng(0)
    xs = np.sort(rng.uniform(0, 10, n))
    args = (np.array([0.0, 0.0, -2.0]), xs, np.sin(xs) + 0.1 * rng.normal(size=n))
    return Workload(expr, [logp], [logp, x, y], args, by_hand, lambda *a: by_hand(*a)[0], loss)


def _sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))


def _per_example(loss, argnums, in_axes, args, by_hand):
    w = Workload(None, [], [], args, by_hand, lambda *a: by_hand(*a)[0], loss)
    w.per_example = PerExample(loss, argnums, in_axes)
    return w


def _pe_logreg(sg, n):
    """Per-example gradients of the logistic loss log(1 + exp(-y x.w)), N x 16."""
    d = 16

    def loss(xp, w, x, y):
        return xp.logaddexp(0.0, -y * (x @ w))

    def by_hand(w, X, y):
        m = -y * (X @ w)
        return np.logaddexp(0.0, m), (-(y * _sigmoid(m))[:, None] * X,)

    rng = np.random.default_rng(0)
    args = (rng.normal(size=d) * 0.1, rng.normal(size=(_size(n), d)), rng.choice([-1.0, 1.0], _size(n)))
    return _per_example(loss, (0,), (None, 0, 0), args, by_hand)


def _pe_mlp(sg, batch):
    """Per-example gradients of the 784-128-10 tanh MLP's softmax cross-entropy."""
    d, h, k, n = 784, 128, 10, _size(batch)

    def loss(xp, W1, b1, W2, b2, x, t):
        hid = xp.tanh(x @ W1 + b1)
        s = hid @ W2 + b2
        m = xp.max(s)
        return -xp.sum(t * (s - m - xp.log(xp.sum(xp.exp(s - m)))))

    def by_hand(W1, b1, W2, b2, X, T):
        hid = np.tanh(X @ W1 + b1)
        s = hid @ W2 + b2
        m = s.max(axis=1, keepdims=True)
        e = np.exp(s - m)
        z = e.sum(axis=1, keepdims=True)
        values = -np.sum(T * (s - m - np.log(z)), axis=1)
        ds = e / z * T.sum(axis=1, keepdims=True) - T
        dh = ds @ W2.T * (1 - hid * hid)
        return values, (X[:, :, None] * dh[:, None, :], dh, hid[:, :, None] * ds[:, None, :], ds)

    rng = np.random.default_rng(0)
    args = (
        rng.normal(size=(d, h)) * 0.05,
        np.zeros(h),
        rng.normal(size=(h, k)) * 0.1,
        np.zeros(k),
        rng.normal(size=(n, d)),
        np.eye(k)[rng.integers(0, k, n)],
    )
    return _per_example(loss, (0, 1, 2, 3), (None, None, None, None, 0, 0), args, by_hand)


def _rdjac(sg, n):
    """The Jacobian of a discretised 1-D reaction-diffusion residual, D u'' + r u (1 - u) with
    u(0) = 1, u(1) = 0 (tridiagonal), as CSR; the reference fills the CSR data by hand in numpy
    from index arrays made once, as a careful user would."""
    import scipy.sparse

    n = _size(n or 1e4)
    u = sg.tensor("u", (n,))
    h = 1.0 / (n - 1)
    c, rate = 0.01 / h**2, 5.0

    def residual(xp, u):
        inner = c * (u[:-2] - 2 * u[1:-1] + u[2:]) + rate * u[1:-1] * (1 - u[1:-1])
        return xp.concatenate([u[:1] - 1.0, inner, u[-1:]])

    # CSR of the tridiagonal pattern: row 0 and n-1 hold their diagonal, row i (1..n-2) i-1, i, i+1
    counts = np.full(n, 3)
    counts[[0, -1]] = 1
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    rows = np.repeat(np.arange(n), counts)
    offsets = np.concatenate([[0], np.tile([-1, 0, 1], n - 2), [0]])
    indices = (rows + offsets).astype(np.int32)

    def by_hand(u):
        value = residual(np, u)
        data = np.empty(3 * n - 4)
        data[0] = data[-1] = 1.0
        band = data[1:-1].reshape(n - 2, 3)
        band[:, 0] = band[:, 2] = c
        band[:, 1] = -2 * c + rate * (1 - 2 * u[1:-1])
        return value, (scipy.sparse.csr_matrix((data, indices, indptr), shape=(n, n)),)

    arg = np.linspace(1.0, 0.0, n) + 0.1 * np.sin(np.linspace(0.0, 30.0, n))
    return Workload(
        residual(sg, u), [u], [u], (arg,), by_hand, lambda u: residual(np, u), sparse_jacobian=True
    )


def _eye(xp, n):
    """The identity in the array module ``xp`` (symgrad's builder: sg.linalg.eye)."""
    return sg.linalg.eye(n) if xp is sg else xp.eye(n)


class PeerLacks(Exception):
    """A peer has no spelling of what a workload's loss needs: its cell is n/a, not an error."""


def _cho_solve(xp, low, b):
    """scipy.linalg.cho_solve((low, True), b) in the array module ``xp`` (or its SciPy)."""
    if xp is sg:
        return sg.linalg.cho_solve((low, True), b)
    module = getattr(xp, "__name__", "")
    if module.startswith("jax"):
        return importlib.import_module("jax.scipy.linalg").cho_solve((low, True), b)
    if module == "torch":
        return xp.cholesky_solve(b[:, None], low)[:, 0]
    if module.startswith("autograd"):
        solve_triangular = importlib.import_module("autograd.scipy.linalg").solve_triangular
        return solve_triangular(low, solve_triangular(low, b, lower=True), lower=True, trans=1)
    raise PeerLacks(f"no cho_solve in {module or xp!r}")


MAKERS = {
    "seed_scalar": _seed,
    "rosen": _rosen,
    "ew": _ew,
    "mlp": _mlp,
    "logreg": _logreg,
    "recur": _recur,
    "xor": _xor,
    "bilinear": _bilinear,
    "attention": _attention,
    "gp": _gp,
    "pe_logreg": _pe_logreg,
    "pe_mlp": _pe_mlp,
    "rdjac": _rdjac,
}


def make_workload(sg, name):
    family, _, param = name.partition("/")
    if family not in MAKERS:
        raise SystemExit(f"unknown workload {name!r}; choose from {', '.join(NAMES)}")
    return MAKERS[family](sg, param or None)


# ---------------------------------------------------------------- peers


def _torch():
    return sys.modules.get("torch")


def _peer(name, w):
    """(build, call) for a peer on workload ``w``: call(*args) -> (value, grads as numpy); None if
    the peer cannot express the workload; raises ImportError if the peer is not installed."""
    nw = len(w.wrt)
    if w.per_example is not None and name != "jax":
        return None  # per-example gradients: JAX's vmap is the peer
    if name == "sympy":
        import sympy

        # scalar graphs only, and small ones: SymPy's trees double with every reuse of a node
        if any(np.ndim(a) for a in w.args) or len(topo_order([w.expr])) > 100:
            return None
        e = sg.to_sympy(w.expr)
        by_name = {str(s): s for s in e.free_symbols}
        syms = [by_name.get(s.name, sympy.Symbol(s.name)) for s in w.inputs]

        def build():
            grads = [sympy.diff(e, s) for s in syms[:nw]]
            # one flat list: lambdify's cse does not look inside nested lists
            return sympy.lambdify(syms, [e] + grads, modules="math", cse=True)

        return build, lambda f: lambda *a: _pair(f(*a))
    if name == "jax":
        jax = importlib.import_module("jax")
        jax.config.update("jax_enable_x64", True)
        jnp = importlib.import_module("jax.numpy")
        if w.loss is None:
            return None
        pe = w.per_example
        if pe is not None:  # jit(vmap(grad)): the per-example gradients

            def build():
                grad = jax.grad(lambda *a: w.loss(jnp, *a), argnums=pe.argnums)
                return jax.jit(jax.vmap(grad, in_axes=pe.in_axes))

            def call(f):
                def run(*a):
                    g = f(*a)
                    g[0].block_until_ready()
                    return None, g

                return run

            return build, call

        def build():
            return jax.jit(jax.value_and_grad(lambda *a: w.loss(jnp, *a), argnums=tuple(range(nw))))

        def call(f):
            def run(*a):
                v, g = f(*a)
                v.block_until_ready()
                return v, g

            return run

        return build, call
    if name == "torch":
        torch = importlib.import_module("torch")
        if w.loss is None:
            return None

        def build():
            def run(*a):
                ts = [torch.tensor(np.asarray(x), requires_grad=k < nw) for k, x in enumerate(a)]
                v = w.loss(torch, *ts)
                grads = torch.autograd.grad(v, ts[:nw])
                return float(v), tuple(g.numpy() for g in grads)

            return run

        return build, lambda f: f
    if name == "autograd":
        ag = importlib.import_module("autograd")
        anp = importlib.import_module("autograd.numpy")
        if w.loss is None:
            return None

        def build():
            return ag.value_and_grad(lambda *a: w.loss(anp, *a), argnum=list(range(nw)))

        return build, lambda f: f
    if name == "symengine":
        se = importlib.import_module("symengine")
        if not _scalarizable(w):
            return None

        def build():
            ins, flat = _scalar_symbols(w, lambda k, i: se.Symbol(f"a{k}_{i}" if i is not None else f"a{k}"))
            value = w.loss(_ElementwiseModule(se), *ins)
            wrt = [s for f in flat[:nw] for s in f]
            f = se.Lambdify(
                [s for f in flat for s in f], [value] + [value.diff(s) for s in wrt], backend="llvm", cse=True
            )
            # unsafe_real: the call without the argument checks, into buffers we keep
            return _flat_call(w, lambda inp, out: lambda: f.unsafe_real(inp, out))

        return build, lambda f: f
    if name == "pytensor":
        pytensor = importlib.import_module("pytensor")
        pt = importlib.import_module("pytensor.tensor")
        if w.loss is None:
            return None

        def build():
            ins = [
                pt.tensor(f"a{k}", dtype="float64", shape=(None,) * np.ndim(a)) for k, a in enumerate(w.args)
            ]
            limit = sys.getrecursionlimit()
            sys.setrecursionlimit(
                max(limit, 100_000)
            )  # pytensor.grad and its rewrites recurse per node (recur/1000)
            try:
                value = w.loss(pt, *ins)
                return pytensor.function(ins, [value] + pytensor.grad(value, ins[:nw]), mode=PYTENSOR_MODE)
            finally:
                sys.setrecursionlimit(limit)

        return build, lambda f: lambda *a: _pair(f(*a))
    if name == "casadi":
        ca = importlib.import_module("casadi")
        if not _scalarizable(w):
            return None

        def build():
            ins, flat = _scalar_symbols(w, lambda k, i: ca.SX.sym(f"a{k}_{i}" if i is not None else f"a{k}"))
            value = w.loss(_ElementwiseModule(ca), *ins)
            wrt = ca.vertcat(*[s for f in flat[:nw] for s in f])
            f = ca.Function(
                "vg",
                [ca.vertcat(*[s for f in flat for s in f])],
                [ca.vertcat(value, ca.gradient(value, wrt))],
            )

            def bind(inp, out):
                # Function.buffer: CasADi's low-overhead call (f(numpy) converts through DM: ~60 us)
                buf, evaluate = f.buffer()
                buf.set_arg(0, memoryview(inp))
                buf.set_res(0, memoryview(out))
                return lambda buf=buf: evaluate()  # buf must outlive the calls

            return _flat_call(w, bind)

        return build, lambda f: f
    raise ValueError(name)


def _scalarizable(w):
    return w.loss is not None and sum(np.size(a) for a in w.args) <= SCALARIZE_LIMIT


def _scalar_symbols(w, symbol):
    """One scalar symbol per input element: ``symbol(k, i)`` for element i (C order) of
    argument k (i None for a scalar argument). Returns the arguments to pass to ``w.loss``
    (symbols, numpy object arrays of symbols) and, per argument, its symbols in a flat list."""
    ins, flat = [], []
    for k, a in enumerate(w.args):
        if np.ndim(a) == 0:
            ins.append(symbol(k, None))
            flat.append([ins[-1]])
            continue
        arr = np.empty(np.shape(a), dtype=object)
        for i, idx in enumerate(np.ndindex(arr.shape)):
            arr[idx] = symbol(k, i)
        ins.append(arr)
        flat.append(list(arr.ravel()))
    return ins, flat


class _ElementwiseModule:
    """The ``xp`` for a loss over scalar symbols: a module's functions, mapped over object arrays."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, attr):
        fn = getattr(self._module, attr)
        each = np.frompyfunc(fn, 1, 1)
        return lambda x: each(x) if isinstance(x, np.ndarray) else fn(x)

    @staticmethod
    def sum(x):
        return np.sum(x) if isinstance(x, np.ndarray) else x


def _flat_call(w, bind):
    """call(*args) -> (value, grads) around a compiled function of one flat input vector (the
    arguments' elements in order) to one flat output vector (value, then the wrt gradients);
    ``bind(inp, out)`` returns a no-argument evaluation reading inp and writing out."""
    nw = len(w.wrt)
    sizes = [int(np.size(a)) for a in w.args]
    inp = np.empty(sum(sizes))
    out = np.empty(1 + sum(sizes[:nw]))
    starts = np.cumsum([0] + sizes)
    views = [inp[b : b + n].reshape(np.shape(a)) for b, n, a in zip(starts, sizes, w.args)]
    shapes = [np.shape(a) for a in w.args[:nw]]
    evaluate = bind(inp, out)
    if not any(shapes):  # scalars only: skip the slicing

        def call(*args):
            inp[:] = args
            evaluate()
            return out[0], tuple(out[1:].tolist())

        return call
    grads = [(slice(1 + b, 1 + b + n), shape) for b, n, shape in zip(starts, sizes, shapes)]

    def call(*args):
        for view, a in zip(views, args):
            view[...] = a
        evaluate()
        o = out.copy()
        return o[0], tuple(o[sl].reshape(shape) for sl, shape in grads)

    return call


def _only_grads(out):
    return None, out if isinstance(out, tuple) else (out,)


def _pair(out):
    value, *grads = out
    return value, tuple(grads)


def _agree(got, want):
    gv, gg = got
    wv, wg = want
    gg = gg if isinstance(gg, (tuple, list)) else (gg,)
    wg = wg if isinstance(wg, (tuple, list)) else (wg,)
    # a per-example workload's calls give the gradients alone (gv None): they are compared
    ok = gv is None or np.allclose(np.asarray(gv, dtype=float), wv, rtol=1e-6, atol=1e-12)
    return bool(ok and len(gg) == len(wg) and all(_close(a, b) for a, b in zip(gg, wg)))


def _close(a, b):
    if hasattr(b, "tocsr"):  # a sparse Jacobian: every entry within 1e-6 of the largest
        return hasattr(a, "tocsr") and a.shape == b.shape and abs(a - b).max() <= 1e-6 * abs(b).max()
    return np.allclose(np.asarray(a, dtype=float).reshape(np.shape(b)), b, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------- one case (in its own process)


def run_case(name, repeat=7, peers=PEERS):
    """Measure one workload in this process; returns a JSON-able record."""
    sg.config(compile="sync")  # call times are numba's machine code's, builds until it is ready
    w = make_workload(sg, name)
    rec = {"workload": name}
    want = w.by_hand(*w.args)
    # once per process, as a peer's import is: numba's import and first function (its registries
    # and SciPy's BLAS load then), here a one-line graph's; a cold cache compiles it
    start = time.perf_counter()
    probe = sg.scalar("bench_startup_probe")
    sg.compile(probe + 1.0)(1.0)
    rec["startup_s"] = time.perf_counter() - start
    if w.per_example is not None:
        return _run_per_example(rec, w, want, repeat, peers)
    start = time.perf_counter()
    if w.sparse_jacobian:
        sj = sg.sparse_jacobian(w.expr, w.wrt, w.inputs)
        rec["build_s"] = time.perf_counter() - start
        rec["cache"] = sj.compiled.cache_state
        rec["jacobian_passes"], rec["jacobian_mode"] = sj.passes, sj.mode
        vg = sj.value_and_jacobian
        rec["agree"] = _agree((lambda v, j: (v, (j,)))(*vg(*w.args)), want)
        rec["source_lines"] = sj.source.count("\n")
        peers = []  # none of them builds sparse Jacobians
    else:
        vg = sg.value_and_grad(w.expr, wrt=w.wrt, inputs=w.inputs)
        rec["build_s"] = time.perf_counter() - start
        rec["cache"] = vg.cache_state
        rec["agree"] = _agree(vg(*w.args), want)
        rec["source_lines"] = vg.source.count("\n")
    forward = sg.compile(w.expr, inputs=w.inputs)
    rec["forward_s"] = median_call_seconds(forward, *w.args, repeat=repeat)
    rec["vg_s"] = median_call_seconds(vg, *w.args, repeat=repeat)
    rec["numpy_vg_s"] = median_call_seconds(w.by_hand, *w.args, repeat=repeat)
    rec["numpy_forward_s"] = median_call_seconds(w.forward_by_hand, *w.args, repeat=repeat)
    rec["fused_vg_s"] = None
    if w.fused is not None:
        if not _agree(w.fused(*w.args), want):
            rec["fused_vg_s"] = "disagrees with the reference"
        else:
            rec["fused_vg_s"] = median_call_seconds(w.fused, *w.args, repeat=repeat)
    rec["vg_over_forward"] = rec["vg_s"] / rec["forward_s"]
    rec["vg_over_numpy"] = rec["vg_s"] / rec["numpy_vg_s"]
    if isinstance(rec["fused_vg_s"], float):
        rec["vg_over_fused"] = rec["vg_s"] / rec["fused_vg_s"]
    if w.twin is not None:
        twin = sg.value_and_grad(w.twin, wrt=w.wrt, inputs=w.inputs)
        rec["twin_agree"] = _agree(twin(*w.args), want)
        rec["twin_vg_s"] = median_call_seconds(twin, *w.args, repeat=repeat)
        rec["vg_over_twin"] = rec["vg_s"] / rec["twin_vg_s"]
    if w.loop:
        steps, rate = w.loop
        rec["loop_steps"] = steps
        rec["loop_s"] = _descent(vg, w, steps, rate)
        rec["numpy_loop_s"] = _descent(w.by_hand, w, steps, rate)
    rec["peers"] = {}
    for peer in peers:
        rec["peers"][peer] = _measure_peer(peer, w, want, repeat)
    return rec


def _run_per_example(rec, w, want, repeat, peers):
    """A per-example workload: ``vg`` is sg.vmap(sg.grad(loss)) (the gradients alone, as the
    peers' and numpy's calls), ``forward`` sg.vmap(loss), both traced from the numpy loss."""
    pe = w.per_example

    def loss(*a):
        return w.loss(np, *a)

    start = time.perf_counter()
    grads = sg.vmap(sg.grad(loss, argnums=pe.argnums), in_axes=pe.in_axes)
    grads(*w.args)
    rec["build_s"] = time.perf_counter() - start
    rec["cache"] = grads.compiled_for(*w.args).cache_state

    def vg(*a):
        return _only_grads(grads(*a))

    def numpy_vg(*a):
        return w.by_hand(*a)[1]

    rec["agree"] = _agree(vg(*w.args), want)
    forward = sg.vmap(loss, in_axes=pe.in_axes)
    rec["source_lines"] = grads.source.count("\n")
    rec["forward_s"] = median_call_seconds(forward, *w.args, repeat=repeat)
    rec["vg_s"] = median_call_seconds(grads, *w.args, repeat=repeat)
    rec["numpy_vg_s"] = median_call_seconds(numpy_vg, *w.args, repeat=repeat)
    rec["numpy_forward_s"] = median_call_seconds(w.forward_by_hand, *w.args, repeat=repeat)
    rec["fused_vg_s"] = None
    rec["vg_over_forward"] = rec["vg_s"] / rec["forward_s"]
    rec["vg_over_numpy"] = rec["vg_s"] / rec["numpy_vg_s"]
    rec["peers"] = {peer: _measure_peer(peer, w, want, repeat) for peer in peers}
    return rec


def _descent(fn, w, steps, rate):
    params = [np.array(a, dtype=float) for a in w.args[: len(w.wrt)]]
    rest = w.args[len(w.wrt) :]
    start = time.perf_counter()
    for _ in range(steps):
        _, grads = fn(*params, *rest)
        params = [p - rate * g for p, g in zip(params, grads)]
    return time.perf_counter() - start


def _measure_peer(peer, w, want, repeat):
    try:
        made = _peer(peer, w)
    except ImportError:
        return {"status": "absent"}
    if made is None:
        return {"status": "n/a"}
    build, wrap = made
    try:
        start = time.perf_counter()
        fn = wrap(build())
        fn(*w.args)
        out = {"status": "ok", "build_s": time.perf_counter() - start}
        if not _agree(fn(*w.args), want):
            return {"status": "disagrees with the reference"}
        out["vg_s"] = median_call_seconds(fn, *w.args, repeat=repeat)
        return out
    except PeerLacks:
        return {"status": "n/a"}
    except Exception as exc:  # a peer's failure is a result, not a crash of the bench
        return {"status": f"error: {type(exc).__name__}: {str(exc)[:80]}"}


# ---------------------------------------------------------------- the driver


def select(names):
    if not names:
        return list(NAMES)
    chosen = []
    for n in names:
        matches = [m for m in NAMES if m == n or m.split("/")[0] == n]
        if not matches and n.split("/")[0] in MAKERS:
            matches = [n]  # another size of a known workload, e.g. rosen/1e5
        if not matches:
            raise SystemExit(f"unknown workload {n!r}; choose from {', '.join(NAMES)}")
        chosen += [m for m in matches if m not in chosen]
    return chosen


def run(names=None, *, json_path=None, timeout=600.0, repeat=7, peers=PEERS, out=print, progress=sys.stderr):
    """Run each workload in its own subprocess, print the table, return the records."""
    names = select(names)
    records = []
    for k, name in enumerate(names, 1):
        if progress is not None:
            progress.write(f"\r[{k}/{len(names)}] {name:<12} running ...   ")
            progress.flush()
        cmd = [
            sys.executable,
            "-m",
            "symgrad.bench",
            "--case",
            name,
            "--repeat",
            str(repeat),
            "--peers",
            ",".join(peers) or "none",
        ]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
            lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
            if proc.returncode == 0 and lines:
                rec = json.loads(lines[-1])
            else:
                rec = {"workload": name, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
        except subprocess.TimeoutExpired:
            rec = {"workload": name, "error": f"timed out after {timeout:.0f} s"}
        rec["wall_s"] = time.perf_counter() - start
        records.append(rec)
    if progress is not None:
        progress.write("\r" + " " * 50 + "\r")
        progress.flush()
    for line in table(records, peers):
        out(line)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "records": records,
                    "python": sys.version.split()[0],
                    "numpy": np.__version__,
                    "peers": list(peers),
                },
                fh,
                indent=1,
            )
    return records


def table(records, peers=PEERS):
    cols = [
        "workload",
        "startup",
        "build",
        "forward",
        "vg",
        "numpy vg",
        "fused vg",
        "vg/numpy",
        "vg/fused",
        "vg/fwd",
    ] + [f"{p} vg" for p in peers]
    rows = [cols]
    for r in records:
        if "error" in r:
            rows.append([r["workload"], "error: " + r["error"][:90]])
            continue
        fused = r.get("fused_vg_s")
        row = [
            r["workload"] + ("" if r.get("agree") else " (MISMATCH)"),
            f"{r['startup_s']:.3f} s",
            f"{r['build_s']:.3f} s",
            format_seconds(r["forward_s"]),
            format_seconds(r["vg_s"]),
            format_seconds(r["numpy_vg_s"]),
            format_seconds(fused) if not isinstance(fused, str) else fused,
            f"{r['vg_over_numpy']:.2f}",
            f"{r['vg_over_fused']:.2f}" if "vg_over_fused" in r else "-",
            f"{r['vg_over_forward']:.2f}",
        ]
        for p in peers:
            info = r["peers"].get(p, {"status": "absent"})
            row.append(format_seconds(info["vg_s"]) if info.get("status") == "ok" else info["status"])
        rows.append(row)
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(cols))]
    lines = []
    for j, row in enumerate(rows):
        if len(row) == 2 and j:
            lines.append(f"{row[0]:<{widths[0]}}  {row[1]}")
            continue
        lines.append(
            "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row))
        )
        if j == 0:
            lines.append("-" * len(lines[0]))
    loops = [r for r in records if "loop_s" in r]
    for r in loops:
        lines.append(
            f"{r['workload']}: {r['loop_steps']} gradient-descent steps through vg in a Python loop: "
            f"{r['loop_s']:.3f} s (numpy by hand {r['numpy_loop_s']:.3f} s, "
            f"ratio {r['loop_s'] / r['numpy_loop_s']:.2f})"
        )
    for r in records:
        if "jacobian_passes" in r:
            lines.append(
                f"{r['workload']}: vg is the value and the sparse Jacobian as CSR, "
                f"{r['jacobian_passes']} coloured {r['jacobian_mode']} passes; numpy vg fills the same CSR by hand"
            )
        if "twin_vg_s" in r:
            lines.append(
                f"{r['workload']}: written with einsum {format_seconds(r['vg_s'])}, the same loss written "
                f"with matmul {format_seconds(r['twin_vg_s'])}"
                f"{'' if r['twin_agree'] else ' (MISMATCH)'}, ratio {r['vg_over_twin']:.2f}"
            )
    ok = [r for r in records if "vg_over_forward" in r]
    if ok:
        lines.append(
            f"median vg/forward over the workloads: {statistics.median(r['vg_over_forward'] for r in ok):.2f}"
        )
    return lines


def add_arguments(parser):
    parser.add_argument("workloads", nargs="*", help=f"workload names (default: all): {', '.join(NAMES)}")
    parser.add_argument("--json", metavar="PATH", help="write the raw numbers as JSON")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per case (default 600)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed runs per measurement (default 7; --suite build: builds per cell, default 3)",
    )
    parser.add_argument(
        "--suite",
        choices=["calls", "build", "args", "threads"],
        default="calls",
        help="calls (default): the workloads' build, forward and value-and-grad times; build: "
        f"cold and warm builds of {', '.join(bench_build.NAMES)}, each in a fresh process, beside "
        "JAX's jit build (symgrad bench --suite build [programs]); args: each argument kind "
        "(numpy scalars, 0-d arrays, keywords, read-only and integer arrays) against the fastest; "
        "threads: long fused loops on 1 thread against all (rosen/1e6, logreg/1e6, ew/1e7 unless "
        "workloads are named), with the bits compared",
    )
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated peers to try if importable (default {','.join(PEERS)}; 'none')",
    )
    parser.add_argument(
        "--dask",
        action="store_true",
        help="instead of the workloads: logistic regression over Dask arrays on a local "
        "cluster against dask.array by hand (needs symgrad[dask])",
    )
    parser.add_argument("--rows", type=_size, default=10**7, help="--dask: rows (default 1e7)")
    parser.add_argument("--chunk", type=_size, default=10**6, help="--dask: rows per chunk (default 1e6)")
    parser.add_argument("--workers", default="1,2", help="--dask: worker counts to run (default 1,2)")


def run_from_arguments(args):
    """What ``symgrad bench`` does with its parsed arguments."""
    if args.suite == "build":
        return bench_build.run(
            args.workloads,
            repeat=args.repeat or bench_build.DEFAULT_REPEAT,
            timeout=args.timeout,
            json_path=args.json,
        )
    if args.suite == "args":
        return bench_args.run(repeat=args.repeat or bench_args.DEFAULT_REPEAT, json_path=args.json)
    if args.suite == "threads":
        return bench_threads.run(
            make_workload,
            args.workloads,
            repeat=args.repeat or bench_threads.DEFAULT_REPEAT,
            json_path=args.json,
        )
    if args.dask:
        return bench_dask.run(
            rows=args.rows,
            chunk=args.chunk,
            repeat=args.repeat or 7,
            workers=tuple(int(k) for k in args.workers.split(",") if k),
        )
    return run(
        args.workloads,
        json_path=args.json,
        timeout=args.timeout,
        repeat=args.repeat or 7,
        peers=peers_of(args.peers),
    )


def peers_of(text):
    return [] if text in ("", "none") else [p for p in text.split(",") if p]


def main(argv=None, prog="python -m symgrad.bench"):
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.add_argument("--case", help=argparse.SUPPRESS)  # one workload, in this process, as JSON
    parser.add_argument("--build-case", help=argparse.SUPPRESS)  # one build-suite build, as JSON
    parser.add_argument("--system", default="symgrad", help=argparse.SUPPRESS)  # of --build-case
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, repeat=args.repeat or 7, peers=peers_of(args.peers))))
        return 0
    if args.build_case:
        print(json.dumps(bench_build.build_case(args.build_case, args.system)))
        return 0
    run_from_arguments(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
