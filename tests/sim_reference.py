"""Plain-Python reference model of the simulation in sim/, for the tests.

Written from the rules stated in sim/'s docstrings, not from the kernels: plain loops over
Python ints and floats, brute force wherever the kernels use the spatial grid, a pure-Python
SplitMix64, and float32 rounding through `struct` (round to nearest even, like a C cast).
Where a kernel's float arithmetic decides the bits of the result (movement, heat), the
reference does the same IEEE double operations in the same order and rounds to float32 at
the same points: that is what makes a bit-for-bit comparison a test of determinism.

Only the array *layout* (the row indices of sim.schema) is shared with sim/, to move state
between the two models. `RefWorld` follows the order of systems in sim/step.py.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass

import numpy as np

from sim import schema as S

MASK64 = (1 << 64) - 1
BURIED, CLAIMED, WAITING, REMOVED = 0, 1, 2, 3
EVENT_CLAIM, EVENT_HUNT_END, EVENT_RANK = 1, 2, 3
CLAIM_RING = 16
INF = float("inf")


# --- numbers -------------------------------------------------------------------------------

def f32(v: float) -> float:
    """`v` rounded to the nearest float32, as a Python float."""
    return struct.unpack("<f", struct.pack("<f", v))[0]


def f32_bits(v: float) -> int:
    return struct.unpack("<I", struct.pack("<f", v))[0]


class SplitMix64:
    """SplitMix64 (Steele, Lea, Flood 2014), as published (and as in java.util.SplittableRandom)."""

    GAMMA = 0x9E3779B97F4A7C15

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK64

    def next_u64(self) -> int:
        self.state = (self.state + self.GAMMA) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def next_unit(self) -> float:
        """Top 53 bits as a float in [0, 1)."""
        return (self.next_u64() >> 11) / 9007199254740992.0

    def next_below(self, n: int) -> int:
        return int(self.next_unit() * n)

    def pick_weighted(self, weights) -> int:
        """Index i with probability weights[i] / sum(weights)."""
        r = self.next_below(sum(weights))
        acc = 0
        for i, w in enumerate(weights):
            acc += w
            if r < acc:
                return i
        return len(weights) - 1


# --- entities ------------------------------------------------------------------------------

class RefPlayer:
    __slots__ = S.PLAYER_F32 + S.PLAYER_I32

    def __init__(self, **kw) -> None:
        for name in self.__slots__:
            setattr(self, name, 0.0 if name in S.PLAYER_F32 else 0)
        self.dig_treasure = -1
        for name, value in kw.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        return "RefPlayer(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"


class RefTreasure:
    __slots__ = S.TREASURE_F32 + S.TREASURE_I32

    def __init__(self, **kw) -> None:
        for name in self.__slots__:
            setattr(self, name, 0.0 if name in S.TREASURE_F32 else 0)
        self.claim_tick = -1
        self.claimer = -1
        for name, value in kw.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        return "RefTreasure(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"


def players_to_arrays(players) -> tuple[np.ndarray, np.ndarray]:
    n = len(players)
    pf = np.zeros((len(S.PLAYER_F32), n), np.float32)
    pi = np.zeros((len(S.PLAYER_I32), n), np.int32)
    for i, p in enumerate(players):
        for r, name in enumerate(S.PLAYER_F32):
            pf[r, i] = getattr(p, name)
        for r, name in enumerate(S.PLAYER_I32):
            pi[r, i] = getattr(p, name)
    return pf, pi


def players_from_arrays(pf: np.ndarray, pi: np.ndarray) -> list[RefPlayer]:
    fl, il = pf.tolist(), pi.tolist()
    out = []
    for i in range(pf.shape[1]):
        p = RefPlayer()
        for r, name in enumerate(S.PLAYER_F32):
            setattr(p, name, fl[r][i])
        for r, name in enumerate(S.PLAYER_I32):
            setattr(p, name, il[r][i])
        out.append(p)
    return out


def treasures_to_arrays(treasures) -> tuple[np.ndarray, np.ndarray]:
    n = len(treasures)
    tf = np.zeros((len(S.TREASURE_F32), n), np.float32)
    ti = np.zeros((len(S.TREASURE_I32), n), np.int32)
    for t, tr in enumerate(treasures):
        for r, name in enumerate(S.TREASURE_F32):
            tf[r, t] = getattr(tr, name)
        for r, name in enumerate(S.TREASURE_I32):
            ti[r, t] = getattr(tr, name)
    return tf, ti


def treasures_from_arrays(tf: np.ndarray, ti: np.ndarray) -> list[RefTreasure]:
    fl, il = tf.tolist(), ti.tolist()
    out = []
    for t in range(tf.shape[1]):
        tr = RefTreasure()
        for r, name in enumerate(S.TREASURE_F32):
            setattr(tr, name, fl[r][t])
        for r, name in enumerate(S.TREASURE_I32):
            setattr(tr, name, il[r][t])
        out.append(tr)
    return out


def diff_players(players, pf: np.ndarray, pi: np.ndarray, limit: int = 8) -> list[str]:
    """Mismatches between reference players and the kernel's arrays; floats bit for bit."""
    out = []
    fb = pf.view(np.uint32).tolist()
    il = pi.tolist()
    for i, p in enumerate(players):
        for r, name in enumerate(S.PLAYER_F32):
            if f32_bits(getattr(p, name)) != fb[r][i]:
                out.append(f"player {i}.{name}: ref {getattr(p, name)!r} != sim {float(pf[r, i])!r}")
        for r, name in enumerate(S.PLAYER_I32):
            if getattr(p, name) != il[r][i]:
                out.append(f"player {i}.{name}: ref {getattr(p, name)!r} != sim {il[r][i]!r}")
        if len(out) >= limit:
            break
    return out


def diff_treasures(treasures, tf: np.ndarray, ti: np.ndarray, limit: int = 8) -> list[str]:
    out = []
    fb = tf.view(np.uint32).tolist()
    il = ti.tolist()
    for t, tr in enumerate(treasures):
        for r, name in enumerate(S.TREASURE_F32):
            if f32_bits(getattr(tr, name)) != fb[r][t]:
                out.append(f"treasure {t}.{name}: ref {getattr(tr, name)!r} != sim {float(tf[r, t])!r}")
        for r, name in enumerate(S.TREASURE_I32):
            if getattr(tr, name) != il[r][t]:
                out.append(f"treasure {t}.{name}: ref {getattr(tr, name)!r} != sim {il[r][t]!r}")
        if len(out) >= limit:
            break
    return out


# --- grid (brute force) --------------------------------------------------------------------

def ref_cell(v: float, cell_size: float, cells: int) -> int:
    """Cell of coordinate v: floor(v / cell_size), clamped into 0..cells-1."""
    c = math.floor(v / cell_size)
    return 0 if c < 0 else (cells - 1 if c >= cells else c)


def ref_grid_cells(xs, ys, member, want, cell_size, cols, rows) -> list[list[int]]:
    """Members of each cell (row-major), each list in ascending slot order."""
    cells = [[] for _ in range(cols * rows)]
    for i in range(len(xs)):
        if member[i] == want:
            cells[ref_cell(ys[i], cell_size, rows) * cols + ref_cell(xs[i], cell_size, cols)].append(i)
    return cells


def ref_grid(xs, ys, member, want, cell_size, cols, rows, old_items=None):
    """(starts, items, total) as build_grid leaves them; items past total keep old_items."""
    cells = ref_grid_cells(xs, ys, member, want, cell_size, cols, rows)
    starts = [0]
    flat = []
    for c in cells:
        flat.extend(c)
        starts.append(len(flat))
    total = len(flat)
    items = flat + (list(old_items[total:]) if old_items is not None else [])
    return starts, items, total


# --- nearest (brute force) -----------------------------------------------------------------

def ref_nearest(x: float, y: float, radius: float, treasures) -> tuple[int, float]:
    """(index, squared distance) of the nearest BURIED treasure with distance <= radius.

    Ties go to the lowest index; (-1, inf) if none."""
    best, best_d2 = -1, INF
    r2 = radius * radius
    for t, tr in enumerate(treasures):
        if tr.state != BURIED:
            continue
        dx = tr.x - x
        dy = tr.y - y
        d2 = dx * dx + dy * dy
        if d2 <= r2 and d2 < best_d2:
            best, best_d2 = t, d2
    return best, best_d2


# --- movement ------------------------------------------------------------------------------

def ref_move(players, speed: float, tick_rate: float, width: float, height: float) -> None:
    """Move axis -127..127 -> -speed..speed, length clamped to speed, bounds [0,W]x[0,H]."""
    for p in players:
        if p.alive == 0:
            continue
        vx = p.move_x / 127.0 * speed
        vy = p.move_y / 127.0 * speed
        mag = math.sqrt(vx * vx + vy * vy)
        if mag > speed:
            scale = speed / mag
            vx = vx * scale
            vy = vy * scale
        x = p.x + vx / tick_rate
        y = p.y + vy / tick_rate
        p.x = f32(min(max(x, 0.0), width))
        p.y = f32(min(max(y, 0.0), height))
        p.vx = f32(vx)
        p.vy = f32(vy)


# --- events and claim ring -----------------------------------------------------------------

class RefLog:
    """This tick's events (bounded), the lost-event counter, and the recent-claims ring."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.events: list[tuple] = []
        self.lost = 0
        self.ring = [[-1] * 6 for _ in range(CLAIM_RING)]
        self.head = 0

    def push(self, kind, tick, a, b, c, d) -> None:
        if len(self.events) >= self.capacity:
            self.lost += 1
        else:
            self.events.append((kind, tick, a, b, c, d))

    def add_claim(self, tick, slot, t, value, x, y) -> None:
        self.ring[self.head % CLAIM_RING] = [tick, slot, t, value, int(x), int(y)]
        self.head += 1

    @classmethod
    def from_arrays(cls, clock, events, claim_ring) -> "RefLog":
        log = cls(events.shape[0])
        n = int(clock[S.EVENT_COUNT])
        log.events = [tuple(row) for row in events[:n].tolist()]
        log.lost = int(clock[S.EVENTS_LOST])
        log.ring = claim_ring.tolist()
        log.head = int(clock[S.CLAIM_HEAD])
        return log

    def diff(self, clock, events, claim_ring) -> list[str]:
        out = []
        n = int(clock[S.EVENT_COUNT])
        got = [tuple(row) for row in events[:n].tolist()]
        if got != self.events:
            out.append(f"events: ref {self.events} != sim {got}")
        if int(clock[S.EVENTS_LOST]) != self.lost:
            out.append(f"events_lost: ref {self.lost} != sim {int(clock[S.EVENTS_LOST])}")
        if int(clock[S.CLAIM_HEAD]) != self.head:
            out.append(f"claim_head: ref {self.head} != sim {int(clock[S.CLAIM_HEAD])}")
        if claim_ring.tolist() != self.ring:
            out.append(f"claim_ring: ref {self.ring} != sim {claim_ring.tolist()}")
        return out


# --- dig -----------------------------------------------------------------------------------

def _stop_digging(p) -> None:
    p.dig_treasure = -1
    p.dig_ticks = 0


def ref_dig(players, treasures, tick: int, dig_radius: float, dig_ticks: int, log: RefLog) -> int:
    """Dig progress, claim resolution, scores, events, ring; returns the number of claims."""
    for tr in treasures:
        tr.claimer = -1  # the kernel uses this column as per-tick scratch
    finishers: dict[int, list[int]] = {}
    for i, p in enumerate(players):
        if p.alive == 0:
            continue
        if p.dig == 0:
            _stop_digging(p)
            continue
        t, _ = ref_nearest(p.x, p.y, dig_radius, treasures)
        if t < 0:
            _stop_digging(p)
            continue
        if t == p.dig_treasure:
            p.dig_ticks += 1
        else:
            p.dig_treasure = t
            p.dig_start = tick
            p.dig_ticks = 1
        if p.dig_ticks >= dig_ticks:
            finishers.setdefault(t, []).append(i)
    claims = 0
    for t in sorted(finishers):
        winner = min(finishers[t], key=lambda i: (players[i].dig_start, i))
        tr = treasures[t]
        tr.claimer = winner
        tr.state = CLAIMED
        tr.claim_tick = tick
        players[winner].score += tr.value
        log.push(EVENT_CLAIM, tick, winner, players[winner].gen, t, tr.value)
        log.add_claim(tick, winner, t, tr.value, tr.x, tr.y)
        claims += 1
    if claims:
        # every digger of a claimed treasure starts over (the kernel sweeps every slot)
        for p in players:
            if p.dig_treasure >= 0 and treasures[p.dig_treasure].state == CLAIMED:
                _stop_digging(p)
    return claims


# --- heat ----------------------------------------------------------------------------------

def ref_heat_level(d2: float, radius: float) -> int:
    """0 at or beyond radius, else 1 + floor(255 * (R - d) / R), capped at 255."""
    if d2 >= radius * radius:
        return 0
    d = math.sqrt(d2)
    return min(1 + math.floor(255.0 * (radius - d) / radius), 255)


def ref_heat(players, treasures, heat_radius: float) -> None:
    for p in players:
        if p.alive == 0:
            p.heat = 0
            continue
        t, d2 = ref_nearest(p.x, p.y, heat_radius, treasures)
        p.heat = ref_heat_level(d2, heat_radius) if t >= 0 else 0


# --- leaderboard and hunts -----------------------------------------------------------------

def ref_rank(players, k: int) -> tuple[list[list[int]], int]:
    """Top k alive players by score desc, slot asc, as rows [slot, gen, score]; empty rows
    are [-1, 0, 0]. Returns (rows, number ranked)."""
    alive = sorted((i for i, p in enumerate(players) if p.alive), key=lambda i: (-players[i].score, i))
    top = alive[:k]
    rows = [[i, players[i].gen, players[i].score] for i in top]
    rows += [[-1, 0, 0] for _ in range(k - len(top))]
    return rows, len(top)


def ref_bury(tr: RefTreasure, rng: SplitMix64, weights, width: float, height: float) -> None:
    tr.x = f32(rng.next_unit() * width)
    tr.y = f32(rng.next_unit() * height)
    tr.value = rng.pick_weighted(weights) + 1
    tr.state = BURIED
    tr.gen += 1
    tr.claim_tick = -1
    tr.claimer = -1


def ref_age(treasures, tick, rng, weights, claim_show_ticks, respawn_ticks, width, height) -> None:
    for tr in treasures:
        if tr.state in (BURIED, REMOVED):
            continue
        age = tick - tr.claim_tick
        if age >= respawn_ticks:
            ref_bury(tr, rng, weights, width, height)
        elif tr.state == CLAIMED and age >= claim_show_ticks:
            tr.state = WAITING


@dataclass
class RefClock:
    hunt_id: int = 0
    hunt_start: int = 0
    last_hunt_end: int = -1


def ref_end_hunt(players, treasures, tick, clock: RefClock, rng, weights, k, log: RefLog,
                 width, height) -> list[list[int]]:
    """Close the hunt: HUNT_END + RANK events, reset scores and digs, re-bury all.
    Returns the final board rows."""
    board, ranked = ref_rank(players, k)
    log.push(EVENT_HUNT_END, tick, clock.hunt_id, ranked, 0, 0)
    for r in range(ranked):
        slot, gen, score = board[r]
        log.push(EVENT_RANK, tick, r, slot, gen, score)
    for p in players:
        p.score = 0
        _stop_digging(p)
    for tr in treasures:
        ref_bury(tr, rng, weights, width, height)
    clock.last_hunt_end = tick
    clock.hunt_id += 1
    clock.hunt_start = tick
    return board


def ref_place_player(p: RefPlayer, rng: SplitMix64, width: float, height: float) -> None:
    p.x = f32(rng.next_unit() * width)
    p.y = f32(rng.next_unit() * height)
    p.vx = p.vy = 0.0
    p.alive = 1
    p.gen += 1
    p.score = 0
    p.dig_treasure = -1
    p.dig_start = p.dig_ticks = p.heat = 0
    p.move_x = p.move_y = p.dig = p.input_seq = 0


# --- the world -----------------------------------------------------------------------------

def ticks_of(seconds: float, tick_rate: float) -> int:
    return max(1, int(round(seconds * tick_rate)))


class RefWorld:
    """The whole world in plain Python, stepped in sim/step.py's order of systems."""

    def __init__(self, rules, tick_rate: float) -> None:
        self.width = float(rules.world_width)
        self.height = float(rules.world_height)
        self.speed = float(rules.player_speed)
        self.tick_rate = float(tick_rate)
        self.dig_radius = float(rules.dig_radius)
        self.dig_ticks = ticks_of(rules.dig_time, tick_rate)
        self.heat_radius = float(rules.heat_radius)
        self.respawn_ticks = ticks_of(rules.respawn_delay, tick_rate)
        self.claim_show_ticks = ticks_of(rules.claim_show_time, tick_rate)
        self.hunt_ticks = ticks_of(rules.hunt_duration, tick_rate)
        self.cell_size = float(rules.cell_size)
        self.cols = math.ceil(rules.world_width / rules.cell_size)
        self.rows = math.ceil(rules.world_height / rules.cell_size)
        self.weights = list(rules.value_weights)
        self.k = rules.leaderboard_size
        n_p, n_t = rules.max_players, rules.treasure_count
        cells = self.cols * self.rows
        self.players = [RefPlayer() for _ in range(n_p)]
        self.treasures = [RefTreasure(gen=-1) for _ in range(n_t)]
        self.tick = 0
        self.clock = RefClock()
        self.log = RefLog(n_t + 1 + self.k)
        self.rng = SplitMix64(rules.seed)
        self.board = [[-1, -1, -1] for _ in range(self.k)]
        self.final_board = [[-1, -1, -1] for _ in range(self.k)]
        self.p_starts, self.p_items = [0] * (cells + 1), [0] * n_p
        self.t_starts, self.t_items = [0] * (cells + 1), [0] * n_t
        for tr in self.treasures:
            ref_bury(tr, self.rng, self.weights, self.width, self.height)

    def join(self, slot: int) -> int:
        ref_place_player(self.players[slot], self.rng, self.width, self.height)
        return self.players[slot].gen

    def leave(self, slot: int) -> None:
        p = self.players[slot]
        p.alive = p.dig = p.move_x = p.move_y = 0

    def step(self) -> int:
        tick = self.tick
        self.log.events = []
        if tick - self.clock.hunt_start >= self.hunt_ticks:
            self.final_board = ref_end_hunt(self.players, self.treasures, tick, self.clock, self.rng,
                                            self.weights, self.k, self.log, self.width, self.height)
        ref_age(self.treasures, tick, self.rng, self.weights, self.claim_show_ticks,
                self.respawn_ticks, self.width, self.height)
        ref_move(self.players, self.speed, self.tick_rate, self.width, self.height)
        ps, ts = self.players, self.treasures
        self.p_starts, self.p_items, _ = ref_grid(
            [p.x for p in ps], [p.y for p in ps], [p.alive for p in ps], 1,
            self.cell_size, self.cols, self.rows, self.p_items)
        self.t_starts, self.t_items, _ = ref_grid(
            [t.x for t in ts], [t.y for t in ts], [t.state for t in ts], BURIED,
            self.cell_size, self.cols, self.rows, self.t_items)
        claims = ref_dig(ps, ts, tick, self.dig_radius, self.dig_ticks, self.log)
        ref_heat(ps, ts, self.heat_radius)
        self.board, _ = ref_rank(ps, self.k)
        self.tick = tick + 1
        return claims

    def clock_values(self) -> list[int]:
        """The clock as sim.schema.CLOCK orders it."""
        c = self.clock
        values = {"tick": self.tick, "hunt_id": c.hunt_id, "hunt_start": c.hunt_start,
                  "event_count": len(self.log.events), "claim_head": self.log.head,
                  "last_hunt_end": c.last_hunt_end, "events_lost": self.log.lost}
        return [values[name] for name in S.CLOCK]

    def diff(self, world, limit: int = 8) -> list[str]:
        """Every mismatch between this model and a sim.world.World (floats bit for bit)."""
        out = diff_players(self.players, world.pf, world.pi, limit)
        out += diff_treasures(self.treasures, world.tf, world.ti, limit)
        if world.clock.tolist() != self.clock_values():
            out.append(f"clock: ref {self.clock_values()} != sim {world.clock.tolist()}")
        if int(world.rng[0]) != self.rng.state:
            out.append(f"rng: ref {self.rng.state} != sim {int(world.rng[0])}")
        out += self.log.diff(world.clock, world.events, world.claim_ring)
        for name in ("board", "final_board", "p_starts", "p_items", "t_starts", "t_items"):
            got = getattr(world, name).tolist()
            if got != getattr(self, name):
                out.append(f"{name}: ref {getattr(self, name)} != sim {got}")
        return out[:limit]

    def state_hash(self) -> str:
        """World.state_hash's digest, computed from this model's values packed by struct."""
        ps, ts = self.players, self.treasures

        def rows(objs, names):
            return [getattr(o, n) for n in names for o in objs]

        fields = [
            ("pf", "float32", "f", rows(ps, S.PLAYER_F32)),
            # input_seq (the last row) is the network's, not the simulation's: left out
            ("pi", "int32", "i", rows(ps, S.PLAYER_I32[:S.P_INPUT_SEQ])),
            ("tf", "float32", "f", rows(ts, S.TREASURE_F32)),
            ("ti", "int32", "i", rows(ts, S.TREASURE_I32)),
            ("p_starts", "int32", "i", self.p_starts),
            ("p_items", "int32", "i", self.p_items),
            ("t_starts", "int32", "i", self.t_starts),
            ("t_items", "int32", "i", self.t_items),
            ("clock", "int64", "q", self.clock_values()),
            ("rng", "uint64", "Q", [self.rng.state]),
            ("claim_ring", "int64", "q", [v for row in self.log.ring for v in row]),
            ("board", "int32", "i", [v for row in self.board for v in row]),
            ("final_board", "int32", "i", [v for row in self.final_board for v in row]),
        ]
        h = hashlib.blake2b(digest_size=16)
        for name, dtype, code, values in fields:
            h.update(name.encode())
            h.update(dtype.encode())
            h.update(struct.pack(f"<{len(values)}{code}", *values))
        return h.hexdigest()
