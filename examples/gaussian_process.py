"""Fit a Gaussian process's kernel to noisy data by maximum marginal likelihood.

The negative log marginal likelihood is written once, as a statistician writes it in numpy and
SciPy (a Cholesky factor, ``scipy.linalg.cho_solve``, ``np.linalg.slogdet``); symgrad traces it
into a compiled value-and-gradient, and ``scipy.optimize.minimize`` (L-BFGS-B) fits the three
log hyperparameters (signal amplitude, length scale, noise) through ``vg.scipy()``.

Checks: the gradient against central differences of the same numpy function, and the optimum
against SciPy's own fit of that function with finite-difference gradients.
"""

import os

import numpy as np
import scipy.linalg
import scipy.optimize

import symgrad as sg

QUICK = os.environ.get("SYMGRAD_EXAMPLE_QUICK") == "1"
N = 40 if QUICK else 300


def negative_log_marginal_likelihood(log_params, x, y):
    """-log p(y | x) for a zero-mean GP with an RBF kernel plus observation noise."""
    params = np.exp(log_params)
    amplitude, length, noise = params[0], params[1], params[2]
    sq_dist = (x[:, None] - x[None, :]) ** 2
    k = amplitude * np.exp(-0.5 * sq_dist / length**2) + (noise + 1e-8) * np.eye(x.shape[0])
    low = np.linalg.cholesky(k)
    alpha = scipy.linalg.cho_solve((low, True), y)
    return 0.5 * y @ alpha + 0.5 * np.linalg.slogdet(k)[1] + 0.5 * x.shape[0] * np.log(2 * np.pi)


rng = np.random.default_rng(0)
x = np.sort(rng.uniform(0, 10, N))
y = np.sin(x) + 0.5 * np.sin(3 * x) + 0.2 * rng.normal(size=N)
start = np.log(np.array([1.0, 1.0, 0.1]))

vg = sg.value_and_grad(negative_log_marginal_likelihood)  # traced on the first call
value, grad = vg(start, x, y)
print(f"n = {N}: -log p(y) = {value:.4f} at the start, gradient {np.round(grad, 4)}")

# the gradient against central differences of the plain numpy function
h = 1e-6
numeric = np.array(
    [
        (
            negative_log_marginal_likelihood(start + h * e, x, y)
            - negative_log_marginal_likelihood(start - h * e, x, y)
        )
        / (2 * h)
        for e in np.eye(3)
    ]
)
np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)

# fit: the compiled function for these arguments, with x and y held fixed
problem = vg.compiled_for(start, x, y).scipy(x, y)
fit = scipy.optimize.minimize(problem.fun, start, jac=True, method="L-BFGS-B")
amplitude, length, noise = np.exp(fit.x)
print(
    f"fitted in {fit.nit} iterations: amplitude {amplitude:.3f}, length scale {length:.3f}, "
    f"noise variance {noise:.4f} (true 0.04); -log p(y) = {fit.fun:.4f}"
)
assert fit.success

# SciPy alone, with finite-difference gradients, reaches the same optimum
reference = scipy.optimize.minimize(negative_log_marginal_likelihood, start, args=(x, y), method="L-BFGS-B")
print(f"SciPy with finite differences: -log p(y) = {reference.fun:.4f} in {reference.nfev} evaluations")
assert fit.fun <= reference.fun + 1e-6

# the posterior mean at new points, from the fitted kernel
grid = np.linspace(0, 10, 7)
k = amplitude * np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / length**2) + (noise + 1e-8) * np.eye(N)
k_star = amplitude * np.exp(-0.5 * (grid[:, None] - x[None, :]) ** 2 / length**2)
mean = k_star @ scipy.linalg.cho_solve(scipy.linalg.cho_factor(k, lower=True), y)
truth = np.sin(grid) + 0.5 * np.sin(3 * grid)
print("posterior mean vs the noise-free curve:", np.round(mean, 2), np.round(truth, 2))
assert np.max(np.abs(mean - truth)) < 0.5
