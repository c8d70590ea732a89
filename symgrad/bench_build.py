"""``symgrad bench --suite build``: how long a new user waits for a program's value and gradient.

The programs are the ones issue 19 measured, each written as ordinary numpy code and traced
(``sg.value_and_grad(fn, argnums)``): the 784-128-10 MLP at batch 64, a 2-component Gaussian
mixture's negative log-likelihood, an RNN of hidden size 8 over T = 10, 20 and 50 steps and an
Euler integrator of 200 steps with a squared error to observations (both Python loops), the seed
``x*y + sin(x)`` and ``rosen``.

Each build runs in a process of its own: ``cold`` with an empty cache directory, ``warm`` in a
second process with the cache the cold one filled. ``build`` is the seconds from the first call
of the traced function to its return (trace, differentiation, code generation, numba's compile
or its cache load), after ``import symgrad`` and numba's own start-up (timed apart, as ``import``).
JAX's ``jax.jit(jax.value_and_grad(f))`` first call is timed beside it when JAX is importable (the
loops with ``lax.scan``, as a JAX user writes them), in a process of its own, with x64 enabled.
Each number is the median over ``--repeat`` runs (default 3).

    symgrad bench --suite build                  # every program
    symgrad bench --suite build seed rnn/10      # some ("rnn" selects every T)
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

NAMES = ["seed", "rosen", "mlp", "gmm", "rnn/10", "rnn/20", "rnn/50", "euler"]
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


def select(names):
    if not names:
        return list(NAMES)
    chosen = []
    for n in names:
        matches = [m for m in NAMES if m == n or m.split("/")[0] == n]
        if not matches and n.split("/")[0] in ("rnn", "rnn_scan"):
            matches = [n]  # another T, e.g. rnn/100
        if not matches:
            raise SystemExit(f"unknown build program {n!r}; choose from {', '.join(NAMES)}")
        chosen += [m for m in matches if m not in chosen]
    return chosen


# ---------------------------------------------------------------- one build, in this process


def _flat(tree):
    if isinstance(tree, (tuple, list)):
        return [leaf for t in tree for leaf in _flat(t)]
    return [np.asarray(tree, dtype=np.float64)]


def build_case(name, system):
    """Import ``system`` (symgrad or jax), build the program's value and gradient, call it once:
    a JSON-able record with the seconds, generated lines (symgrad) and the value and gradient."""
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
        (record,) = vg.compiles
        extra = {"lines": vg.source.count("\n"), "cache": record["cache"], "phases": record["phases"]}
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
        extra = {"scan": program.scan is not None}
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
    env = dict(os.environ, SYMGRAD_CACHE_DIR=cache)
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
                "import_s": statistics.median(r["import_s"] for r in ok),
                "agree": all(r["agree"] for r in ok),
                "runs": len(ok),
            }
            for key in ("lines", "cache", "phases", "scan", "value", "grad_norm"):
                if key in ok[-1]:
                    rec[kind][key] = ok[-1][key]
    cold, jx = rec["cold"], rec["jax"]
    if cold.get("status") == "ok" and jx.get("status") == "ok":
        rec["cold_over_jax"] = cold["build_s"] / jx["build_s"]
        # the two systems' value and gradient agree (a check of the programs, not of the timing)
        same = all(math.isclose(cold[k], jx[k], rel_tol=1e-6, abs_tol=1e-9) for k in ("value", "grad_norm"))
        jx["agree"] = jx["agree"] and same
    return rec


def table(records):
    cols = ["program", "lines", "cold build", "warm build", "numba import", "jax build", "cold/jax"]
    rows = [cols]
    for r in records:
        cold, warm, jx = r["cold"], r["warm"], r["jax"]

        def seconds(info):
            if info.get("status") != "ok":
                return info.get("status", "-")[:40]
            return f"{info['build_s']:.3f} s" + ("" if info["agree"] else " (MISMATCH)")

        jax_text = seconds(jx) + (" (scan)" if jx.get("scan") else "")
        rows.append(
            [
                r["program"],
                str(cold.get("lines", "-")),
                seconds(cold),
                seconds(warm),
                f"{cold['import_s']:.3f} s" if cold.get("status") == "ok" else "-",
                jax_text,
                f"{r['cold_over_jax']:.2f}" if "cold_over_jax" in r else "-",
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
        records.append(measure(name, repeat=repeat, timeout=timeout, jax=jax))
    if progress is not None:
        progress.write("\r" + " " * 40 + "\r")
        progress.flush()
    out(
        f"build suite: median of {repeat} run(s) per cell, each build in a fresh process"
        + ("" if jax else "; JAX is not installed")
    )
    for line in table(records):
        out(line)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump({"suite": "build", "records": records, "python": sys.version.split()[0]}, fh, indent=1)
    return records
