"""y = x @ W: the backward rule dx = dy @ W.T, dW = x.T @ dy, for one row (1xD) and a batch (NxD).

``sg.vjp`` takes the upstream gradient dy as a symbol of its own, so the
compiled function is exactly the backward pass of the matmul node; the example
prints its source and points at the two lines that are the rule.
"""

import numpy as np

import symgrad as sg

D, H = 3, 2
rng = np.random.default_rng(0)

for rows in (1, "N"):
    x = sg.tensor("x", (rows, D))
    W = sg.tensor("W", (D, H))
    dy = sg.tensor("dy", (rows, H))      # the gradient arriving from above y = x @ W
    dx, dW = sg.vjp(x @ W, [x, W], dy)
    backward = sg.compile([dx, dW], inputs=[x, W, dy], name="matmul_backward")

    shape = "1xD" if rows == 1 else "NxD (one compile for every N)"
    print(f"x: {shape}, W: DxH with D={D}, H={H}")
    kernel = backward.source.split("def call")[0]
    for number, line in enumerate(kernel.splitlines(), 1):
        if " @ " in line:
            rule = "dx = dy @ W.T" if "dy @" in line else "dW = x.T @ dy"
            print(f"  line {number:2d}: {line.strip()}   <-- {rule}")
    # the source's statements, with names bound to a transpose (transpose_W = W.T) read through
    assigned = dict(line.split("#")[0].strip().split(" = ", 1) for line in kernel.splitlines()
                    if " = " in line and not line.lstrip().startswith(("#", "@")))
    products = {tuple(assigned.get(operand, operand) for operand in rhs.split(" @ "))
                for rhs in assigned.values() if rhs.count(" @ ") == 1}
    assert ("dy", "W.T") in products and ("x.T", "dy") in products, products

    for n in ([1] if rows == 1 else [1, 5, 64]):
        xv, Wv, dyv = rng.normal(size=(n, D)), rng.normal(size=(D, H)), rng.normal(size=(n, H))
        dx_value, dW_value = backward(xv, Wv, dyv)
        np.testing.assert_allclose(dx_value, dyv @ Wv.T, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(dW_value, xv.T @ dyv, rtol=1e-14, atol=1e-14)
    print("  checked against numpy's dy @ W.T and x.T @ dy")
    print()

print("the batch version, in full:")
print(kernel.rstrip())
