"""A 2-layer MLP with softmax cross-entropy, trained with symgrad gradients on scikit-learn's
bundled handwritten digits (1797 8x8 images, no download), reaching >= 95 % test accuracy.

    pip install 'symgrad[examples]'      # scikit-learn, and matplotlib for the plot
    python examples/digits_mlp.py

Prints loss and accuracy per epoch and, when matplotlib is installed, saves
digits_mlp.png (loss and accuracy curves) in $SYMGRAD_EXAMPLE_OUTDIR or the
current directory.
"""

import os
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import symgrad as sg

QUICK = os.environ.get("SYMGRAD_EXAMPLE_QUICK") == "1"
EPOCHS = 10 if QUICK else 30
HIDDEN, BATCH, LEARNING_RATE, MOMENTUM = 64, 32, 0.05, 0.9

digits = load_digits()
X_train, X_test, y_train, y_test = train_test_split(
    digits.data / 16.0, digits.target, test_size=0.25, stratify=digits.target, random_state=0
)
D, C = X_train.shape[1], 10

# the model: scores = tanh(x @ W1 + b1) @ W2 + b2; loss = mean cross-entropy of integer labels
W1, b1 = sg.tensor("W1", (D, HIDDEN)), sg.tensor("b1", (HIDDEN,))
W2, b2 = sg.tensor("W2", (HIDDEN, C)), sg.tensor("b2", (C,))
x, labels = sg.tensor("x", ("n", D)), sg.tensor("labels", ("n",), dtype="int64")
scores = sg.tanh(x @ W1 + b1) @ W2 + b2
logp = sg.log_softmax(scores, axis=1)
loss = -sg.mean(logp[sg.arange(x.shape[0]), labels])
params = [W1, b1, W2, b2]

start = time.perf_counter()
vg = sg.value_and_grad(loss, wrt=params, inputs=params + [x, labels])
predict = sg.compile(scores, inputs=params + [x], name="scores")
print(f"built the loss gradient and the predictor in {time.perf_counter() - start:.2f} s ({vg.cache_state})")

rng = np.random.default_rng(0)
values = [
    rng.normal(size=(D, HIDDEN)) / np.sqrt(D),
    np.zeros(HIDDEN),
    rng.normal(size=(HIDDEN, C)) / np.sqrt(HIDDEN),
    np.zeros(C),
]
velocity = [np.zeros_like(v) for v in values]


def accuracy(X, y):
    return float(np.mean(np.argmax(predict(*values, X), axis=1) == y))


history = []
start = time.perf_counter()
for epoch in range(1, EPOCHS + 1):
    order = rng.permutation(len(X_train))
    losses = []
    for i in range(0, len(order), BATCH):
        batch = order[i : i + BATCH]
        value, grads = vg(*values, X_train[batch], y_train[batch])
        losses.append(value)
        for v, m, g in zip(values, velocity, grads):
            m *= MOMENTUM
            m -= LEARNING_RATE * g
            v += m
    history.append((float(np.mean(losses)), accuracy(X_train, y_train), accuracy(X_test, y_test)))
    bar = "#" * (20 * epoch // EPOCHS) + "-" * (20 - 20 * epoch // EPOCHS)
    print(
        f"epoch {epoch:2d}/{EPOCHS} [{bar}] loss {history[-1][0]:.4f}  "
        f"train {100 * history[-1][1]:5.1f}%  test {100 * history[-1][2]:5.1f}%  "
        f"({time.perf_counter() - start:.2f} s)"
    )

test_accuracy = history[-1][2]
print(
    f"test accuracy {100 * test_accuracy:.1f}% on {len(X_test)} held-out digits after {EPOCHS} epochs, "
    f"{time.perf_counter() - start:.2f} s of training"
)
assert test_accuracy >= 0.95, f"test accuracy {test_accuracy:.3f} < 0.95"

# the gradient symgrad computed is the true one: central differences on a few weights
check_batch = slice(0, 16)
_, grads = vg(*values, X_train[check_batch], y_train[check_batch])
h = 1e-6
for k, (i, j) in enumerate([(3, 5), (40, 60), (20, 0)]):
    W1_plus, W1_minus = values[0].copy(), values[0].copy()
    W1_plus[i, j] += h
    W1_minus[i, j] -= h
    central = (
        vg(W1_plus, *values[1:], X_train[check_batch], y_train[check_batch])[0]
        - vg(W1_minus, *values[1:], X_train[check_batch], y_train[check_batch])[0]
    ) / (2 * h)
    assert abs(central - grads[0][i, j]) < 1e-7 + 1e-5 * abs(central), (central, grads[0][i, j])
print("dloss/dW1 agrees with central differences")

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is not installed: no plot (pip install matplotlib)")
else:
    losses, train_acc, test_acc = zip(*history)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(range(1, EPOCHS + 1), losses)
    left.set(xlabel="epoch", ylabel="training loss", yscale="log", title="cross-entropy")
    right.plot(range(1, EPOCHS + 1), train_acc, label="train")
    right.plot(range(1, EPOCHS + 1), test_acc, label="test")
    right.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    right.legend()
    fig.tight_layout()
    path = os.path.join(os.environ.get("SYMGRAD_EXAMPLE_OUTDIR", "."), "digits_mlp.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print("saved", path)
