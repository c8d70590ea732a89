"""The numpy backend: plain numpy code, no compiler. A reference for tests and for debugging, and
the first tier of a background numba build (codegen/tiers.py)."""

from .emit import Emitter


class NumpyEmitter(Emitter):
    backend = "numpy"
    runtime_module = "symgrad.codegen.numpy_runtime"
    decorator = None

    def __init__(self, notes=None, rolled=None):
        super().__init__(notes)
        # the twin of a numba kernel whose repeated runs rolled into loops (``NumbaEmitter.rolled``):
        # the same loops, so that the twin is as short as the numba module (Python compiles the
        # text of a 2,000-statement unrolled loop in a tenth of a second) and runs the same steps
        self.rolled = rolled

    def kernel_ir(self, forward, backward, out_name_of, outputs):
        if self.rolled is None:
            return super().kernel_ir(forward, backward, out_name_of, outputs)
        return self.rolled_ir(out_name_of, outputs)
