"""profiling.allocs: the gross allocation counter (a PyMem_SetAllocator hook).

Everything that installs the hook runs in a child interpreter (sys.executable), so a crash
there fails one test instead of killing pytest, and the hook never reaches another test.
Each child prints one JSON line of findings; the tests below check them. In this process
only the parts that never install run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from profiling.allocs import ENTRIES, AllocationCounter, available

ROOT = Path(__file__).resolve().parent.parent
N = 10_000


def run_child(code: str, *, pythonmalloc: str | None = None, flags: tuple = ()) -> dict:
    """Run `code` in a fresh interpreter from the repo root; return its last JSON line."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONMALLOC", "PYTHONDEVMODE",
                                                             "PYTHONTRACEMALLOC")}
    env["PYTHONPATH"] = str(ROOT)
    if pythonmalloc:
        env["PYTHONMALLOC"] = pythonmalloc
    proc = subprocess.run([sys.executable, *flags, "-c", textwrap.dedent(code)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, (f"child exited {proc.returncode}\n"
                                  f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


MAIN = """
import gc, json, threading, tracemalloc
from itertools import repeat
import numba
import numpy as np
from profiling import allocs
from profiling.allocs import AllocationCounter, available

N = %(N)d
out = {"available": available()}
original = {d: allocs._get_allocator(d).key() for _, d in allocs.DOMAINS}

def measure(counter, fn, *args):
    c0 = counter.count
    fn(*args)
    return counter.count - c0

def empty():
    pass

# made before install, freed while installed (through the free hook)
before = [object() for _ in repeat(None, 1000)]

counter = AllocationCounter()
counter.install()
out["installed"] = counter.installed
out["ctx_words"] = [counter._words[d * allocs._STRIDE + allocs._SLOT_CTX] for d in range(2)]

# the counter's own read cost, at large counts (small ints are cached)
kept = [object() for _ in repeat(None, 1000)]
out["read_cost"] = [measure(counter, empty) for _ in range(5)]

holder = []
def objects(n):
    holder.append([object() for _ in repeat(None, n)])
out["objects"] = measure(counter, objects, N)

a = np.zeros(1000)
b = np.ones(1000)
half = np.array(0.5)   # a Python or numpy scalar operand costs one block per ufunc call
def inplace(n):
    for _ in repeat(None, n):
        np.add(a, b, out=a)
        np.multiply(a, half, out=a)
        np.subtract(a, b, out=a)
def allocating(n):
    for _ in repeat(None, n):
        c = a + b
inplace(10)
allocating(10)
out["inplace"] = measure(counter, inplace, 2000)
out["allocating"] = measure(counter, allocating, 2000)

@numba.njit
def nrt_churn(n):
    s = 0.0
    for i in range(n):
        x = np.empty(16)
        x[:] = i
        s += x[3]
    return s
nrt_churn(1)
out["nrt_small"] = measure(counter, nrt_churn, 10)
out["nrt_large"] = measure(counter, nrt_churn, 100_000)

thread_objects = []
def worker():
    thread_objects.append([object() for _ in repeat(None, 5000)])
t = threading.Thread(target=worker)
def in_thread():
    t.start()
    t.join()
out["thread"] = measure(counter, in_thread)

del before
gc.collect()

# nesting: refused, and the installed counter keeps counting
out["available_while_installed"] = available()
refusals = []
for attempt in (AllocationCounter().install, counter.install, AllocationCounter().__enter__):
    try:
        attempt()
        refusals.append(None)
    except RuntimeError as exc:
        refusals.append(str(exc))
out["nested_refusals"] = refusals
out["still_counting"] = measure(counter, objects, 100)

# a hook set on top (tracemalloc) blocks uninstall until it is gone
tracemalloc.start()
try:
    counter.uninstall()
    out["uninstall_under_tracemalloc"] = None
except RuntimeError as exc:
    out["uninstall_under_tracemalloc"] = str(exc)
out["installed_after_refusal"] = counter.installed
tracemalloc.stop()
counter.uninstall()
out["installed_after_uninstall"] = counter.installed
out["restored"] = all(allocs._get_allocator(d).key() == original[d] for d in original)

# frozen after uninstall, and the interpreter works: free what was made while installed
frozen = counter.count
del holder, kept, thread_objects
gc.collect()
junk = [dict(a=i, b=str(i)) for i in range(50_000)]
del junk
gc.collect()
out["frozen"] = counter.count == frozen
out["counts"] = counter.counts()

# tracemalloc already tracing: refused cleanly
tracemalloc.start()
out["available_under_tracemalloc"] = available()
try:
    AllocationCounter().install()
    out["install_under_tracemalloc"] = None
except RuntimeError as exc:
    out["install_under_tracemalloc"] = str(exc)
tracemalloc.stop()

# many cycles reuse the compiled hooks; the context manager uninstalls on error
cycles = []
holder = []
for _ in range(50):
    with AllocationCounter() as c:
        cycles.append(measure(c, objects, 100))
    holder = []
out["cycles"] = cycles
out["hook_sets"] = len(allocs._hooks)
try:
    with AllocationCounter() as c:
        raise ValueError("boom")
except ValueError:
    pass
out["after_error"] = [c.installed, available()[0]]
out["ir_calls"] = allocs._hook_ir_calls()
out["restored_at_end"] = all(allocs._get_allocator(d).key() == original[d] for d in original)
gc.collect()
print(json.dumps(out))
""" % {"N": N}


@pytest.fixture(scope="module")
def main() -> dict:
    return run_child(MAIN)


def test_available_in_a_plain_interpreter(main):
    assert main["available"] == [True, ""]
    assert main["installed"] is True
    assert main["ctx_words"] == [0, 0], "a release build's allocators have ctx NULL"


def test_counts_each_small_object_once(main):
    # N objects plus the list growing (a few dozen reallocs) and the counter's read
    assert N <= main["objects"] <= N + 300


def test_reading_the_count_costs_a_small_constant(main):
    assert len(set(main["read_cost"])) == 1
    assert 0 <= main["read_cost"][0] <= 4


def test_in_place_numpy_counts_near_zero_and_allocating_numpy_does_not(main):
    assert main["inplace"] / 2000 < 0.05
    assert main["allocating"] / 2000 >= 1.0


def test_numba_nrt_allocations_are_not_counted(main):
    # 100,000 arrays made inside the jitted function go to NRT's malloc, not PyMem
    assert main["nrt_large"] - main["nrt_small"] <= 5


def test_other_threads_are_counted(main):
    assert main["thread"] >= 5000


def test_nesting_is_refused_and_leaves_the_counter_running(main):
    assert main["available_while_installed"][0] is False
    assert "already installed" in main["available_while_installed"][1]
    assert all(r is not None and "already installed" in r for r in main["nested_refusals"])
    assert 100 <= main["still_counting"] <= 200


def test_uninstall_refuses_while_another_hook_is_on_top(main):
    assert "on top" in main["uninstall_under_tracemalloc"]
    assert main["installed_after_refusal"] is True
    assert main["installed_after_uninstall"] is False
    assert main["restored"] is True


def test_counts_freeze_after_uninstall_and_the_interpreter_keeps_working(main):
    assert main["frozen"] is True
    counts = main["counts"]
    assert set(counts) == {f"{d}.{e}" for d in ("mem", "obj") for e in ENTRIES}
    assert counts["obj.malloc"] >= N + 5000
    assert counts["obj.free"] >= 1000, "objects made before install were freed through it"


def test_refused_cleanly_while_tracemalloc_traces(main):
    ok, reason = main["available_under_tracemalloc"]
    assert ok is False and "tracemalloc" in reason
    assert "tracemalloc" in main["install_under_tracemalloc"]


def test_reinstalling_reuses_the_hooks_and_errors_still_uninstall(main):
    assert all(100 <= c <= 200 for c in main["cycles"])
    assert main["hook_sets"] == 1, "MEM and OBJ share one set of hooks in a release build"
    assert main["after_error"] == [False, True]
    assert main["restored_at_end"] is True


def test_hooks_call_nothing_but_their_body_and_the_original(main):
    calls = main["ir_calls"]
    assert len(calls) == 8, calls          # 4 hooks: wrapper -> body, body -> original
    for line in calls:
        assert not line.startswith("declare"), line
        for forbidden in ("@Py", "@_Py", "NRT", "GIL", "numba_"):
            assert forbidden not in line, line


ENV_CHILD = """
import gc, json
from itertools import repeat
from profiling import allocs
from profiling.allocs import AllocationCounter

made_before = [object() for _ in repeat(None, 2000)]
with AllocationCounter() as counter:
    ctx = [counter._words[d * allocs._STRIDE + allocs._SLOT_CTX] for d in range(2)]
    c0 = counter.count
    made_during = [object() for _ in repeat(None, 10_000)]
    grown = bytearray()
    for _ in repeat(None, 2000):
        grown += b"x" * 64
    n = counter.count - c0
    del made_before
    gc.collect()
del made_during, grown
gc.collect()
text = json.dumps({"ctx_nonzero": all(ctx), "count": n})
print(text)
"""


@pytest.mark.parametrize("pythonmalloc, flags, debug_ctx", [
    ("debug", (), True),           # debug hooks: the original ctx is not NULL
    ("malloc", (), False),         # libc malloc under MEM and OBJ
    ("malloc_debug", (), True),
    (None, ("-X", "dev"), True),   # dev mode installs the debug hooks too
])
def test_works_under_other_allocators(pythonmalloc, flags, debug_ctx):
    # The debug hooks check each block's domain and ctx on free: a block allocated through
    # the counter and freed after uninstall (or the other way) would abort the child.
    found = run_child(ENV_CHILD, pythonmalloc=pythonmalloc, flags=flags)
    assert found["ctx_nonzero"] is debug_ctx
    assert found["count"] >= 10_000


def test_a_counter_left_installed_at_exit_is_harmless():
    found = run_child("""
        import json
        from profiling.allocs import AllocationCounter
        counter = AllocationCounter().install()
        print(json.dumps({"installed": counter.installed}))
    """)
    assert found == {"installed": True}


# ---- in this process: nothing here installs --------------------------------------------

def test_available_answers_a_bool_and_a_reason():
    ok, reason = available()
    assert isinstance(ok, bool) and isinstance(reason, str)
    assert ok or reason


def test_a_counter_never_installed_reads_zero_and_cannot_uninstall():
    counter = AllocationCounter()
    assert counter.installed is False
    assert counter.count == 0
    assert set(counter.counts().values()) == {0}
    with pytest.raises(RuntimeError, match="not installed"):
        counter.uninstall()
