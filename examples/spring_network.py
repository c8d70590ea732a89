"""Fit the stiffnesses of a chain of nonlinear springs to the positions it settles at.

A chain of hardening springs (tension k e + beta e^3 for an extension e) holds free nodes
between two walls; known loads push on the nodes. For each load case the nodes' steady state
x*(k) solves the force balance F(x, k, load) = 0, a nonlinear system with no closed form:
``sg.root`` solves it with SciPy when the compiled loss runs, and the gradient of the misfit with
respect to the log-stiffnesses comes from the implicit function theorem (one linear solve with
the Jacobian of the balance per load case), never from differentiating the solver's iterations.
``scipy.optimize.minimize`` then recovers the stiffnesses the "measurements" were made with.

    python examples/spring_network.py
"""

import os
import time

import numpy as np
import scipy.optimize

import symgrad as sg

QUICK = os.environ.get("SYMGRAD_EXAMPLE_QUICK") == "1"
NODES, CASES = (4, 2) if QUICK else (8, 3)
LENGTH, BETA = 1.0, 4.0
REST = LENGTH / (NODES + 1) * 0.8  # every spring is stretched between the walls

rng = np.random.default_rng(0)
TRUE_LOG_K = rng.normal(0.0, 0.4, NODES + 1)
LOADS = rng.normal(0.0, 0.3, (CASES, NODES))
GUESS = np.linspace(0.0, LENGTH, NODES + 2)[1:-1]  # evenly spaced nodes


def balance(x, log_k, load):
    """The net force on every free node (zero at the steady state)."""
    pos = np.concatenate([np.zeros(1), x, np.full(1, LENGTH)])
    e = pos[1:] - pos[:-1] - REST
    tension = np.exp(log_k) * e + BETA * e**3
    return tension[1:] - tension[:-1] + load


def misfit(log_k, measured):
    total = 0.0
    for case in range(CASES):
        x = sg.root(balance, GUESS, log_k, LOADS[case])  # solved by SciPy at every call
        total = total + np.sum((x - measured[case]) ** 2)
    return total


def scipy_steady_state(log_k, load):
    """The same steady state without symgrad: SciPy on the balance written in numpy."""
    return scipy.optimize.root(balance, GUESS, args=(log_k, load), tol=1e-13).x


measured = np.array([scipy_steady_state(TRUE_LOG_K, load) for load in LOADS])


def scipy_misfit(log_k):
    return sum(np.sum((scipy_steady_state(log_k, LOADS[c]) - measured[c]) ** 2) for c in range(CASES))


# The time of a call is the solver's (SciPy, calling the residual and its Jacobian, compiled from
# the balance's graph), so the numpy backend, which builds in a fraction of a second, runs as fast
# here as the numba one (which spends its half minute compiling a kernel that is not the hot part).
vg = sg.value_and_grad(misfit, backend="numpy")
start = time.perf_counter()
log_k0 = np.zeros(NODES + 1)
value, grad = vg(log_k0, measured)
print(f"{NODES} nodes, {CASES} load cases: built and called in {time.perf_counter() - start:.2f} s")

# the gradient against central differences of the whole solve-then-evaluate pipeline
h = 1e-6
numeric = np.array(
    [(scipy_misfit(log_k0 + h * e) - scipy_misfit(log_k0 - h * e)) / (2 * h) for e in np.eye(NODES + 1)]
)
assert np.isclose(value, scipy_misfit(log_k0), rtol=1e-9)
assert np.allclose(grad, numeric, rtol=1e-5, atol=1e-9), (grad, numeric)
print(f"misfit {value:.4g}, |gradient - central differences| = {np.max(np.abs(grad - numeric)):.2g}")

start = time.perf_counter()
fit = scipy.optimize.minimize(vg, log_k0, args=(measured,), jac=True, method="BFGS", options={"gtol": 1e-12})
print(
    f"BFGS: {fit.nit} iterations, {fit.nfev} calls (each solving {CASES} steady states) "
    f"in {time.perf_counter() - start:.2f} s; misfit {fit.fun:.2g}"
)
print("stiffness  true   fitted")
for true, fitted in zip(np.exp(TRUE_LOG_K), np.exp(fit.x)):
    print(f"          {true:6.3f} {fitted:7.3f}")
assert np.allclose(fit.x, TRUE_LOG_K, atol=1e-4), (fit.x, TRUE_LOG_K)
