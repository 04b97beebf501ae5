"""Read a tick timing recording (`xmarks serve --record-timings FILE`).

The format is specified in profiling/README.md ("Timing recordings") and written by
tick.timings.TimingRecorder. Reading is strict about everything but the tail: a recording
cut short by a crash ends at a chunk boundary (or, rarely, inside a record), so the whole
records before the tail are read and the partial one is counted in `ignored_bytes`; any
other damage (foreign file, bad header, unknown record tag) is a RecordingError whose
message is one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tick.gcwatch import GC_COLUMNS
from tick.timings import (FIRST_PHASE, RECORDING_HEADER, RECORDING_MAGIC, RECORDING_VERSION,
                          TAG_END, TAG_GC, TAG_TICK, record_words)

MAX_PHASES = 64


class RecordingError(ValueError):
    """The file is not a readable timing recording (the message is one line)."""


@dataclass(frozen=True)
class Recording:
    """One recording, in memory.

    ticks: int64[n, 2 + len(phases)], tick.timings' row layout: tick number, start
    (monotonic ns), then each phase's duration (ns); in recorded order.
    gc: int64[m, 5], tick.gcwatch's layout: start (monotonic ns), duration (ns),
    generation, objects collected, uncollectable; sorted by start.
    end: the END record ({ticks, gc, overruns, gc_lost}) when the recorder was closed,
    None when the recording was cut short.
    """

    path: str
    version: int
    tick_rate: float
    phases: tuple[str, ...]
    start_unix_ms: int  # wall-clock ms at monotonic start_mono_ns
    start_mono_ns: int
    ticks: np.ndarray
    gc: np.ndarray
    end: dict | None
    ignored_bytes: int  # a partial record at the end of the file

    @property
    def complete(self) -> bool:
        return self.end is not None

    @property
    def budget_ns(self) -> float:
        """One tick period (ns)."""
        return 1e9 / self.tick_rate

    @property
    def durations_ns(self) -> np.ndarray:
        """int64[n, len(phases)]: each tick's phase durations."""
        return self.ticks[:, FIRST_PHASE:FIRST_PHASE + len(self.phases)]

    def unix_ms(self, mono_ns: int) -> float:
        """Wall-clock ms of a monotonic instant of the recording."""
        return self.start_unix_ms + (mono_ns - self.start_mono_ns) / 1e6


def read_recording(path: str) -> Recording:
    """The recording in file `path`; RecordingError if it cannot be read as one."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise RecordingError(f"{path} is a directory, not a timing recording") from None
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_recording(data, path)


def parse_recording(data: bytes, path: str = "<bytes>") -> Recording:
    """Parse the bytes of a recording (see read_recording)."""
    what = f"{path} is not an xmarks timing recording"
    head = RECORDING_HEADER.size
    if len(data) < len(RECORDING_MAGIC):
        if RECORDING_MAGIC.startswith(data) and data:
            raise RecordingError(f"{path}: truncated header ({len(data)} bytes)")
        raise RecordingError(f"{what} (only {len(data)} bytes)")
    if data[:len(RECORDING_MAGIC)] != RECORDING_MAGIC:
        raise RecordingError(f"{what} (no {RECORDING_MAGIC[:7].decode()} magic at its start)")
    if len(data) < head:
        raise RecordingError(f"{path}: truncated header ({len(data)} of {head}+ bytes)")
    (_, version, header_size, tick_rate, start_unix_ms, start_mono_ns, n_phases,
     words) = RECORDING_HEADER.unpack_from(data)
    if version != RECORDING_VERSION:
        raise RecordingError(f"{path}: recording format version {version} is not supported "
                             f"(this xmarks reads version {RECORDING_VERSION})")
    if not 1 <= n_phases <= MAX_PHASES or words != record_words(n_phases):
        raise RecordingError(f"{path}: corrupt header ({n_phases} phases, {words} words "
                             "per record)")
    if header_size % 8 or header_size < head + 2 * n_phases or header_size > 1 << 16:
        raise RecordingError(f"{path}: corrupt header (header size {header_size})")
    if len(data) < header_size:
        raise RecordingError(f"{path}: truncated header ({len(data)} of {header_size} bytes)")
    if not (math.isfinite(tick_rate) and tick_rate > 0):
        raise RecordingError(f"{path}: corrupt header (tick rate {tick_rate!r})")
    phases = _phase_names(data[head:header_size], n_phases, path)

    size = 8 * words
    body = memoryview(data)[header_size:]
    whole = len(body) // size
    records = np.frombuffer(body[:whole * size], "<i8").reshape(whole, words)
    tags = records[:, 0]
    bad = np.flatnonzero((tags != TAG_TICK) & (tags != TAG_GC) & (tags != TAG_END))
    if len(bad):
        raise RecordingError(f"{path}: corrupt record {int(bad[0])} (tag {int(tags[bad[0]])})")
    ends = np.flatnonzero(tags == TAG_END)
    end = None
    if len(ends):
        e = records[ends[-1]]
        end = {"ticks": int(e[1]), "gc": int(e[2]), "overruns": int(e[3]),
               "gc_lost": int(e[4])}
    ticks = records[tags == TAG_TICK, 1:1 + FIRST_PHASE + n_phases].astype(np.int64)
    if len(ticks) == 0:
        raise RecordingError(f"{path}: no tick rows (the server stopped before its first "
                             "ticks were written)")
    if np.any(ticks[:, FIRST_PHASE:] < 0):
        raise RecordingError(f"{path}: corrupt tick rows (negative durations)")
    gc = records[tags == TAG_GC, 1:1 + GC_COLUMNS].astype(np.int64)
    gc = gc[np.argsort(gc[:, 0], kind="stable")]
    return Recording(path=path, version=version, tick_rate=float(tick_rate), phases=phases,
                     start_unix_ms=int(start_unix_ms), start_mono_ns=int(start_mono_ns),
                     ticks=ticks, gc=gc, end=end, ignored_bytes=len(body) - whole * size)


def _phase_names(raw: bytes, n: int, path: str) -> tuple[str, ...]:
    names, at = [], 0
    for _ in range(n):
        length = raw[at] if at < len(raw) else 0
        name = raw[at + 1:at + 1 + length]
        if not length or len(name) < length or not name.isascii():
            raise RecordingError(f"{path}: corrupt header (phase names)")
        names.append(name.decode("ascii"))
        at += 1 + length
    return tuple(names)
