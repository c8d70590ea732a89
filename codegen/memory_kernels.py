"""How the numba backend's kernels allocate the arrays their fused loops write.

numba takes an array's memory from ``malloc``. glibc's malloc serves an allocation of 32 MiB or
more (its largest mmap threshold) with a fresh ``mmap`` every call, whose first touch faults
once per 4 KiB page (a 51 MB per-example gradient: 12,500 faults, about half its kernel's
time); a smaller one comes back from the heap after the first call, already mapped. numpy asks
the kernel for huge pages on its large allocations (``madvise(MADV_HUGEPAGE)``), so an array
numpy makes faults once per 2 MiB. ``empty`` and ``zeros`` do the same for the generated code,
from ``HUGE_BYTES``: the advice is given before the first write; a smaller array costs one
comparison more than ``np.empty`` (advising heap memory that is already mapped would only
cost a system call). Outside Linux the advice is skipped.

That the heap keeps the smaller arrays mapped holds only with ``keep_freed_memory`` below:
glibc's thresholds move by themselves, and a kernel that frees several arrays of some MiB
together (a reverse pass's temporaries) would give them back to the system on every call.
"""

import ctypes
import os
import platform
import sys

import numba
import numpy as np
from numba.core import types

_JIT = dict(cache=True, nogil=True, error_model="numpy")

HUGE_BYTES = 1 << 25  # 32 MiB: glibc's largest mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX, 64-bit)
_PAGE = 4096
_MADV_HUGEPAGE = 14  # Linux <sys/mman.h>
_LINUX = sys.platform.startswith("linux")
# libc's madvise(addr, length, advice), linked by name (a kernel calling it stays cacheable)
_madvise = types.ExternalFunction("madvise", types.intc(types.uintp, types.uintp, types.intc))


@numba.njit(**_JIT)
def advise(a):
    """``a`` (just allocated, not yet written) with its whole pages advised to be huge when it
    holds HUGE_BYTES or more."""
    if _LINUX:
        nbytes = a.size * a.itemsize
        if nbytes >= HUGE_BYTES:
            start = (a.ctypes.data + _PAGE - 1) & ~(_PAGE - 1)
            _madvise(start, a.ctypes.data + nbytes - start, _MADV_HUGEPAGE)
    return a


@numba.njit(**_JIT)
def empty(shape, dtype):
    """np.empty(shape, dtype), on huge pages when large."""
    return advise(np.empty(shape, dtype=dtype))


@numba.njit(**_JIT)
def zeros(shape, dtype):
    """np.zeros(shape, dtype), on huge pages when large (advised before the zeros are written)."""
    a = advise(np.empty(shape, dtype=dtype))
    a.fill(0)
    return a


# ---------------------------------------------------------------- the heap keeps freed memory

KEEP_BYTES = 1 << 27  # 128 MiB: free memory the heap's top keeps mapped (glibc's trim threshold)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_memory():
    """Fix glibc's malloc thresholds (once per process; True when set): arrays under HUGE_BYTES
    come from the heap, and up to KEEP_BYTES freed at its top stay mapped.

    glibc's own thresholds are dynamic: after an allocation of s bytes (under 32 MiB) was served
    by mmap and freed, arrays up to s come from the heap and free memory at its top over 2 s is
    given back to the system. A kernel's temporaries of a few MiB each (a 4096 x 64 float64
    product: 2 MiB), freed together when it returns, pass 2 s at once: the heap shrinks after
    every call and the next call faults on each 4 KiB page of them again (bilinear/4096's
    value-and-grad: about a thousand faults a call, in a virtual machine several times its
    arithmetic). Fixed thresholds turn the dynamic ones off. Skipped outside glibc and when the
    process set its own (the MALLOC_*_ environment variables, GLIBC_TUNABLES)."""
    if not _LINUX or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in _USER_SETTINGS) or "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, HUGE_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES))


HEAP_KEPT = keep_freed_memory()  # set when the numba backend's runtime is first imported
