"""The chain rule on z = x*y + sin(x): dz/dx = y + cos(x), dz/dy = x.

Four ways to the same numbers: symgrad's reverse mode (one backward pass gives
both partials), forward mode (one pass per input, seeded with a tangent),
SymPy's diff, and central differences. Then what symgrad generated: the
derivative as maths (LaTeX) and as the Python source numba compiled.
"""

import numpy as np
import sympy

import symgrad as sg

x, y = sg.scalars("x y")
z = x * y + sg.sin(x)
at = {"x": 0.7, "y": -1.3}
by_hand = (at["y"] + np.cos(at["x"]), at["x"])  # y + cos(x), x
print("z =", z)

# reverse mode: one pass from z back to every input
gx, gy = sg.grad(z, [x, y])
print("reverse mode:  dz/dx =", gx, "   dz/dy =", gy)
vg = sg.value_and_grad(z, wrt=[x, y])
value, reverse = vg(**at)
print(f"  at x={at['x']}, y={at['y']}: z = {value:.6f}, gradient = ({reverse[0]:.6f}, {reverse[1]:.6f})")

# forward mode: push a tangent (dx, dy) from the inputs to z; one pass per input direction
tangent_x = sg.jvp(z, [x, y], [1.0, 0.0])
tangent_y = sg.jvp(z, [x, y], [0.0, 1.0])
print("forward mode:  tangent (1, 0) ->", tangent_x, "   tangent (0, 1) ->", tangent_y)
forward = tuple(float(v) for v in sg.compile([tangent_x, tangent_y], inputs=[x, y])(**at))
print(f"  at the same point: ({forward[0]:.6f}, {forward[1]:.6f})")

# SymPy differentiates the same expression independently
zs = sg.to_sympy(z)
xs, ys = sympy.symbols("x y")
for name, ours, symbol in (("dz/dx", gx, xs), ("dz/dy", gy, ys)):
    theirs = sympy.diff(zs, symbol)
    assert sympy.simplify(sg.to_sympy(ours) - theirs) == 0, (name, ours, theirs)
    print(f"sympy.diff:    {name} = {theirs}   (symgrad's agrees)")

# central differences: (f(x+h) - f(x-h)) / 2h, a check with error ~h^2
f = sg.compile(z)
h = 1e-5
central = (
    (f(at["x"] + h, at["y"]) - f(at["x"] - h, at["y"])) / (2 * h),
    (f(at["x"], at["y"] + h) - f(at["x"], at["y"] - h)) / (2 * h),
)
print(
    f"central differences (h={h}): ({central[0]:.6f}, {central[1]:.6f}), "
    f"error {max(abs(c - r) for c, r in zip(central, reverse)):.1e}"
)

np.testing.assert_allclose(reverse, by_hand, rtol=0, atol=1e-15)
np.testing.assert_allclose(forward, by_hand, rtol=0, atol=1e-15)
np.testing.assert_allclose(central, by_hand, rtol=0, atol=1e-9)

print()
print("as maths:  dz/dx =", sg.latex(gx), "   dz/dy =", sg.latex(gy))
print()
print("the generated source (forward part, then backward part):")
print(vg.source)
print(vg)
