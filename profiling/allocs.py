"""Count gross Python allocations: every call into the PyMem_* / PyObject_* allocators.

`sys.getallocatedblocks()` and tracemalloc report memory that is live, not how much was
allocated and freed along the way. This module counts that churn, for the benchmark's
`py_allocs_per_tick` figure::

    from profiling.allocs import AllocationCounter, available

    ok, reason = available()
    with AllocationCounter() as counter:     # compiles the hooks on first use
        before = counter.count
        run_one_tick()
        allocs = counter.count - before

What is counted
---------------
`count` is the number of calls made, while the counter is installed, to the ``malloc``,
``calloc`` and ``realloc`` entries of the ``PYMEM_DOMAIN_MEM`` (``PyMem_Malloc`` & co.) and
``PYMEM_DOMAIN_OBJ`` (``PyObject_Malloc`` & co.: every object that is not taken from a free
list) allocators. Every ``realloc`` call counts once, whether it grows, shrinks, moves or
starts from NULL. Calls to ``free`` are not in `count`; `counts()` reports them apart, with
the other seven numbers per domain and entry.

Not counted, by design or by what the interpreter does:

- ``PYMEM_DOMAIN_RAW`` (``PyMem_RawMalloc``), which may be called without the GIL, and
  plain C ``malloc``. numpy's array data buffers (its default handler calls ``malloc``), its
  dims/strides cache (``PyMem_RawMalloc``) and numba's NRT (every array a jitted function
  creates, and the meminfo made for each array passed into a jitted call) go there, so
  none of them is counted. The ``ndarray`` object itself is (``PyObject_Malloc``).
- Objects that CPython hands out from a free list and never asks the allocator for. In
  3.11 that includes floats, tuples shorter than 20, the headers of lists and dicts (their
  item storage is counted), function frames (a per-thread data stack) and small ints
  (-5..256): a loop that makes and drops one float per iteration counts about 0. The count
  is allocator traffic, not "objects created". Examples of what it does see: each new
  ndarray object (1 block); a ufunc given a Python or numpy scalar operand, even with
  ``out=`` (1 block per call, numpy 2.4); ints above 256, e.g. from ``range`` past 256.
- Reading `count` while installed allocates up to 4 blocks itself (int objects; none while
  the counts are below 257, CPython's cached small ints): the ``counter_read`` figure of
  ``python -m profiling.allocs``. Take it off, or compare figures measured the same way.

Other threads: there is one counter, not one per thread. Every thread that allocates
through these two domains while the counter is installed is counted. They all hold the GIL
when they do (the C API requires it for these domains), so the plain, non-atomic
increment loses nothing; an extension that breaks that rule could lose counts, not memory.

How it works
------------
`install()` reads the current allocator of each domain with ``PyMem_GetAllocator`` and
sets, with ``PyMem_SetAllocator``, four hook functions per domain: ``malloc``, ``calloc``,
``realloc`` and ``free``. They are numba ``@cfunc``s (nopython C callbacks, no Python
object, no GIL, no NRT, no exception path: `_hook_ir_calls` lists what they call), and
each one increments its own counter word and forwards, through a ctypes function pointer
compiled in, to the original function with the original ``ctx``. The allocator's ``ctx``
pointer is our own block of words (one 64-byte line per domain: malloc, calloc, realloc,
free counts, then the original ``ctx``), so a non-NULL original ``ctx`` (PYTHONMALLOC=debug,
``-X dev``, another library's hook) is passed on unchanged: all of these are supported.
Every block allocated while installed was allocated by the original function and is freed
by it (directly after `uninstall()`, through the ``free`` hook before), so memory never
crosses allocators.

Safety rules the code keeps:

- the hooks are compiled before anything is installed; the ctypes pointers they hold make
  them impossible to cache on disk, hence the compile on first `install()` in a process
  (about 0.2 s here once numba is imported; later installs reuse them);
- install and uninstall run with the GIL held (``ctypes.pythonapi`` keeps it during each
  call), under a module lock; only one counter may be installed at a time (nested or
  concurrent `install()` raises);
- `uninstall()` puts back the saved allocators only if ours are still the current ones; if
  something was hooked on top (``tracemalloc.start()`` while installed), it raises and
  leaves everything in place, since removing ours would cut that hook out of the chain;
- the counter blocks (from ``PyMem_RawCalloc``) and the compiled hooks are never freed, so
  a hook that somebody saved and calls later, or one still set while the interpreter shuts
  down, never touches freed memory; an ``atexit`` handler uninstalls a counter left
  installed;
- it refuses (`available()` says why) when tracemalloc is tracing, since
  ``tracemalloc.stop()`` would silently drop our hooks, on free-threaded builds, and when
  numba or the C API entry points are missing.

Measure the overhead on this machine with ``python -m profiling.allocs``.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import platform
import sys
import sysconfig
import threading
import time
from itertools import repeat

PYMEM_DOMAIN_MEM = 1
PYMEM_DOMAIN_OBJ = 2
DOMAINS = (("mem", PYMEM_DOMAIN_MEM), ("obj", PYMEM_DOMAIN_OBJ))
ENTRIES = ("malloc", "calloc", "realloc", "free")

_SLOT_CTX = len(ENTRIES)       # word after the four counts: the original allocator's ctx
_STRIDE = 8                    # words per domain: one 64-byte line each
_WORDS = _STRIDE * len(DOMAINS)
_WORD = ctypes.sizeof(ctypes.c_size_t)


class _PyMemAllocatorEx(ctypes.Structure):
    """``PyMemAllocatorEx``: a context pointer and four function pointers."""

    _fields_ = [("ctx", ctypes.c_void_p), ("malloc", ctypes.c_void_p),
                ("calloc", ctypes.c_void_p), ("realloc", ctypes.c_void_p),
                ("free", ctypes.c_void_p)]

    def key(self) -> tuple[int, int, int, int, int]:
        return (self.ctx or 0, self.malloc or 0, self.calloc or 0, self.realloc or 0,
                self.free or 0)


# Prototypes of the original functions as the hooks call them. ctx is passed as size_t, an
# integer the width of a pointer: the hooks keep the original ctx in a word of their block.
_MALLOC_T = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t)
_CALLOC_T = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
                             ctypes.c_size_t)
_REALLOC_T = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                              ctypes.c_size_t)
_FREE_T = ctypes.CFUNCTYPE(None, ctypes.c_size_t, ctypes.c_void_p)

_lock = threading.Lock()
_active: AllocationCounter | None = None
_hooks: dict[tuple[int, int, int, int], tuple] = {}   # never emptied: see the docstring
_atexit_registered = False


@functools.cache
def _api():
    """ctypes.pythonapi with the prototypes this module uses (PyDLL: calls keep the GIL)."""
    api = ctypes.pythonapi
    api.PyMem_GetAllocator.argtypes = [ctypes.c_int, ctypes.POINTER(_PyMemAllocatorEx)]
    api.PyMem_GetAllocator.restype = None
    api.PyMem_SetAllocator.argtypes = [ctypes.c_int, ctypes.POINTER(_PyMemAllocatorEx)]
    api.PyMem_SetAllocator.restype = None
    api.PyMem_RawCalloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    api.PyMem_RawCalloc.restype = ctypes.c_void_p
    return api


def _get_allocator(domain: int) -> _PyMemAllocatorEx:
    allocator = _PyMemAllocatorEx()
    _api().PyMem_GetAllocator(domain, ctypes.byref(allocator))
    return allocator


def available() -> tuple[bool, str]:
    """Whether a counter can be installed here and now: (True, "") or (False, reason)."""
    if platform.python_implementation() != "CPython":
        return False, f"needs CPython's allocator API, not {platform.python_implementation()}"
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return False, ("free-threaded build: the MEM/OBJ allocators are called without a "
                       "GIL and the counter's increments are not atomic")
    api = ctypes.pythonapi
    for name in ("PyMem_GetAllocator", "PyMem_SetAllocator", "PyMem_RawCalloc"):
        if not hasattr(api, name):
            return False, f"the C API has no {name}"
    try:
        import numba  # noqa: F401
    except ImportError as exc:
        return False, f"numba is needed to compile the hooks: {exc}"
    import tracemalloc
    if tracemalloc.is_tracing():
        return False, ("tracemalloc is tracing: it hooks the same allocators, and "
                       "tracemalloc.stop() would silently remove the counter; stop it first")
    if _active is not None:
        return False, "an AllocationCounter is already installed (nesting is not supported)"
    return True, ""


def _compile_hooks(original: _PyMemAllocatorEx) -> tuple:
    """numba cfuncs (malloc, calloc, realloc, free) that count, then call `original`'s.

    Each takes our block as ctx (uintp*), increments the word of its entry and forwards
    with the original ctx read from the block. Kept forever in `_hooks`, keyed by the four
    original functions (MEM and OBJ share them in a release build; only ctx differs).
    """
    key = original.key()[1:]
    if key in _hooks:
        return _hooks[key]
    from numba import cfunc, types

    orig_malloc = _MALLOC_T(original.malloc)
    orig_calloc = _CALLOC_T(original.calloc)
    orig_realloc = _REALLOC_T(original.realloc)
    orig_free = _FREE_T(original.free)
    ctx_t = types.CPointer(types.uintp)
    i_malloc, i_calloc, i_realloc, i_free = range(4)
    i_ctx = _SLOT_CTX

    @cfunc(types.voidptr(ctx_t, types.uintp))
    def hook_malloc(ctx, size):
        ctx[i_malloc] += 1
        return orig_malloc(ctx[i_ctx], size)

    @cfunc(types.voidptr(ctx_t, types.uintp, types.uintp))
    def hook_calloc(ctx, nelem, elsize):
        ctx[i_calloc] += 1
        return orig_calloc(ctx[i_ctx], nelem, elsize)

    @cfunc(types.voidptr(ctx_t, types.voidptr, types.uintp))
    def hook_realloc(ctx, ptr, new_size):
        ctx[i_realloc] += 1
        return orig_realloc(ctx[i_ctx], ptr, new_size)

    @cfunc(types.void(ctx_t, types.voidptr))
    def hook_free(ctx, ptr):
        ctx[i_free] += 1
        orig_free(ctx[i_ctx], ptr)

    # The ctypes objects must outlive the machine code that holds their addresses.
    hooks = (hook_malloc, hook_calloc, hook_realloc, hook_free,
             (orig_malloc, orig_calloc, orig_realloc, orig_free))
    _hooks[key] = hooks
    return hooks


def _hook_ir_calls() -> list[str]:
    """Every LLVM `call` / `declare` line in every compiled hook (for tests and review).

    A safe hook has exactly two calls: the cfunc wrapper calling the hook's body, and the
    body's indirect call to the original function; no Py*, NRT_* or GIL symbol.
    """
    lines = []
    for hooks in _hooks.values():
        for hook in hooks[:4]:
            lines += [line.strip() for line in hook.inspect_llvm().splitlines()
                      if " call " in line or line.startswith("declare")]
    return lines


def _uninstall_at_exit() -> None:
    counter = _active
    if counter is not None:
        try:
            counter.uninstall()
        except RuntimeError:
            pass  # someone hooked on top; the blocks and hooks stay valid regardless


class AllocationCounter:
    """Counts calls to the MEM and OBJ allocators while installed (see the module docs).

    One counter can be installed at a time; `install()` zeroes the counts, `uninstall()`
    freezes them, and they stay readable after. Use it as a context manager or call
    `install()` / `uninstall()` from one thread.
    """

    def __init__(self) -> None:
        self._block = 0                    # address of _WORDS size_t words, never freed
        self._words = None
        self._saved: dict[int, _PyMemAllocatorEx] = {}
        self._ours: dict[int, _PyMemAllocatorEx] = {}

    @property
    def installed(self) -> bool:
        return _active is self

    @property
    def count(self) -> int:
        """malloc + calloc + realloc calls, MEM and OBJ domains, since `install()`."""
        w = self._words
        if w is None:
            return 0
        return w[0] + w[1] + w[2] + w[_STRIDE] + w[_STRIDE + 1] + w[_STRIDE + 2]

    def counts(self) -> dict[str, int]:
        """Calls per domain and entry since `install()`: {"mem.malloc": n, ..., "obj.free": n}."""
        w = self._words
        return {f"{name}.{entry}": (w[d * _STRIDE + e] if w is not None else 0)
                for d, (name, _) in enumerate(DOMAINS) for e, entry in enumerate(ENTRIES)}

    def install(self) -> AllocationCounter:
        """Hook the MEM and OBJ allocators and start counting from 0.

        Raises RuntimeError if a counter is already installed or `available()` says no.
        Compiles the hooks first if this process has not (about 0.2 s once numba is
        imported).
        """
        global _active, _atexit_registered
        with _lock:
            if _active is not None:
                raise RuntimeError("an AllocationCounter is already installed "
                                   "(nesting is not supported)")
            ok, reason = available()
            if not ok:
                raise RuntimeError(f"cannot count allocations: {reason}")
            saved = {domain: _get_allocator(domain) for _, domain in DOMAINS}
            hooks = {domain: _compile_hooks(saved[domain]) for _, domain in DOMAINS}
            if self._block == 0:
                block = _api().PyMem_RawCalloc(_WORDS, _WORD)
                if not block:
                    raise MemoryError("PyMem_RawCalloc failed for the counter block")
                self._block = block
                self._words = (ctypes.c_size_t * _WORDS).from_address(block)
            # Compiling ran a lot of Python; take the allocators again right before
            # setting ours, and refuse if they changed meanwhile.
            if any(_get_allocator(d).key() != saved[d].key() for d in saved):
                raise RuntimeError("the allocators changed while the hooks compiled")
            ctypes.memset(self._block, 0, _WORDS * _WORD)
            ours = {}
            for d, (_, domain) in enumerate(DOMAINS):
                self._words[d * _STRIDE + _SLOT_CTX] = saved[domain].ctx or 0
                h = hooks[domain]
                ours[domain] = _PyMemAllocatorEx(self._block + d * _STRIDE * _WORD,
                                                 h[0].address, h[1].address, h[2].address,
                                                 h[3].address)
            self._saved, self._ours = saved, ours
            _active = self
            api = _api()
            for _, domain in DOMAINS:
                api.PyMem_SetAllocator(domain, ctypes.byref(ours[domain]))
            if not _atexit_registered:
                atexit.register(_uninstall_at_exit)
                _atexit_registered = True
            # Count from here: the set calls' own ctypes traffic is not the caller's.
            # Only the count words: the ctx words are live.
            for d in range(len(DOMAINS)):
                ctypes.memset(self._block + d * _STRIDE * _WORD, 0, len(ENTRIES) * _WORD)
        return self

    def uninstall(self) -> None:
        """Put the saved allocators back; the counts freeze and stay readable.

        Raises RuntimeError if this counter is not installed, or if another hook was set on
        top of ours since (then nothing changes: remove that hook first, and call again).
        """
        global _active
        with _lock:
            if _active is not self:
                raise RuntimeError("this AllocationCounter is not installed")
            for name, domain in DOMAINS:
                if _get_allocator(domain).key() != self._ours[domain].key():
                    raise RuntimeError(
                        f"the {name.upper()} allocator is no longer the counter's: another "
                        "hook was set on top (tracemalloc.start()?); remove it first")
            api = _api()
            for _, domain in DOMAINS:
                api.PyMem_SetAllocator(domain, ctypes.byref(self._saved[domain]))
            _active = None

    def __enter__(self) -> AllocationCounter:
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()


def _overhead(n: int = 2_000_000, repeats: int = 5) -> dict[str, float]:
    """ns per iteration of `object()` (one malloc + one free) with and without the hook.

    `overhead_ns_per_alloc` is the difference over the counted allocations per iteration,
    so it includes the matching free's hook too: the cost per allocate-and-free pair.
    """
    def loop() -> float:
        t0 = time.perf_counter_ns()
        for _ in repeat(None, n):
            object()
        return (time.perf_counter_ns() - t0) / n

    t0 = time.perf_counter()
    AllocationCounter().install().uninstall()     # compile outside the timings
    compile_s = time.perf_counter() - t0
    plain, hooked, per_iter, reads = [], [], [], []
    for _ in range(repeats):
        plain.append(loop())
        with AllocationCounter() as counter:
            c0 = counter.count
            hooked.append(loop())
            c1 = counter.count
            c2 = counter.count
        per_iter.append((c1 - c0) / n)
        reads.append(c2 - c1)
    plain_ns, hooked_ns = sorted(plain)[repeats // 2], sorted(hooked)[repeats // 2]
    allocs = sorted(per_iter)[repeats // 2]
    return {"compile_s": round(compile_s, 3), "plain_ns_per_iter": round(plain_ns, 2),
            "hooked_ns_per_iter": round(hooked_ns, 2), "allocs_per_iter": round(allocs, 4),
            "overhead_ns_per_alloc": round((hooked_ns - plain_ns) / max(allocs, 1e-9), 2),
            "counter_read": sorted(reads)[repeats // 2]}


if __name__ == "__main__":
    ok, why = available()
    if not ok:
        sys.exit(f"allocation counter unavailable: {why}")
    for key, value in _overhead().items():
        print(f"{key:>22}: {value}")
