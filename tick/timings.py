"""Per-phase tick timings in a ring buffer that tick/ writes and profiling/ reads, and
their recording to a file (TimingRecorder: `xmarks serve --record-timings FILE`).

The recording format is specified in profiling/README.md ("Timing recordings"); the
writer lives here, the reader in profiling/recording.py.
"""

from __future__ import annotations

import logging
import struct
import sys

import numpy as np

from tick.clock import now_ns, unix_origin_ms
from tick.gcwatch import GC_COLUMNS, GcWatch

PHASES = ("drain", "decode", "step", "encode", "send")
# Columns of a row: tick, start (monotonic ns), then one duration (ns) per phase.
COL_TICK, COL_START = 0, 1
FIRST_PHASE = 2
COLUMNS = FIRST_PHASE + len(PHASES)

# ---- the recording format (profiling/README.md) -------------------------------------------

RECORDING_MAGIC = b"XMTICKS\x00"
RECORDING_VERSION = 1
#: magic, version, header size (bytes, a multiple of 8), tick rate (Hz), unix ms and
#: monotonic ns of one instant (the recording's start), phase count, int64 words per record
RECORDING_HEADER = struct.Struct("<8sIIdqqII")
TAG_TICK, TAG_GC, TAG_END = 1, 2, 3
#: Tick rows written per write: one syscall every RECORD_CHUNK ticks (12.8 s at 20 Hz).
RECORD_CHUNK = 256

log = logging.getLogger("xmarks.timings")


def record_words(n_phases: int) -> int:
    """int64 words per record: [tag, tick, start, one per phase], at least a GC record's
    [tag, start, duration, generation, collected, uncollectable]."""
    return max(1 + GC_COLUMNS, 3 + n_phases)


def recording_header(tick_rate: float, phases: tuple[str, ...], start_unix_ms: int,
                     start_mono_ns: int) -> bytes:
    """The header bytes: the fixed fields, then each phase name as u8 length + ASCII,
    zero-padded to a multiple of 8 bytes (records stay 8-byte aligned)."""
    names = b"".join(bytes([len(p)]) + p.encode("ascii") for p in phases)
    size = RECORDING_HEADER.size + len(names)
    size += -size % 8
    fixed = RECORDING_HEADER.pack(RECORDING_MAGIC, RECORDING_VERSION, size, float(tick_rate),
                                  start_unix_ms, start_mono_ns, len(phases),
                                  record_words(len(phases)))
    return (fixed + names).ljust(size, b"\x00")


class TimingRecorder:
    """Writes every tick row of a TickTimings, and every garbage collection, to `path`.

    Rows are not copied per tick: TickTimings.record() only counts, and every `chunk` ticks
    calls flush(), which writes the ring's new rows (and the collections seen meanwhile,
    tick.gcwatch) as tagged int64 records in one write. So the tick pays one integer
    compare, and the file gets one syscall per chunk. The file is opened unbuffered: what
    flush() wrote is in the OS, and a crash leaves every chunk written so far, whole.
    close() writes the last rows and an END record (a recording without one was cut short).
    A write that fails (a full disk) stops the recording, not the server: `error` says why,
    and the file keeps what was written before.
    """

    def __init__(self, path: str, tick_rate: float, *, chunk: int = RECORD_CHUNK,
                 watch_gc: bool = True, phases: tuple[str, ...] = PHASES) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk!r}")
        self.path = path
        self.chunk = chunk
        self.phases = phases
        self.words = record_words(len(phases))
        self.ticks_written = 0
        self.gc_written = 0
        self.gc_lost = 0
        self.closed = False
        self.error: str | None = None
        self._seen = 0  # TickTimings.recorded at the last flush
        self._gc_seen = 0
        self._file = open(path, "wb", buffering=0)
        mono = now_ns()
        try:  # a header that cannot be written is the caller's error (a bad path, a full disk)
            self._write_all(recording_header(tick_rate, phases,
                                             unix_origin_ms() + mono // 10**6, mono))
        except BaseException:
            self._file.close()
            raise
        self.gc = GcWatch() if watch_gc else None

    def start(self, timings: "TickTimings") -> None:
        """Record the ticks recorded from now on, and the collections from now on
        (TickTimings.attach calls this: not the warm-up's, which compiles)."""
        self._seen = timings.recorded
        self.chunk = min(self.chunk, timings.rows.shape[0])  # flush before the ring wraps
        if self.gc is not None:
            self._gc_seen = self.gc.recorded
            self.gc.install()

    def flush(self, timings: "TickTimings") -> None:
        """Write the rows recorded since the last flush and the collections seen since
        (nothing once a write has failed)."""
        if self.error is not None:
            return
        n = timings.recorded - self._seen
        records = []
        rows = timings.latest(n) if n > 0 else np.zeros((0, COLUMNS), np.int64)
        self._seen = timings.recorded
        if len(rows):
            out = np.zeros((len(rows), self.words), np.int64)
            out[:, 0] = TAG_TICK
            out[:, 1:1 + rows.shape[1]] = rows
            records.append(out)
        gcs, lost = (self.gc.since(self._gc_seen) if self.gc is not None
                     else (np.zeros((0, GC_COLUMNS), np.int64), 0))
        self._gc_seen += len(gcs) + lost
        self.gc_lost += lost
        if len(gcs):
            out = np.zeros((len(gcs), self.words), np.int64)
            out[:, 0] = TAG_GC
            out[:, 1:1 + GC_COLUMNS] = gcs
            records.append(out)
        if records:
            self._write(np.concatenate(records).astype("<i8", copy=False).tobytes())
            if self.error is None:
                self.ticks_written += len(rows)
                self.gc_written += len(gcs)

    def _fail(self, exc: OSError) -> None:
        self.error = exc.strerror or str(exc)
        log.error("recording tick timings to %s stopped: %s (the file keeps the ticks "
                  "before)", self.path, self.error)

    def close(self, timings: "TickTimings | None" = None) -> None:
        """Write what is left (when `timings` is given) and the END record; close the
        file and stop watching the collector. Safe to call twice."""
        if self.closed:
            return
        try:
            if timings is not None:
                self.flush(timings)
            if self.error is None:
                end = np.zeros(self.words, "<i8")
                end[:5] = (TAG_END, self.ticks_written, self.gc_written,
                           timings.overruns if timings is not None else -1, self.gc_lost)
                self._write(end.tobytes())
        finally:
            self.closed = True
            if self.gc is not None:
                self.gc.uninstall()
            self._file.close()

    def _write(self, data: bytes) -> None:
        try:
            self._write_all(data)
        except OSError as exc:
            self._fail(exc)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:  # an unbuffered write may be partial
            view = view[self._file.write(view):]


class TickTimings:
    """int64[capacity, COLUMNS]; row (n % capacity) holds the n-th recorded tick."""

    def __init__(self, capacity: int) -> None:
        self.rows = np.zeros((capacity, COLUMNS), np.int64)
        self.recorded = 0
        self.overruns = 0
        self.recorder: TimingRecorder | None = None
        self._flush_at = sys.maxsize  # `recorded` at which the recorder writes next

    def record(self, tick: int, marks: list[int]) -> None:
        """Store one tick from its phase boundaries: marks[0] = start, marks[k+1] = end of
        phase k (monotonic ns)."""
        row = self.rows[self.recorded % self.rows.shape[0]]
        row[COL_TICK] = tick
        row[COL_START] = marks[0]
        for k in range(len(PHASES)):
            row[FIRST_PHASE + k] = marks[k + 1] - marks[k]
        self.recorded += 1
        if self.recorded >= self._flush_at:  # the recorder's whole cost on most ticks
            self.recorder.flush(self)
            self._flush_at = self.recorded + self.recorder.chunk

    def attach(self, recorder: TimingRecorder) -> None:
        """Write every tick recorded from now on to `recorder`, a chunk at a time."""
        recorder.start(self)
        self.recorder = recorder
        self._flush_at = self.recorded + recorder.chunk

    def detach(self) -> TimingRecorder | None:
        """Stop recording: write the last rows, close the recorder, return it."""
        recorder, self.recorder = self.recorder, None
        self._flush_at = sys.maxsize
        if recorder is not None:
            recorder.close(self)
        return recorder

    def latest(self, n: int | None = None) -> np.ndarray:
        """The last n recorded rows (default: all kept), oldest first. A copy."""
        cap = self.rows.shape[0]
        kept = min(self.recorded, cap)
        n = kept if n is None else min(n, kept)
        end = self.recorded % cap
        idx = (np.arange(end - n, end) % cap) if n else np.zeros(0, np.int64)
        return self.rows[idx].copy()
