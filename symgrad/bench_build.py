"""``symgrad bench --suite build``: how long a new user waits for a program's value and gradient.

The programs are the ones issue 19 measured, each written as ordinary numpy code and traced
(``sg.value_and_grad(fn, argnums)``): the 784-128-10 MLP at batch 64, a 2-component Gaussian
mixture's negative log-likelihood, an RNN of hidden size 8 over T = 10, 20 and 50 steps and an
Euler integrator of 200 steps with a squared error to observations (both Python loops), the seed
``x*y + sin(x)`` and ``rosen``; and ``small``, a set of small losses written in ordinary numpy
(see "the small set" below), summarised by the median and 90th percentile of the symgrad/JAX
build ratios.

Each build runs in a process of its own: ``cold`` with an empty cache directory, ``warm`` in a
second process with the cache the cold one filled. ``first`` is the seconds from the first call
of the traced function to its return (trace, differentiation, code generation and, with
``compile="background"``, the default, the numpy twin that serves the first calls while numba
compiles in a background thread; with ``SYMGRAD_COMPILE=sync``, numba's compile or its cache
load); ``numba`` is the seconds from the same start until numba's machine code runs the calls
(``vg.wait()`` returns). Both are after ``import symgrad`` and numba's own start-up (timed apart,
as ``import``).
JAX's ``jax.jit(jax.value_and_grad(f))`` first call is timed beside it when JAX is importable (the
loops with ``lax.scan``, as a JAX user writes them), in a process of its own, with x64 enabled.
Each number is the median over ``--repeat`` runs (default 3).

    symgrad bench --suite build                  # every program
    symgrad bench --suite build seed rnn/10      # some ("rnn" selects every T)
    symgrad bench --suite build small/12         # 12 functions of the small set, evenly spaced
"""

import importlib
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import symgrad as sg

NAMES = ["seed", "rosen", "mlp", "gmm", "rnn/10", "rnn/20", "rnn/50", "euler", "small"]
# the loop programs written with sg.scan (the spelling a JAX user would choose) instead of a Python loop
NAMES += ["rnn_scan/50", "euler_scan"]
DEFAULT_REPEAT = 3


# ---------------------------------------------------------------- the programs
# Each program is ``loss(xp, *args)`` over an array module (numpy for symgrad's trace and the
# reference, jax.numpy for JAX); ``argnums`` says which arguments the gradient is taken of.
# ``scan(jax, *args)`` is the JAX spelling of a loop program (lax.scan).


def seed(xp, x, y):
    return x * y + xp.sin(x)


def rosen(xp, x):
    return xp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def mlp(xp, W1, b1, W2, b2, X, T):
    s = xp.tanh(X @ W1 + b1) @ W2 + b2
    m = xp.max(s, axis=1, keepdims=True)
    lse = m + xp.log(xp.sum(xp.exp(s - m), axis=1, keepdims=True))
    return -xp.sum(T * (s - lse)) / X.shape[0]


def gmm(xp, mu, log_sigma, logits, x):
    """Negative log-likelihood of x under a 2-component 1-d Gaussian mixture."""
    log_w = logits - xp.log(xp.sum(xp.exp(logits)))
    z = (x[:, None] - mu[None, :]) / xp.exp(log_sigma)[None, :]
    logp = log_w[None, :] - log_sigma[None, :] - 0.5 * math.log(2 * math.pi) - 0.5 * z**2
    m = xp.max(logp, axis=1, keepdims=True)
    return -xp.sum(m[:, 0] + xp.log(xp.sum(xp.exp(logp - m), axis=1)))


def rnn(xp, Wx, Wh, b, w_out, xs, ys):
    """A tanh RNN of hidden size 8 over len(xs) steps; squared error of its output at every step."""
    h = xp.zeros(Wh.shape[0])
    loss = 0.0
    for t in range(xs.shape[0]):
        h = xp.tanh(xs[t] @ Wx + h @ Wh + b)
        loss = loss + (h @ w_out - ys[t]) ** 2
    return loss


def euler(xp, a, x0, obs):
    """x' = a sin(x) by 200 explicit Euler steps of 0.01; squared error to an observation per step."""
    x = x0
    loss = 0.0
    for i in range(obs.shape[0]):
        x = x + 0.01 * a * xp.sin(x)
        loss = loss + (x - obs[i]) ** 2
    return loss


def rnn_scan(jax, Wx, Wh, b, w_out, xs, ys):
    jnp = jax.numpy

    def step(carry, inp):
        h, loss = carry
        x, y = inp
        h = jnp.tanh(x @ Wx + h @ Wh + b)
        return (h, loss + (h @ w_out - y) ** 2), None

    (_, loss), _ = jax.lax.scan(step, (jnp.zeros(Wh.shape[0]), 0.0), (xs, ys))
    return loss


def euler_scan(jax, a, x0, obs):
    jnp = jax.numpy

    def step(carry, o):
        x, loss = carry
        x = x + 0.01 * a * jnp.sin(x)
        return (x, loss + (x - o) ** 2), None

    (_, loss), _ = jax.lax.scan(step, (x0, 0.0 * x0), obs)
    return loss


def rnn_sg_scan(xp, Wx, Wh, b, w_out, xs, ys):
    def step(carry, inp):
        h, loss = carry
        x, y = inp
        h = xp.tanh(x @ Wx + h @ Wh + b)
        return (h, loss + (h @ w_out - y) ** 2), None

    (_, loss), _ = sg.scan(step, (xp.zeros(Wh.shape[0]), 0.0), (xs, ys))
    return loss


def euler_sg_scan(xp, a, x0, obs):
    def step(carry, o):
        x, loss = carry
        x = x + 0.01 * a * xp.sin(x)
        return (x, loss + (x - o) ** 2), None

    (_, loss), _ = sg.scan(step, (x0, 0.0 * x0), obs)
    return loss


# ---------------------------------------------------------------- the small set
# Small losses as people write them in numpy (norms, softplus, logistic, Huber, polynomials, trig
# mixes, reductions, products of small matrices, ...), each traced by symgrad and jitted by JAX with
# the gradient of its first argument. They are built in batches, several functions per process
# (each system its own processes; symgrad's with a fresh cache): each process first builds one
# function that is not timed (numba's and JAX's start-up), then times each build of its batch,
# from the first call of ``value_and_grad`` (or ``jax.jit(jax.value_and_grad(f))``) to its result.

SMALL_BATCH = 10


def small_args():
    """The arguments the small set draws from: two 16-vectors, two 4x4 matrices, a 4-vector and a
    scalar."""
    rng = np.random.default_rng(1)
    return {
        "x": rng.uniform(-1, 1, 16),
        "y": rng.uniform(-1, 1, 16),
        "A": rng.normal(size=(4, 4)) * 0.5,
        "B": rng.normal(size=(4, 4)) * 0.5,
        "v": rng.uniform(-1, 1, 4),
        "s": 0.7,
    }


def _sigmoid(xp, z):
    return 1.0 / (1.0 + xp.exp(-z))


SMALL_FUNCTIONS = {}  # name -> (loss(xp, *args), the names of its arguments in SMALL_ARGS)


def small(*argnames):
    """Put ``loss`` in the small set; its arguments are the named ones of ``small_args()``."""

    def deco(fn):
        SMALL_FUNCTIONS[fn.__name__] = (fn, argnames)
        return fn

    return deco


@small("x")
def l2_norm(xp, x):
    return xp.sqrt(xp.sum(x * x))


@small("x")
def sq_norm(xp, x):
    return xp.sum(x**2)


@small("x")
def l1_smooth(xp, x):
    return xp.sum(xp.sqrt(x * x + 1e-6))


@small("x")
def softplus_sum(xp, x):
    return xp.sum(xp.log1p(xp.exp(x)))


@small("x", "y")
def logistic_loss(xp, x, y):
    return xp.mean(xp.log1p(xp.exp(-y * x)))


@small("x", "y")
def huber(xp, x, y):
    r = xp.abs(x - y)
    return xp.sum(xp.where(r < 1.0, 0.5 * r**2, r - 0.5))


@small("x")
def poly3(xp, x):
    return xp.sum(1.0 + 2.0 * x - 0.5 * x**2 + 0.1 * x**3)


@small("x")
def trig_mix(xp, x):
    return xp.sum(xp.sin(x) * xp.cos(2.0 * x))


@small("x")
def tanh_energy(xp, x):
    return xp.sum(xp.tanh(x) ** 2)


@small("x")
def logsumexp(xp, x):
    m = xp.max(x)
    return m + xp.log(xp.sum(xp.exp(x - m)))


@small("x")
def entropy(xp, x):
    p = xp.exp(x) / xp.sum(xp.exp(x))
    return -xp.sum(p * xp.log(p))


@small("x", "y")
def mse(xp, x, y):
    return xp.mean((x - y) ** 2)


@small("x", "y")
def cosine_sim(xp, x, y):
    return xp.dot(x, y) / (xp.sqrt(xp.dot(x, x)) * xp.sqrt(xp.dot(y, y)))


@small("A")
def frobenius(xp, A):
    return xp.sum(A * A)


@small("A", "v")
def quad_form(xp, A, v):
    return v @ A @ v


@small("A", "B")
def matmul_trace(xp, A, B):
    return xp.trace(A @ B)


@small("A", "B")
def matmul_sum(xp, A, B):
    return xp.sum(xp.tanh(A @ B))


@small("A", "v")
def linear_lsq(xp, A, v):
    return xp.sum((A @ v - 1.0) ** 2)


@small("x")
def gaussian_nll(xp, x):
    return 0.5 * xp.sum(x**2) + 0.5 * x.shape[0] * math.log(2 * math.pi)


@small("x")
def rosen_small(xp, x):
    return xp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


@small("x")
def exp_decay(xp, x):
    return xp.sum(xp.exp(-0.5 * x) * x)


@small("x")
def log_barrier(xp, x):
    return -xp.sum(xp.log(2.0 - x)) - xp.sum(xp.log(x + 2.0))


@small("x")
def sigmoid_sum(xp, x):
    return xp.sum(_sigmoid(xp, x))


@small("x", "y")
def bce(xp, x, y):
    p = _sigmoid(xp, x)
    t = (y > 0) * 1.0
    return -xp.mean(t * xp.log(p) + (1.0 - t) * xp.log(1.0 - p))


@small("x")
def relu_sq(xp, x):
    return xp.sum(xp.maximum(x, 0.0) ** 2)


@small("x")
def abs_sum(xp, x):
    return xp.sum(xp.abs(x))


@small("x")
def variance(xp, x):
    return xp.mean((x - xp.mean(x)) ** 2)


@small("x")
def std_norm(xp, x):
    return xp.sqrt(xp.mean((x - xp.mean(x)) ** 2) + 1e-8)


@small("x")
def cubic_diff(xp, x):
    return xp.sum((x[1:] - x[:-1]) ** 3)


@small("x")
def total_variation(xp, x):
    return xp.sum(xp.sqrt((x[1:] - x[:-1]) ** 2 + 1e-4))


@small("x")
def arctan_sum(xp, x):
    return xp.sum(xp.arctan(x))


@small("x")
def sinc_like(xp, x):
    return xp.sum(xp.sin(x) / (1.0 + x**2))


@small("x", "y")
def weighted_sq(xp, x, y):
    return xp.sum(xp.exp(y) * x**2)


@small("x", "y")
def logcosh(xp, x, y):
    return xp.sum(xp.log(xp.cosh(x - y)))


@small("x")
def softmax_ce(xp, x):
    m = xp.max(x)
    return -(x[0] - m - xp.log(xp.sum(xp.exp(x - m))))


@small("A")
def row_softmax_ce(xp, A):
    m = xp.max(A, axis=1, keepdims=True)
    lse = m + xp.log(xp.sum(xp.exp(A - m), axis=1, keepdims=True))
    return -xp.sum(A[:, 0:1] - lse)


@small("A")
def row_norms(xp, A):
    return xp.sum(xp.sqrt(xp.sum(A**2, axis=1)))


@small("A")
def col_means_sq(xp, A):
    return xp.sum(xp.mean(A, axis=0) ** 2)


@small("A", "B")
def elementwise_prod(xp, A, B):
    return xp.sum(A * B * xp.sin(A))


@small("A", "v")
def mlp_tiny(xp, A, v):
    return xp.sum(xp.tanh(A @ v) ** 2)


@small("A", "B")
def gram(xp, A, B):
    return xp.sum((A.T @ A - B) ** 2)


@small("x")
def exp_mix(xp, x):
    return xp.log(xp.sum(0.3 * xp.exp(-(x**2)) + 0.7 * xp.exp(-((x - 1.0) ** 2))))


@small("x")
def sqrt_sum(xp, x):
    return xp.sum(xp.sqrt(x**2 + 1.0))


@small("x", "y")
def dot_tanh(xp, x, y):
    return xp.tanh(xp.dot(x, y))


@small("x")
def geometric(xp, x):
    return xp.sum(x**4 - 3.0 * x**2 + x)


@small("x")
def cos_energy(xp, x):
    return xp.sum(1.0 - xp.cos(x[1:] - x[:-1]))


@small("x")
def log_prior(xp, x):
    return xp.sum(-xp.log1p(x**2))


@small("x", "y")
def poisson_nll(xp, x, y):
    return xp.sum(xp.exp(x) - xp.abs(y) * x)


@small("x", "y")
def pinball(xp, x, y):
    r = y - x
    return xp.sum(xp.maximum(0.3 * r, (0.3 - 1.0) * r))


@small("x")
def expm1_sum(xp, x):
    return xp.sum(xp.expm1(0.1 * x))


@small("A")
def max_abs_row(xp, A):
    return xp.sum(xp.max(xp.abs(A), axis=1))


@small("x", "y")
def clipped(xp, x, y):
    return xp.sum(xp.clip(x - y, -1.0, 1.0) ** 2)


@small("x")
def cumulative(xp, x):
    return xp.sum(xp.cumsum(x) ** 2)


@small("A", "B")
def outer_loss(xp, A, B):
    return xp.sum(xp.outer(A[0], B[:, 0]) ** 2)


@small("x", "s")
def scaled_norm(xp, x, s):
    return s * xp.sum(x**2) + xp.exp(s)


@small("s", "x")
def scalar_poly(xp, s, x):
    return s**3 - 2.0 * s + xp.sin(s) * xp.sum(x)


class Program:
    """A build-suite program: its loss over ``xp``, arguments, which are differentiated, and
    (for loops) the JAX scan spelling; ``traced``: symgrad's own spelling when it is not ``loss``
    (``sg.scan``), ``loss`` staying the numpy reference."""

    def __init__(self, name, loss, args, argnums, scan=None, traced=None):
        self.name, self.loss, self.args, self.argnums, self.scan = name, loss, tuple(args), argnums, scan
        self.traced = traced

    def traced_function(self):
        """``loss`` with numpy bound, named after the program (the name the build report shows)."""
        loss = self.traced or self.loss

        def program(*args):
            return loss(np, *args)

        program.__name__ = program.__qualname__ = self.name.replace("/", "_T")
        return program


def make_program(name, size=None):
    """The program ``name`` (``rnn/20``: T = 20); ``size`` shrinks the data for tests."""
    family, _, arg = name.partition("/")
    rng = np.random.default_rng(0)
    if family == "seed":
        return Program(name, seed, (0.7, -1.3), (0, 1))
    if family == "rosen":
        return Program(name, rosen, (rng.uniform(-1, 1, size or 1000),), 0)
    if family == "mlp":
        d, h, k, n = (784, 128, 10, 64) if size is None else (size, 4, 3, 5)
        args = (
            rng.normal(size=(d, h)) * 0.05,
            rng.normal(size=h) * 0.1,
            rng.normal(size=(h, k)) * 0.1,
            rng.normal(size=k) * 0.1,
            rng.normal(size=(n, d)),
            np.eye(k)[rng.integers(0, k, n)],
        )
        return Program(name, mlp, args, (0, 1, 2, 3))
    if family == "gmm":
        n = size or 1000
        x = np.concatenate([rng.normal(-1.0, 0.5, n // 2), rng.normal(1.5, 1.0, n - n // 2)])
        return Program(
            name, gmm, (np.array([-0.5, 1.0]), np.array([0.1, -0.2]), np.array([0.3, -0.1]), x), (0, 1, 2)
        )
    if family == "rnn_scan":
        program = make_program(f"rnn/{arg or 50}", size)
        return Program(name, rnn, program.args, program.argnums, rnn_scan, rnn_sg_scan)
    if family == "euler_scan":
        program = make_program("euler", size)
        return Program(name, euler, program.args, program.argnums, euler_scan, euler_sg_scan)
    if family == "rnn":
        steps, hidden, d = int(arg or 10), 8, 4
        args = (
            rng.normal(size=(d, hidden)) * 0.5,
            rng.normal(size=(hidden, hidden)) * 0.3,
            rng.normal(size=hidden) * 0.1,
            rng.normal(size=hidden) * 0.5,
            rng.normal(size=(steps, d)),
            rng.normal(size=steps),
        )
        return Program(name, rnn, args, (0, 1, 2, 3), rnn_scan)
    if family == "euler":
        steps = size or 200
        truth = 1.3
        x, obs = 0.5, np.empty(steps)
        for i in range(steps):
            x = x + 0.01 * truth * math.sin(x)
            obs[i] = x + 0.01 * rng.normal()
        return Program(name, euler, (1.0, 0.4, obs), (0, 1), euler_scan)
    raise SystemExit(f"unknown build program {name!r}; choose from {', '.join(NAMES)}")


def small_names(sample=None):
    """The small set's function names, or ``sample`` of them evenly spaced over the set."""
    names = list(SMALL_FUNCTIONS)
    if sample is None or sample >= len(names):
        return names
    step = len(names) / sample
    return [names[int(k * step)] for k in range(sample)]


def select(names):
    if not names:
        return list(NAMES)
    chosen = []
    for n in names:
        matches = [m for m in NAMES if m == n or m.split("/")[0] == n]
        if not matches and n.split("/")[0] in ("rnn", "rnn_scan"):
            matches = [n]  # another T, e.g. rnn/100
        if not matches and n.split("/")[0] == "small" and n.split("/")[1:2] != [""]:
            if not n.split("/")[1].isdigit() or int(n.split("/")[1]) < 1:
                raise SystemExit(
                    f"small/N takes a number of functions (1 to {len(SMALL_FUNCTIONS)}), not {n!r}"
                )
            matches = [n]  # a sample, e.g. small/12
        if not matches:
            raise SystemExit(f"unknown build program {n!r}; choose from {', '.join(NAMES)}")
        chosen += [m for m in matches if m not in chosen]
    return chosen


# ---------------------------------------------------------------- one build, in this process


def _flat(tree):
    if isinstance(tree, (tuple, list)):
        return [leaf for t in tree for leaf in _flat(t)]
    return [np.asarray(tree, dtype=np.float64)]


def build_small(names, system):
    """Build the small set's functions ``names`` in this process with ``system`` after one untimed
    build: a JSON-able record with each function's seconds and whether its value is numpy's."""
    start = time.perf_counter()
    if system == "symgrad":
        sg.config(verbose=0)
        importlib.import_module("numba")
        imported = time.perf_counter() - start

        def build(loss, args):
            def function(*a):
                return loss(np, *a)

            function.__name__ = function.__qualname__ = loss.__name__
            vg = sg.value_and_grad(function, 0)
            return vg(*args), vg.wait

    elif system == "jax":
        jax = importlib.import_module("jax")
        jax.config.update("jax_enable_x64", True)
        imported = time.perf_counter() - start

        def build(loss, args):
            fn = jax.jit(jax.value_and_grad(lambda *a: loss(jax.numpy, *a)))
            return jax.block_until_ready(fn(*args)), lambda: None

    else:
        raise SystemExit(f"unknown system {system!r}: symgrad or jax")
    pool = small_args()
    build(seed, (0.7, -1.3))[1]()  # start-up, not timed
    builds = []
    for name in names:
        loss, argnames = SMALL_FUNCTIONS[name]
        args = tuple(pool[a] for a in argnames)
        start = time.perf_counter()
        (value, _), wait = build(loss, args)
        seconds = time.perf_counter() - start
        wait()  # numba ready (at once for JAX); the next build starts with no compile running
        numba = time.perf_counter() - start
        want = loss(np, *args)
        agree = bool(np.isclose(float(value), want, rtol=1e-9, atol=1e-12))
        builds.append(
            {"name": name, "build_s": seconds, "numba_s": numba, "value": float(value), "agree": agree}
        )
    return {"program": "small", "system": system, "import_s": imported, "builds": builds}


def build_case(name, system):
    """Import ``system`` (symgrad or jax), build the program's value and gradient, call it once:
    a JSON-able record with the seconds, generated lines (symgrad) and the value and gradient.
    ``small:a,b,c`` builds those functions of the small set in this process (``build_small``)."""
    if name.startswith("small:"):
        return build_small(name.partition(":")[2].split(","), system)
    program = make_program(name)
    start = time.perf_counter()
    if system == "symgrad":
        sg.config(verbose=0)
        importlib.import_module("numba")  # numba's import is start-up, not this program's build
        imported = time.perf_counter() - start
        start = time.perf_counter()
        vg = sg.value_and_grad(program.traced_function(), program.argnums)
        value, grad = vg(*program.args)
        build = time.perf_counter() - start
        vg.wait()
        numba = time.perf_counter() - start
        again = vg(*program.args)  # numba's machine code: the same numbers to rounding
        agree_tiers = bool(np.isclose(float(again[0]), float(value), rtol=1e-12, atol=1e-14))
        (record,) = vg.compiles
        extra = {
            "lines": vg.source.count("\n"),
            "cache": record["cache"],
            "phases": record["phases"],
            "numba_s": numba,
            "first_tier": record["first_tier"],
            "tiers_agree": agree_tiers,
        }
    elif system == "jax":
        jax = importlib.import_module("jax")
        jax.config.update("jax_enable_x64", True)
        imported = time.perf_counter() - start
        args = tuple(np.asarray(a, dtype=np.float64) for a in program.args)
        if program.scan is not None:
            loss = program.scan

            def f(*a):
                return loss(jax, *a)
        else:
            loss = program.loss

            def f(*a):
                return loss(jax.numpy, *a)

        start = time.perf_counter()
        fn = jax.jit(jax.value_and_grad(f, argnums=program.argnums))
        value, grad = jax.block_until_ready(fn(*args))
        build = time.perf_counter() - start
        extra = {"scan": program.scan is not None, "numba_s": build}
    else:
        raise SystemExit(f"unknown system {system!r}: symgrad or jax")
    want = program.loss(np, *program.args)
    return {
        "program": name,
        "system": system,
        "import_s": imported,
        "build_s": build,
        "value": float(value),
        "grad_norm": float(math.sqrt(sum(float(np.sum(g * g)) for g in _flat(grad)))),
        "agree": bool(np.isclose(float(value), want, rtol=1e-9, atol=1e-12)),
        **extra,
    }


# ---------------------------------------------------------------- processes, repeats, the table


def jax_importable():
    return importlib.util.find_spec("jax") is not None


def _process(name, system, cache, timeout):
    """One build in a fresh process: its record, or {"error": ...}."""
    # the default a new user gets: the first result from the numpy twin, numba in the background
    # (whatever SYMGRAD_COMPILE the bench itself runs under)
    env = dict(os.environ, SYMGRAD_CACHE_DIR=cache, SYMGRAD_COMPILE="background")
    cmd = [sys.executable, "-m", "symgrad.bench", "--build-case", name, "--system", system]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(lines[-1])


def measure(name, *, repeat=DEFAULT_REPEAT, timeout=600.0, jax=None, process=_process):
    """The build record of one program: symgrad cold and warm (a fresh cache per repeat, then a
    second process on it) and JAX's build, medians over ``repeat``."""
    jax = jax_importable() if jax is None else jax
    runs = {"cold": [], "warm": [], "jax": []}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="symgrad-build-bench-") as cache:
            runs["cold"].append(process(name, "symgrad", cache, timeout))
            if "error" not in runs["cold"][-1]:
                runs["warm"].append(process(name, "symgrad", cache, timeout))
        if jax:
            runs["jax"].append(process(name, "jax", tempfile.gettempdir(), timeout))
    rec = {"program": name}
    for kind, got in runs.items():
        errors = [r["error"] for r in got if "error" in r]
        ok = [r for r in got if "error" not in r]
        if kind == "jax" and not jax:
            rec[kind] = {"status": "absent"}
        elif errors or not ok:
            rec[kind] = {"status": "error: " + (errors or ["not run"])[0]}
        else:
            rec[kind] = {
                "status": "ok",
                "build_s": statistics.median(r["build_s"] for r in ok),
                "numba_s": statistics.median(r.get("numba_s", r["build_s"]) for r in ok),
                "import_s": statistics.median(r["import_s"] for r in ok),
                "agree": all(r["agree"] and r.get("tiers_agree", True) for r in ok),
                "runs": len(ok),
            }
            for key in ("lines", "cache", "phases", "scan", "value", "grad_norm", "first_tier"):
                if key in ok[-1]:
                    rec[kind][key] = ok[-1][key]
    cold, jx = rec["cold"], rec["jax"]
    if cold.get("status") == "ok" and jx.get("status") == "ok":
        rec["cold_over_jax"] = cold["build_s"] / jx["build_s"]
        rec["cold_numba_over_jax"] = cold["numba_s"] / jx["build_s"]
        # the two systems' value and gradient agree (a check of the programs, not of the timing)
        same = all(math.isclose(cold[k], jx[k], rel_tol=1e-6, abs_tol=1e-9) for k in ("value", "grad_norm"))
        jx["agree"] = jx["agree"] and same
    return rec


def measure_small(name="small", *, repeat=DEFAULT_REPEAT, timeout=600.0, jax=None, process=_process):
    """The small set (``small/N``: N of its functions) in batches of ``SMALL_BATCH`` per process,
    symgrad with a fresh cache and JAX beside it: each function's median build over ``repeat``, its
    symgrad/JAX ratio, and the median and 90th percentile of the ratios."""
    jax = jax_importable() if jax is None else jax
    sample = name.partition("/")[2]
    names = small_names(int(sample) if sample else None)
    batches = [names[k : k + SMALL_BATCH] for k in range(0, len(names), SMALL_BATCH)]
    times = {system: {n: [] for n in names} for system in ("symgrad", "jax", "numba")}
    agree = {n: True for n in names}
    errors = []
    systems = ["symgrad"] + (["jax"] if jax else [])
    for _ in range(repeat):
        for batch in batches:
            for system in systems:
                case = "small:" + ",".join(batch)
                if system == "symgrad":
                    with tempfile.TemporaryDirectory(prefix="symgrad-build-bench-") as cache:
                        got = process(case, system, cache, timeout)
                else:
                    got = process(case, system, tempfile.gettempdir(), timeout)
                if "error" in got:
                    errors.append(f"{system} {batch[0]}..: {got['error']}")
                    continue
                for b in got["builds"]:
                    times[system][b["name"]].append(b["build_s"])
                    if system == "symgrad":
                        times["numba"][b["name"]].append(b.get("numba_s", b["build_s"]))
                    agree[b["name"]] = agree[b["name"]] and b["agree"]
    functions = []
    for n in names:
        row = {"name": n, "agree": agree[n]}
        for system in systems + ["numba"]:
            if times[system][n]:
                row[f"{system}_s"] = statistics.median(times[system][n])
        if "symgrad_s" in row and "jax_s" in row:
            row["ratio"] = row["symgrad_s"] / row["jax_s"]
            row["numba_ratio"] = row["numba_s"] / row["jax_s"]
        functions.append(row)
    rec = {"program": name, "count": len(names), "functions": functions, "errors": errors, "runs": repeat}
    built = [f["symgrad_s"] for f in functions if "symgrad_s" in f]
    if built:
        rec["symgrad_median_s"] = statistics.median(built)
        rec["numba_median_s"] = statistics.median(f["numba_s"] for f in functions if "numba_s" in f)
    if jax:
        jax_built = [f["jax_s"] for f in functions if "jax_s" in f]
        ratios = [f["ratio"] for f in functions if "ratio" in f]
        if jax_built:
            rec["jax_median_s"] = statistics.median(jax_built)
        if ratios:
            rec["ratio_median"] = statistics.median(ratios)
            rec["ratio_p90"] = float(np.percentile(ratios, 90))
            numba_ratios = [f["numba_ratio"] for f in functions if "numba_ratio" in f]
            rec["numba_ratio_median"] = statistics.median(numba_ratios)
            rec["numba_ratio_p90"] = float(np.percentile(numba_ratios, 90))
    else:
        rec["jax"] = {"status": "absent"}
    return rec


def small_lines(rec):
    """The small set's summary lines."""
    head = (
        f"{rec['program']}: {rec['count']} small functions, cold cache, each build after an untimed one "
        f"in its process ({SMALL_BATCH} per process), median of {rec['runs']} run(s)"
    )
    lines = [head]
    mismatch = [f["name"] for f in rec["functions"] if not f["agree"]]
    sg_text = (
        f"symgrad first result median {rec['symgrad_median_s']:.3f} s, numba ready {rec['numba_median_s']:.3f} s"
        if "symgrad_median_s" in rec
        else "symgrad -"
    )
    if rec.get("jax", {}).get("status") == "absent":
        lines.append(f"  {sg_text}; JAX is not installed: no ratios")
    else:
        jax_text = f"JAX median {rec['jax_median_s']:.3f} s" if "jax_median_s" in rec else "JAX -"
        ratio = (
            f"symgrad/JAX first result median {rec['ratio_median']:.2f}, p90 {rec['ratio_p90']:.2f}; "
            f"numba ready median {rec['numba_ratio_median']:.2f}, p90 {rec['numba_ratio_p90']:.2f}"
            if "ratio_median" in rec
            else "symgrad/JAX -"
        )
        lines.append(f"  {sg_text}, {jax_text}; {ratio}")
    if mismatch:
        lines.append(f"  MISMATCH (value differs from numpy): {', '.join(mismatch)}")
    for e in rec["errors"]:
        lines.append(f"  error: {e[:120]}")
    return lines


def table(records):
    cols = [
        "program",
        "lines",
        "cold first",
        "cold numba",
        "warm first",
        "warm numba",
        "numba import",
        "jax build",
        "first/jax",
        "numba/jax",
    ]
    rows = [cols]
    for r in records:
        cold, warm, jx = r["cold"], r["warm"], r["jax"]

        def seconds(info, key="build_s"):
            if info.get("status") != "ok":
                return info.get("status", "-")[:40]
            return f"{info[key]:.3f} s" + ("" if info["agree"] else " (MISMATCH)")

        jax_text = seconds(jx) + (" (scan)" if jx.get("scan") else "")
        rows.append(
            [
                r["program"],
                str(cold.get("lines", "-")),
                seconds(cold),
                seconds(cold, "numba_s"),
                seconds(warm),
                seconds(warm, "numba_s"),
                f"{cold['import_s']:.3f} s" if cold.get("status") == "ok" else "-",
                jax_text,
                f"{r['cold_over_jax']:.2f}" if "cold_over_jax" in r else "-",
                f"{r['cold_numba_over_jax']:.2f}" if "cold_numba_over_jax" in r else "-",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    lines = []
    for j, row in enumerate(rows):
        lines.append(
            "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row))
        )
        if j == 0:
            lines.append("-" * len(lines[0]))
    return lines


def run(names=None, *, repeat=DEFAULT_REPEAT, timeout=600.0, json_path=None, out=print, progress=sys.stderr):
    """Measure each program (each build in its own process), print the table, return the records."""
    names = select(names)
    jax = jax_importable()
    records = []
    for k, name in enumerate(names, 1):
        if progress is not None:
            progress.write(f"\r[{k}/{len(names)}] {name:<8} building ...   ")
            progress.flush()
        if name.split("/")[0] == "small":
            records.append(measure_small(name, repeat=repeat, timeout=timeout, jax=jax))
        else:
            records.append(measure(name, repeat=repeat, timeout=timeout, jax=jax))
    if progress is not None:
        progress.write("\r" + " " * 40 + "\r")
        progress.flush()
    out(
        f"build suite: median of {repeat} run(s) per cell, each build in a fresh process"
        + ("" if jax else "; JAX is not installed")
    )
    programs = [r for r in records if "functions" not in r]
    if programs:
        for line in table(programs):
            out(line)
    for rec in records:
        if "functions" in rec:
            for line in small_lines(rec):
                out(line)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump({"suite": "build", "records": records, "python": sys.version.split()[0]}, fh, indent=1)
    return records
