"""y = x @ W: the backward rule dx = dy @ W.T, dW = x.T @ dy, for one row (1xD) and a batch (NxD).

``sg.vjp`` takes the upstream gradient dy as a symbol of its own, so the
compiled function is exactly the backward pass of the matmul node; the example
prints its source and points at the two lines that are the rule. A product of a
few concrete elements (the 1xD case) is spelled ``_rt.small_matmul(a, b)``, or
``_rt.small_matmul_into(out, a, b)`` when it is an output written into the array the entry
passes: a loop instead of a BLAS call; a product of symbolic size is ``a @ b``.
"""

import re

import numpy as np

import symgrad as sg

D, H = 3, 2
rng = np.random.default_rng(0)

for rows in (1, "N"):
    x = sg.tensor("x", (rows, D))
    W = sg.tensor("W", (D, H))
    dy = sg.tensor("dy", (rows, H))  # the gradient arriving from above y = x @ W
    dx, dW = sg.vjp(x @ W, [x, W], dy)
    backward = sg.compile([dx, dW], inputs=[x, W, dy], name="matmul_backward")

    shape = "1xD" if rows == 1 else "NxD (one compile for every N)"
    print(f"x: {shape}, W: DxH with D={D}, H={H}")
    kernel = backward.source.split("def call")[0]
    # the source's statements, with names bound to a transpose (transpose_W = W.T) read through
    assigned = dict(
        line.split("#")[0].strip().split(" = ", 1)
        for line in kernel.splitlines()
        if " = " in line and not line.lstrip().startswith(("#", "@"))
    )
    products = {}
    for target, rhs in assigned.items():
        pair = re.fullmatch(
            r"(\w+) @ (\w+)|_rt\.small_matmul\((\w+), (\w+)\)|_rt\.small_matmul_into\(\w+, (\w+), (\w+)\)",
            rhs,
        )
        if pair:
            left, right = (p for p in pair.groups() if p)
            products[tuple(assigned.get(operand, operand) for operand in (left, right))] = target
    for number, line in enumerate(kernel.splitlines(), 1):
        for rule, pair in (("dx = dy @ W.T", ("dy", "W.T")), ("dW = x.T @ dy", ("x.T", "dy"))):
            if line.split("#")[0].strip().startswith(f"{products.get(pair)} = "):
                print(f"  line {number:2d}: {line.strip()}   <-- {rule}")
    assert ("dy", "W.T") in products and ("x.T", "dy") in products, products

    for n in [1] if rows == 1 else [1, 5, 64]:
        xv, Wv, dyv = rng.normal(size=(n, D)), rng.normal(size=(D, H)), rng.normal(size=(n, H))
        dx_value, dW_value = backward(xv, Wv, dyv)
        np.testing.assert_allclose(dx_value, dyv @ Wv.T, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(dW_value, xv.T @ dyv, rtol=1e-14, atol=1e-14)
    print("  checked against numpy's dy @ W.T and x.T @ dy")
    print()

print("the batch version, in full:")
print(kernel.rstrip())
