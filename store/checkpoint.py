"""World checkpoints: the state arrays, tick, RNG and ledger position, in one file.

The tick thread only copies (capture(): np.copy of World.STATE_FIELDS, about 0.7 MB at
10k players); the writer thread hashes, writes and syncs (save_checkpoint), so the tick
never waits on disk.

File format: a NumPy .npz (a zip of .npy arrays, stored uncompressed; loaded with
allow_pickle=False, so a file can never run code), members:
  <each name in World.STATE_FIELDS>   the array, dtype and shape as in the World
  client_ids   uint64[max_players]    the connect token's client id per slot (0: empty)
  names        uint8[n]               the players' names per slot, a JSON list
  header       int64[3]               FORMAT_VERSION, tick (the next tick to run), ledger
                                      seq (the last record built before that tick)
  world_uid    uint64[1]
  tick_rate    float64[1]
  rules        uint8[n]               the GameRules as JSON (UTF-8, like every text here)
  digest       uint8[32]              BLAKE2b-128 hex over each state array's name, dtype
                                      and bytes, in World.STATE_FIELDS order
Writes are atomic: a temporary file in the same directory, fsync, os.replace, fsync of
the directory: a crash leaves the old checkpoint or the new one, never a torn one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sim import schema as S
from sim.rules import GameRules
from sim.world import World
from store.records import Recorder

log = logging.getLogger("xmarks.checkpoint")

FORMAT_VERSION = 1

#: Rules a checkpoint must share with the server to be loaded: they fix the shape of the
#: arrays and what positions mean. Other rules may change across a restart (reported).
LAYOUT_RULES = ("world_width", "world_height", "max_players", "treasure_count",
                "leaderboard_size", "cell_size")

_META = ("client_ids", "names", "header", "world_uid", "tick_rate", "rules", "digest")


class CheckpointError(Exception):
    """A checkpoint could not be written or loaded; the message is one line."""


@dataclass
class Checkpoint:
    """A world's state at the start of tick `tick`. arrays: World.STATE_FIELDS -> copy."""

    tick: int
    seq: int  # the last ledger seq whose record the arrays already include
    world_uid: int
    tick_rate: float
    rules: dict  # GameRules fields
    arrays: dict[str, np.ndarray]
    client_ids: np.ndarray  # uint64[max_players]
    names: list[str]  # per slot ("" for an empty one)
    digest: str = ""  # filled by save / load
    rules_changed: tuple[str, ...] = ()  # rules that differ from the loading server's


def state_layout(rules: GameRules) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every World.STATE_FIELDS array for `rules` (as sim.world.new_world
    allocates them)."""
    p, t, k = rules.max_players, rules.treasure_count, rules.leaderboard_size
    cells = (math.ceil(rules.world_width / rules.cell_size)
             * math.ceil(rules.world_height / rules.cell_size))
    i32, f32 = np.dtype(np.int32), np.dtype(np.float32)
    return {
        "pf": ((len(S.PLAYER_F32), p), f32), "pi": ((len(S.PLAYER_I32), p), i32),
        "tf": ((len(S.TREASURE_F32), t), f32), "ti": ((len(S.TREASURE_I32), t), i32),
        "p_starts": ((cells + 1,), i32), "p_items": ((p,), i32),
        "t_starts": ((cells + 1,), i32), "t_items": ((t,), i32),
        "clock": ((len(S.CLOCK),), np.dtype(np.int64)), "rng": ((1,), np.dtype(np.uint64)),
        "claim_ring": ((S.CLAIM_RING, S.CLAIM_FIELDS), np.dtype(np.int64)),
        "board": ((k, 3), i32), "final_board": ((k, 3), i32),
    }


def digest_of(arrays: dict[str, np.ndarray]) -> str:
    """BLAKE2b-128 hex over each array's name, dtype and bytes, in World.STATE_FIELDS order
    (every byte: World.state_hash() may leave out what the simulation never reads)."""
    h = hashlib.blake2b(digest_size=16)
    for name in World.STATE_FIELDS:
        arr = arrays[name]
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _rules_dict(rules: GameRules) -> dict:
    d = dataclasses.asdict(rules)
    d["value_weights"] = list(d["value_weights"])
    return d


def _text(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), np.uint8)


def _read_text(arr: np.ndarray) -> str:
    if arr.dtype != np.uint8 or arr.ndim != 1:
        raise ValueError("a text member is not uint8[n]")
    return arr.tobytes().decode()


def capture(world: World, recorder: Recorder) -> Checkpoint:
    """Copy the world's state and who is in it, on the tick thread between ticks: after
    the records of the last tick were built, so the checkpoint includes exactly the records
    up to recorder.last_seq."""
    return Checkpoint(tick=world.tick, seq=recorder.last_seq, world_uid=recorder.world_uid,
                      tick_rate=float(world.kr.tick_rate), rules=_rules_dict(world.rules),
                      arrays={name: np.copy(getattr(world, name)) for name in World.STATE_FIELDS},
                      client_ids=recorder.client_ids.copy(), names=list(recorder.names))


def save_checkpoint(path: str, cp: Checkpoint) -> None:
    """Write `cp` to `path` atomically and durably; fills cp.digest. Raises OSError."""
    cp.digest = digest_of(cp.arrays)
    members = dict(cp.arrays)
    members.update(
        client_ids=cp.client_ids,
        names=_text(json.dumps(cp.names)),
        header=np.array([FORMAT_VERSION, cp.tick, cp.seq], np.int64),
        world_uid=np.array([cp.world_uid], np.uint64),
        tick_rate=np.array([cp.tick_rate], np.float64),
        rules=_text(json.dumps(cp.rules, sort_keys=True)),
        digest=_text(cp.digest))
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".xmarks-checkpoint-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **members)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a power cut
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str, rules: GameRules, tick_rate: float | None = None) -> Checkpoint:
    """Read and check the checkpoint at `path` for a server running `rules`.

    Raises CheckpointError (one line) if the file is missing, truncated, corrupt, not a
    checkpoint, or from rules with another layout (LAYOUT_RULES). Rules outside the layout
    that differ (and tick_rate, if given) are listed in Checkpoint.rules_changed.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            members = set(z.files)
            missing = [n for n in (*World.STATE_FIELDS, *_META) if n not in members]
            if missing:
                raise CheckpointError(f"checkpoint {path}: not an xmarks checkpoint "
                                      f"(no {missing[0]})")
            header = z["header"]
            if header.shape != (3,) or header.dtype != np.int64:
                raise CheckpointError(f"checkpoint {path}: bad header")
            if int(header[0]) != FORMAT_VERSION:
                raise CheckpointError(f"checkpoint {path}: format version {int(header[0])}, "
                                      f"this xmarks reads {FORMAT_VERSION}")
            saved_rules = json.loads(_read_text(z["rules"]))
            arrays = {name: z[name] for name in World.STATE_FIELDS}
            client_ids = z["client_ids"]
            names = json.loads(_read_text(z["names"]))
            world_uid = int(z["world_uid"][0])
            saved_rate = float(z["tick_rate"][0])
            digest = _read_text(z["digest"])
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path}: no such file") from None
    except Exception as exc:  # noqa: BLE001: any damage is the same answer: unreadable
        text = f"{exc}".splitlines()[0] if f"{exc}" else ""
        raise CheckpointError(f"checkpoint {path}: unreadable ({type(exc).__name__}"
                              f"{': ' + text[:120] if text else ''})") from None
    if not isinstance(saved_rules, dict):
        raise CheckpointError(f"checkpoint {path}: bad rules")
    want = _rules_dict(rules)
    for name in LAYOUT_RULES:
        if saved_rules.get(name) != want[name]:
            raise CheckpointError(f"checkpoint {path}: saved with {name}={saved_rules.get(name)!r}, "
                                  f"the server runs {name}={want[name]!r}")
    for name, (shape, dtype) in state_layout(rules).items():
        arr = arrays[name]
        if arr.shape != shape or arr.dtype != dtype:
            raise CheckpointError(f"checkpoint {path}: {name} is {arr.dtype}{list(arr.shape)}, "
                                  f"expected {dtype}{list(shape)}")
    if client_ids.shape != (rules.max_players,) or client_ids.dtype != np.uint64:
        raise CheckpointError(f"checkpoint {path}: bad client_ids")
    if (not isinstance(names, list) or len(names) != rules.max_players
            or not all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"checkpoint {path}: bad names")
    if digest_of(arrays) != digest:
        raise CheckpointError(f"checkpoint {path}: digest mismatch (the file is damaged)")
    tick, seq = int(header[1]), int(header[2])
    if tick != int(arrays["clock"][S.TICK]) or seq < 0:
        raise CheckpointError(f"checkpoint {path}: header does not match its clock")
    changed = tuple(n for n in sorted(set(want) | set(saved_rules))
                    if n not in LAYOUT_RULES and saved_rules.get(n) != want.get(n))
    if tick_rate is not None and float(tick_rate) != saved_rate:
        changed += ("tick_rate",)
    return Checkpoint(tick=tick, seq=seq, world_uid=world_uid, tick_rate=saved_rate,
                      rules=saved_rules, arrays=arrays, client_ids=client_ids, names=names,
                      digest=digest,
                      rules_changed=changed)


def restore_arrays(world: World, cp: Checkpoint) -> None:
    """Copy the checkpoint's arrays into the world's own (in place: whoever holds the
    world's arrays keeps seeing them). The shapes were checked by load_checkpoint."""
    for name in World.STATE_FIELDS:
        np.copyto(getattr(world, name), cp.arrays[name])


class CheckpointWriter:
    """Writes checkpoints on its own thread; the tick thread only hands over a capture.

    submit() keeps the newest capture only: a checkpoint older than one waiting is worth
    nothing. A failed write is logged (once per distinct error), counted, and the next
    submit tries again. on_saved(checkpoint), if set, is called on the writer thread after
    each durable write (e.g. Ledger.checkpointed(cp.tick)).
    clock: monotonic seconds (tick.clock.now_s), to time writes.
    """

    def __init__(self, path: str, clock: Callable[[], float]) -> None:
        self.path = path
        self.on_saved: Callable[[Checkpoint], None] | None = None
        self._clock = clock
        self._lock = threading.Lock()  # guards _next and the status fields; never held in I/O
        self._next: Checkpoint | None = None
        self._wake = threading.Event()
        self._closing = False
        self.written = 0
        self.faults = 0
        self.last_error: str | None = None
        self.last_tick = -1
        self.last_write_s = 0.0
        self._logged_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="xmarks-checkpoint", daemon=True)
        self._thread.start()

    def submit(self, cp: Checkpoint) -> None:
        """Hand a capture to the writer; never blocks on I/O."""
        with self._lock:
            self._next = cp
        self._wake.set()

    def status(self) -> dict:
        with self._lock:
            return {"written": self.written, "faults": self.faults,
                    "last_error": self.last_error, "last_tick": self.last_tick,
                    "last_write_s": self.last_write_s, "waiting": self._next is not None}

    def _run(self) -> None:
        while True:
            with self._lock:
                cp, self._next = self._next, None
            if cp is not None:
                self._save(cp)
                continue
            if self._closing:
                return
            self._wake.wait()
            self._wake.clear()

    def _save(self, cp: Checkpoint) -> None:
        t0 = self._clock()
        try:
            save_checkpoint(self.path, cp)
        except Exception as exc:  # noqa: BLE001: the writer must outlive any failure
            error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self.faults += 1
                self.last_error = error
                new, self._logged_error = error != self._logged_error, error
            if new:
                log.error(
                    "checkpoint: writing %s failed (%s); the next checkpoint tries again",
                    self.path, error)
            return
        seconds = self._clock() - t0
        with self._lock:
            self.written += 1
            self.last_tick = cp.tick
            self.last_write_s = seconds
            self.last_error = self._logged_error = None
        if self.on_saved is not None:
            try:
                self.on_saved(cp)
            except Exception:  # noqa: BLE001: a hook must not stop the writer
                log.exception("checkpoint: on_saved failed")

    def close(self, timeout_s: float = 10.0) -> bool:
        """Write what is waiting, then stop. True if nothing was left unwritten."""
        self._closing = True
        self._wake.set()
        self._thread.join(timeout_s)
        with self._lock:
            return not self._thread.is_alive() and self._next is None and self.last_error is None
