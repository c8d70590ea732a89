"""The ODE fit of examples/euler_fit.py with the integrator written as ``sg.scan``: x' = a sin(x)
by explicit Euler steps, a squared error to an observation at every step. The loop stays one
loop in the generated code (its length does not change the build), and gradient descent
recovers the rate the observations were made with.

    python examples/euler_scan.py
"""

import math
import os
import time

import numpy as np

import symgrad as sg

QUICK = os.environ.get("SYMGRAD_EXAMPLE_QUICK") == "1"
STEPS, DT, TRUE_RATE = (20, 0.05, 1.3) if QUICK else (200, 0.01, 1.3)


def euler_loss(a, x0, obs):
    def step(x, observed):
        x = x + DT * a * np.sin(x)
        return x, (x - observed) ** 2

    _, errors = sg.scan(step, x0, obs)
    return np.sum(errors)


def euler_loss_loop(a, x0, obs):
    """The same loss as a plain Python loop (euler_fit.py's)."""
    x, loss = x0, 0.0
    for i in range(obs.shape[0]):
        x = x + DT * a * np.sin(x)
        loss = loss + (x - obs[i]) ** 2
    return loss


rng = np.random.default_rng(0)
x, obs = 0.5, np.empty(STEPS)
for i in range(STEPS):
    x = x + DT * TRUE_RATE * math.sin(x)
    obs[i] = x + 1e-4 * rng.normal()

vg = sg.value_and_grad(euler_loss, argnums=(0, 1))
start = time.perf_counter()
value, (da, dx0) = vg(1.0, 0.5, obs)
print(
    f"{STEPS} steps: built and called in {time.perf_counter() - start:.2f} s, {vg.source.count(chr(10))} generated lines"
)
assert np.isclose(value, euler_loss_loop(1.0, 0.5, obs), rtol=1e-12)

h = 1e-6
numeric_a = (euler_loss_loop(1.0 + h, 0.5, obs) - euler_loss_loop(1.0 - h, 0.5, obs)) / (2 * h)
numeric_x0 = (euler_loss_loop(1.0, 0.5 + h, obs) - euler_loss_loop(1.0, 0.5 - h, obs)) / (2 * h)
assert np.isclose(da, numeric_a, rtol=1e-6) and np.isclose(dx0, numeric_x0, rtol=1e-6), (da, numeric_a)
print(f"d loss/d a = {da:.6g} (central differences {numeric_a:.6g}), d loss/d x0 = {dx0:.6g}")

a, step, last = 1.0, 0.25, None
for _ in range(60):
    value, (da, _) = vg(a, 0.5, obs)
    if last is not None and np.sign(da) != np.sign(last):
        step /= 2
    a -= step * np.sign(da)
    last = da
print(f"fitted rate {a:.4f} (true {TRUE_RATE}), loss {value:.3g}")
assert abs(a - TRUE_RATE) < 0.01
