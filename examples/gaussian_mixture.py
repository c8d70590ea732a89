"""The negative log-likelihood of a 2-component 1-d Gaussian mixture, written in plain numpy
(a log-sum-exp over the components), fitted by gradient descent with symgrad's gradient.

    python examples/gaussian_mixture.py

The gradient is checked against central differences. One of the programs of
`symgrad bench --suite build` (gmm).
"""

import math
import os
import time

import numpy as np

import symgrad as sg

QUICK = os.environ.get("SYMGRAD_EXAMPLE_QUICK") == "1"
N = 400 if QUICK else 2000


def mixture_nll(mu, log_sigma, logits, x):
    log_w = logits - np.log(np.sum(np.exp(logits)))
    z = (x[:, None] - mu[None, :]) / np.exp(log_sigma)[None, :]
    logp = log_w[None, :] - log_sigma[None, :] - 0.5 * math.log(2 * math.pi) - 0.5 * z**2
    m = np.max(logp, axis=1, keepdims=True)
    return -np.sum(m[:, 0] + np.log(np.sum(np.exp(logp - m), axis=1)))


rng = np.random.default_rng(0)
x = np.concatenate([rng.normal(-2.0, 0.5, N // 4), rng.normal(1.5, 1.0, N - N // 4)])
params = [np.array([-0.5, 0.5]), np.zeros(2), np.zeros(2)]

vg = sg.value_and_grad(mixture_nll, argnums=(0, 1, 2))
start = time.perf_counter()
value, grads = vg(*params, x)
print(f"built and called in {time.perf_counter() - start:.2f} s, {vg.source.count(chr(10))} generated lines")
assert np.isclose(value, mixture_nll(*params, x), rtol=1e-12)

h = 1e-6
for k, p in enumerate(params):
    for i in range(2):
        up, down = [q.copy() for q in params], [q.copy() for q in params]
        up[k][i] += h
        down[k][i] -= h
        numeric = (mixture_nll(*up, x) - mixture_nll(*down, x)) / (2 * h)
        assert np.isclose(grads[k][i], numeric, rtol=1e-6, atol=1e-6), (k, i, grads[k][i], numeric)
print("gradient agrees with central differences")

for step in range(300 if QUICK else 1000):
    value, grads = vg(*params, x)
    params = [p - 0.5 / N * g for p, g in zip(params, grads)]
weights = np.exp(params[2]) / np.exp(params[2]).sum()
order = np.argsort(params[0])
print(
    f"means {params[0][order].round(2)}, sigmas {np.exp(params[1][order]).round(2)}, weights {weights[order].round(2)}"
)
print(f"negative log-likelihood per point {value / N:.4f}")
assert np.allclose(params[0][order], [-2.0, 1.5], atol=0.3)
assert np.allclose(weights[order], [0.25, 0.75], atol=0.1)
