"""The numpy backend: plain numpy code, no compiler. A reference for tests and for debugging."""

from .emit import Emitter


class NumpyEmitter(Emitter):
    backend = "numpy"
    runtime_module = "symgrad.codegen.numpy_runtime"
    decorator = None
