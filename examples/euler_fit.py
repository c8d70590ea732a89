"""Fit the rate of an ODE through its integrator: x' = a sin(x), integrated by explicit Euler
steps written as a plain Python loop, with a squared error to an observation at every step.
symgrad differentiates the loop (value_and_grad of the traced function) and gradient descent
recovers the rate the observations were made with.

    python examples/euler_fit.py

One of the programs of `symgrad bench --suite build` (euler: 200 steps).
"""

import math
import os
import time

import numpy as np

import symgrad as sg

QUICK = os.environ.get("SYMGRAD_EXAMPLE_QUICK") == "1"
STEPS, DT, TRUE_RATE = (20, 0.05, 1.3) if QUICK else (200, 0.01, 1.3)


def euler_loss(a, x0, obs):
    x = x0
    loss = 0.0
    for i in range(obs.shape[0]):
        x = x + DT * a * np.sin(x)
        loss = loss + (x - obs[i]) ** 2
    return loss


# observations of the true trajectory from x0 = 0.5, with a little noise
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
assert np.isclose(value, euler_loss(1.0, 0.5, obs), rtol=1e-12)

h = 1e-6
numeric_a = (euler_loss(1.0 + h, 0.5, obs) - euler_loss(1.0 - h, 0.5, obs)) / (2 * h)
numeric_x0 = (euler_loss(1.0, 0.5 + h, obs) - euler_loss(1.0, 0.5 - h, obs)) / (2 * h)
assert np.isclose(da, numeric_a, rtol=1e-6) and np.isclose(dx0, numeric_x0, rtol=1e-6), (da, numeric_a)
print(f"d loss/d a = {da:.6g} (central differences {numeric_a:.6g}), d loss/d x0 = {dx0:.6g}")

# descent on the rate (x0 known): a step against the gradient's sign, halved when the sign
# flips, so the derivative's zero is bracketed and found
a, step, last = 1.0, 0.25, None
for _ in range(60):
    value, (da, _) = vg(a, 0.5, obs)
    if last is not None and np.sign(da) != np.sign(last):
        step /= 2
    a -= step * np.sign(da)
    last = da
print(f"fitted rate {a:.4f} (true {TRUE_RATE}), loss {value:.3g}")
assert abs(a - TRUE_RATE) < 0.01
