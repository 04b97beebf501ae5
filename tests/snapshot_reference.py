"""A plain-Python reference of net/snapshot.py (wire protocol v2), for the tests.

No numba, no stamps, no scratch: dicts, sets and lists, written from docs/PROTOCOL.md
sections 7 and 8. `ReferenceEncoder` keeps its own per-session ring of what each client
holds (Quake 3 style) and computes, from the world arrays and the session table, the
document every SNAPSHOT due this tick must carry, as a Python dict in the key order the
kernel writes. The tests check that the kernel's payload is exactly msgpack.packb of that
dict (msgpack's smallest forms), and that the kernel's ring holds what the reference holds.

The reference reads only inputs (world arrays, the session table, limits, rules); it never
reads the kernel's ring or scratch, so it cannot inherit the kernel's mistakes. `Rig` puts
a ServerProtocol and a ReferenceEncoder side by side for the tests.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import NamedTuple

from tests.conftest import NetKit
from net.limits import CLAIM_EVENTS_MAX, NetLimits
from net.sessions import CONNECTED, S_ID, S_SNAPSHOT_ACK, S_STATE
from net.snapshot_ring import OWN_CLAIMS
from sim import schema as S
from sim.grid import build_grid
from sim.rules import GameRules
from sim.world import new_world

MASK = 0xFFFFFFFF  # ticks go on the wire mod 2**32
V_MAX = 32767  # velocities are clamped to -V_MAX..V_MAX quanta per tick
Q_MAX = 65535

Player = tuple[int, int, int, int, int]  # id, qx, qy, vx, vy (quanta, quanta per tick)
Treasure = tuple[int, int, int, int]  # id, qx, qy, value


# ---- the formulas of docs/PROTOCOL.md 7.3 ------------------------------------------------

def q(v: float, extent: float) -> int:
    """floor(v * 65536 / extent), exactly, capped into 0..65535."""
    value = math.floor(Fraction(float(v)) * 65536 / Fraction(float(extent)))
    return min(Q_MAX, max(0, value))


def vq(v: float, extent: float, tick_rate: float) -> int:
    """floor(v * 65536 / extent / tick_rate + 0.5) in float64, in that order, clamped."""
    value = math.floor(float(v) * 65536.0 / float(extent) / float(tick_rate) + 0.5)
    return min(V_MAX, max(-V_MAX, value))


def predict(qb: int, v: int, dt: int) -> int:
    """Where a client extrapolates a coordinate (7.6): clamp(qb + v * dt, 0, 65535)."""
    return min(Q_MAX, max(0, qb + v * dt))


def nearest(x: float, y: float, radius: float, xs, ys, candidates, cap: int) -> list[tuple[float, int]]:
    """(d², index) of the candidates with d² <= radius² (float64), sorted by (d², index),
    at most `cap`."""
    r2 = radius * radius
    found = []
    for j in candidates:
        dx = float(xs[j]) - x
        dy = float(ys[j]) - y
        d2 = dx * dx + dy * dy
        if d2 <= r2:
            found.append((d2, j))
    found.sort()
    return found[:cap]


def cell_of(v: float, cell_size: float, cells: int) -> int:
    """sim.grid.cell_coord: the cell column (or row) of a coordinate, clamped."""
    c = float(v) / cell_size
    if not c >= 0.0:
        return 0
    return cells - 1 if c >= cells else int(c)


@dataclass(frozen=True)
class Grid:
    """The world's grid geometry: the order in which the server lists entities."""

    cell_size: float
    cols: int
    rows: int

    def order(self, ids, xs, ys) -> list[int]:
        """ids in grid scan order: by cell (row, then column), then by id."""
        def key(j):
            return (cell_of(ys[j], self.cell_size, self.rows) * self.cols
                    + cell_of(xs[j], self.cell_size, self.cols), j)
        return sorted(ids, key=key)


def in_view(x: float, y: float, enter: float, leave: float, xs, ys, candidates, cap: int,
            last_ids: set[int], grid: Grid) -> list[int]:
    """Area of interest with hysteresis (7.4): in view are the candidates within the
    enter radius, and those within the exit radius that were in the last snapshot sent;
    of these the `cap` nearest (ties by lower id), listed in grid scan order."""
    enter2 = enter * enter
    chosen = [j for d2, j in nearest(x, y, leave, xs, ys, candidates, len(xs))
              if d2 <= enter2 or j in last_ids][:cap]
    return grid.order(chosen, xs, ys)


# ---- what the server remembers per client --------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """The entity lists a client holds after one snapshot (a ring entry)."""

    tick: int  # the full tick (not mod 2**32)
    players: tuple[Player, ...]
    treasures: tuple[Treasure, ...]


@dataclass
class Ring:
    """One session's history: its last `depth` entries, how many were stored, the last
    sequence number used."""

    sid: int
    depth: int
    count: int = 0
    seq: int = 0
    entries: deque = field(default_factory=deque)
    # own claims: [tick, treasure, value, first confirmed snapshot tick or -1], in the
    # order they were added (the kernel's table order does not matter: "my" is sorted)
    own: list = field(default_factory=list)
    result: list = field(default_factory=lambda: [-1, -1, -1])  # hunt, sent tick, done

    def add(self, entry: Entry) -> None:
        self.entries.append(entry)
        while len(self.entries) > self.depth:
            self.entries.popleft()
        self.count += 1

    def baseline(self, ack: int, tick: int) -> Entry | None:
        """The newest entry whose tick is `ack` mod 2**32 and older than `tick`; ack 0 is
        "none"."""
        if ack == 0:
            return None
        for entry in reversed(self.entries):
            if entry.tick < tick and entry.tick & MASK == ack:
                return entry
        return None

    @property
    def last(self) -> Entry | None:
        return self.entries[-1] if self.entries else None


class Caps(NamedTuple):
    """The caps and windows, derived from NetLimits and the rates as docs/PROTOCOL.md
    says (independently of net/server.py, which the tests compare against)."""

    max_players: int
    max_treasures: int
    claim_window_ticks: int
    leaderboard_every_snapshots: int
    result_window_ticks: int
    snapshot_every: int
    exit_scale: float
    tolerance_x: int
    tolerance_y: int

    @classmethod
    def of(cls, limits, rules, tick_rate: float, snapshot_every: int = 1) -> "Caps":
        def ticks(seconds: float, rate: float) -> int:
            return max(1, int(round(seconds * rate)))
        return cls(
            max_players=limits.max_visible_players,
            max_treasures=limits.max_visible_treasures,
            claim_window_ticks=ticks(limits.claim_event_window, tick_rate),
            leaderboard_every_snapshots=ticks(limits.leaderboard_every,
                                              tick_rate / snapshot_every),
            result_window_ticks=ticks(limits.hunt_result_window, tick_rate),
            snapshot_every=snapshot_every,
            exit_scale=1.0 + limits.aoi_hysteresis,
            tolerance_x=int(limits.delta_tolerance * 65536 / rules.world_width),
            tolerance_y=int(limits.delta_tolerance * 65536 / rules.world_height),
        )

    @property
    def tolerance(self) -> int:
        return min(self.tolerance_x, self.tolerance_y)


@dataclass(frozen=True)
class Expected:
    """One snapshot the kernel must write."""

    slot: int
    sid: int
    seq: int
    doc: dict
    entry: Entry  # what the client holds after it
    baseline: Entry | None


def diff_players(base: Entry, tick: int, sel: list[int], now: dict[int, tuple],
                 tolerance: int) -> tuple[list, list, list, list, list[Player]]:
    """(pm, pv, pr, pn, rows held after): docs/PROTOCOL.md 7.6 from the server's side."""
    dt = tick - base.tick
    pm, pv, pr = [], [], []
    rows: list[Player] = []
    in_sel = set(sel)
    for i, (j, bqx, bqy, bvx, bvy) in enumerate(base.players):
        if j not in in_sel:
            pr.append(i)
            continue
        px, py = predict(bqx, bvx, dt), predict(bqy, bvy, dt)
        qx, qy, vx, vy = now[j]
        rx, ry = qx - px, qy - py
        if (vx, vy) == (bvx, bvy):
            if abs(rx) <= tolerance and abs(ry) <= tolerance:
                rows.append((j, px, py, bvx, bvy))  # KEEP: the extrapolation stands
                continue
            pm += [i, rx, ry]
        else:
            pv += [i, rx, ry, vx, vy]
        rows.append((j, qx, qy, vx, vy))
    base_ids = {row[0] for row in base.players}
    new = [(j,) + now[j] for j in sel if j not in base_ids]
    return pm, pv, pr, [v for row in new for v in row], rows + new


def diff_treasures(base: Entry, sel: list[int], now: dict[int, Treasure]
                   ) -> tuple[list, list, list[Treasure]]:
    """(tx, tn, rows held after): a baseline treasure stays only if unchanged and in view."""
    tx, kept = [], []
    in_sel = set(sel)
    for i, row in enumerate(base.treasures):
        if row[0] in in_sel and now[row[0]] == row:
            kept.append(row)
        else:
            tx.append(i)
    kept_ids = {row[0] for row in kept}
    new = [now[t] for t in sel if t not in kept_ids]
    return tx, [v for row in new for v in row], kept + new


class ReferenceEncoder:
    """What encode_snapshots must write, tick after tick, for one ServerProtocol."""

    def __init__(self, caps: Caps, depth: int) -> None:
        self.caps = caps
        self.depth = depth
        self.rings: dict[int, Ring] = {}  # by slot

    def ring(self, slot: int, sid: int) -> Ring:
        """The slot's ring, fresh when the slot holds a new session."""
        ring = self.rings.get(slot)
        if ring is None or ring.sid != sid:
            ring = self.rings[slot] = Ring(sid, self.depth)
        return ring

    def encode(self, world, sessions, durable: int = 2**62) -> dict[int, Expected]:
        """The snapshots of the tick that just ran (clock[TICK] - 1), by slot, and the
        rings updated as the kernel updates its own. durable: the newest tick whose claims
        are durable (ServerProtocol.durable)."""
        caps = self.caps
        # this tick's claims join their claimers' own claims (every session, due or not)
        for e in range(int(world.clock[S.EVENT_COUNT])):
            kind, _, slot, gen, treasure, value = (int(v) for v in world.events[e])
            if (kind != S.EVENT_CLAIM or sessions[S_STATE, slot] != CONNECTED
                    or int(world.pi[S.P_GEN, slot]) != gen):
                continue
            own = self.ring(slot, int(sessions[S_ID, slot])).own
            if len(own) == OWN_CLAIMS:  # full: the oldest goes
                own.remove(min(own, key=lambda c: c[0]))
            own.append([int(world.events[e, S.EV_TICK]), treasure, value, -1])
        kr, pf, pi, tf, ti, clock = world.kr, world.pf, world.pi, world.tf, world.ti, world.clock
        W, H, rate = kr.world_width, kr.world_height, kr.tick_rate
        tick = int(clock[S.TICK]) - 1
        grid = Grid(kr.cell_size, kr.grid_cols, kr.grid_rows)
        alive = [j for j in range(pi.shape[1]) if pi[S.P_ALIVE, j] == 1]
        buried = [t for t in range(ti.shape[1]) if ti[S.T_STATE, t] == S.BURIED]
        players_now = {j: (q(pf[S.PX, j], W), q(pf[S.PY, j], H), vq(pf[S.PVX, j], W, rate),
                           vq(pf[S.PVY, j], H, rate)) for j in alive}
        treasures_now = {t: (t, q(tf[S.TX, t], W), q(tf[S.TY, t], H), int(ti[S.T_VALUE, t]))
                         for t in buried}
        head = int(clock[S.CLAIM_HEAD])
        claims = []  # (tick, slot, treasure, value), newest first, inside the window
        for back in range(min(head, S.CLAIM_RING)):
            row = world.claim_ring[(head - 1 - back) % S.CLAIM_RING]
            if tick - int(row[S.CR_TICK]) >= caps.claim_window_ticks:
                break
            claims.append(tuple(int(row[k]) for k in (S.CR_TICK, S.CR_SLOT, S.CR_TREASURE,
                                                       S.CR_VALUE, S.CR_X, S.CR_Y)))
        board = [int(v) for r in world.board if r[S.LB_SLOT] >= 0
                 for v in (r[S.LB_SLOT], r[S.LB_SCORE])]
        final = [int(v) for r in world.final_board if r[S.LB_SLOT] >= 0
                 for v in (r[S.LB_SLOT], r[S.LB_SCORE])]
        last_end = int(clock[S.LAST_HUNT_END])
        ticks_left = max(0, kr.hunt_ticks - (tick + 1 - int(clock[S.HUNT_START])))
        out: dict[int, Expected] = {}
        for s in range(sessions.shape[1]):
            if sessions[S_STATE, s] != CONNECTED or pi[S.P_ALIVE, s] != 1:
                continue
            if (tick + s) % caps.snapshot_every != 0:
                continue
            ring = self.ring(s, int(sessions[S_ID, s]))
            last = ring.last
            x, y = float(pf[S.PX, s]), float(pf[S.PY, s])
            last_p = {row[0] for row in last.players} if last else set()
            last_t = {row[0] for row in last.treasures} if last else set()
            sel_p = in_view(x, y, kr.view_radius, kr.view_radius * caps.exit_scale, pf[S.PX],
                            pf[S.PY], [j for j in alive if j != s], caps.max_players, last_p, grid)
            sel_t = in_view(x, y, kr.reveal_radius, kr.reveal_radius * caps.exit_scale,
                            tf[S.TX], tf[S.TY], buried, caps.max_treasures, last_t, grid)
            base = ring.baseline(int(sessions[S_SNAPSHOT_ACK, s]), tick)
            doc: dict = {"t": tick & MASK, "a": int(pi[S.P_INPUT_SEQ, s]) & MASK}
            if base is not None:
                doc["b"] = base.tick & MASK
            doc["h"] = [int(clock[S.HUNT_ID]), ticks_left]
            doc["me"] = [s, q(x, W), q(y, H), int(pi[S.P_SCORE, s]),
                         min(255, int(pi[S.P_DIG_TICKS, s]) * 255 // kr.dig_ticks),
                         int(pi[S.P_HEAT, s])]
            if base is None:
                players = [(j,) + players_now[j] for j in sel_p]
                treasures = [treasures_now[t] for t in sel_t]
                doc["p"] = [v for row in players for v in row]
                doc["tr"] = [v for row in treasures for v in row]
            else:
                pm, pv, pr, pn, players = diff_players(base, tick, sel_p, players_now,
                                                       caps.tolerance)
                tx, tn, treasures = diff_treasures(base, sel_t, treasures_now)
                for key, value in (("pm", pm), ("pv", pv), ("pr", pr), ("pn", pn),
                                   ("tx", tx), ("tn", tn)):
                    if value:
                        doc[key] = value
            recent = [c for c in claims if (base is None or c[0] > base.tick)
                      and (c[1] == s or (float(c[4]) - x) ** 2 + (float(c[5]) - y) ** 2
                           <= kr.view_radius ** 2)]
            recent = recent[:CLAIM_EVENTS_MAX]  # the newest
            if recent:
                doc["ev"] = [(c[0] & MASK) if k == 0 else c[k] for c in recent for k in range(4)]
            # own claims: until a snapshot that said "confirmed" is acked
            base_tick = base.tick if base is not None else -1
            ring.own = [c for c in ring.own if not (c[3] >= 0 and base_tick >= c[3])]
            for c in ring.own:
                if c[3] < 0 and c[0] <= durable:
                    c[3] = tick
            if ring.own:
                doc["my"] = [v for c in sorted(ring.own, key=lambda c: (c[0], c[1]))
                             for v in (c[0] & MASK, c[1], c[2], int(c[3] >= 0))]
            # the last hunt's result: until acked, to sessions there within its window
            show_result = False
            if last_end >= 0:
                ended = int(clock[S.HUNT_ID]) - 1
                res = ring.result
                if res[0] != ended:
                    ring.result = res = [ended, -1, 0 if tick - last_end < caps.result_window_ticks else 1]
                elif res[2] == 0 and res[1] >= 0 and base_tick >= res[1]:
                    res[2] = 1
                show_result = res[2] == 0
                if show_result and res[1] < 0:
                    res[1] = tick
            if ring.count % caps.leaderboard_every_snapshots == 0 and not show_result:
                doc["lb"] = board
            if show_result:
                doc["hr"] = [int(clock[S.HUNT_ID]) - 1] + final
            ring.seq += 1
            entry = Entry(tick, tuple(players), tuple(treasures))
            out[s] = Expected(s, ring.sid, ring.seq, doc, entry, base)
            ring.add(entry)
        return out

    def full_view(self, world, slot: int, last: Entry | None) -> tuple[list[Player], list[Treasure]]:
        """The lists a full snapshot of the current tick would carry to `slot`, given the
        entry sent before it (for hysteresis)."""
        caps, kr, pf, pi, tf, ti = self.caps, world.kr, world.pf, world.pi, world.tf, world.ti
        W, H, rate = kr.world_width, kr.world_height, kr.tick_rate
        grid = Grid(kr.cell_size, kr.grid_cols, kr.grid_rows)
        alive = [j for j in range(pi.shape[1]) if pi[S.P_ALIVE, j] == 1 and j != slot]
        buried = [t for t in range(ti.shape[1]) if ti[S.T_STATE, t] == S.BURIED]
        x, y = float(pf[S.PX, slot]), float(pf[S.PY, slot])
        last_p = {row[0] for row in last.players} if last else set()
        last_t = {row[0] for row in last.treasures} if last else set()
        sel_p = in_view(x, y, kr.view_radius, kr.view_radius * caps.exit_scale, pf[S.PX],
                        pf[S.PY], alive, caps.max_players, last_p, grid)
        sel_t = in_view(x, y, kr.reveal_radius, kr.reveal_radius * caps.exit_scale, tf[S.TX],
                        tf[S.TY], buried, caps.max_treasures, last_t, grid)
        players = [(j, q(pf[S.PX, j], W), q(pf[S.PY, j], H), vq(pf[S.PVX, j], W, rate),
                    vq(pf[S.PVY, j], H, rate)) for j in sel_p]
        treasures = [(t, q(tf[S.TX, t], W), q(tf[S.TY, t], H), int(ti[S.T_VALUE, t]))
                     for t in sel_t]
        return players, treasures


def ring_entries(ring, slot: int) -> list[Entry]:
    """The kernel's ring (net.snapshot_ring.SnapshotRing) for `slot`, oldest first, as
    Entries (velocities unbiased)."""
    depth = ring.tick.shape[1]
    count = int(ring.count[slot])
    out = []
    for k in range(max(0, count - depth), count):
        r = k % depth
        n_p, n_t = int(ring.n_players[slot, r]), int(ring.n_treasures[slot, r])
        players = tuple((int(a), int(b), int(c), int(d) - 32768, int(e) - 32768)
                        for a, b, c, d, e in ring.players[slot, r, :n_p])
        treasures = tuple(tuple(int(v) for v in row) for row in ring.treasures[slot, r, :n_t])
        out.append(Entry(int(ring.tick[slot, r]), players, treasures))
    return out


# ---- rigs: a server over a world set up by hand, with the reference beside it --------------

class Rig:
    """A ServerProtocol over a small world, its first `sessions` slots connected (one
    ClientProtocol each, not kept), and a ReferenceEncoder that follows it."""

    def __init__(self, sessions: int, limits=None, snapshot_every: int = 1,
                 tick_rate: float = 20.0, **rules) -> None:
        base = dict(world_width=512.0, world_height=512.0, max_players=4, treasure_count=8,
                    cell_size=64.0, seed=1)
        base.update(rules)
        if base["max_players"] < sessions:
            base["max_players"] = sessions
        self.limits = limits or NetLimits()
        self.world = new_world(GameRules(**base), tick_rate)
        self.proto = NetKit.server_for(self.world, self.limits, tick_rate,
                                       snapshot_every=snapshot_every)
        self.ref = ReferenceEncoder(Caps.of(self.limits, self.world.rules, tick_rate,
                                            snapshot_every), self.limits.snapshot_ring)
        self.clients = {}
        for i in range(sessions):
            self.connect(NetKit.client(f"c{i}", salt=i + 1), (f"10.{i // 250}.{i % 250}.1",
                                                              3000 + i))
        self.proto.datagrams_to_send()

    def connect(self, client, addr) -> int:
        """Open a session for `client` from `addr`; return its slot."""
        NetKit.connect(self.proto, client, addr)
        assert client.info is not None
        self.clients[client.info.slot] = client
        return client.info.slot

    def ack(self, slot: int, tick: int) -> None:
        """Set the session's snapshot ack as an INPUT would (u32)."""
        self.proto.sessions[S_SNAPSHOT_ACK, slot] = tick & MASK


def rebuild_grids(world) -> None:
    """The world's grids after positions or states were written by hand."""
    kr = world.kr
    build_grid(world.pf[S.PX], world.pf[S.PY], world.pi[S.P_ALIVE], 1, kr.cell_size,
               kr.grid_cols, kr.grid_rows, world.p_starts, world.p_items)
    build_grid(world.tf[S.TX], world.tf[S.TY], world.ti[S.T_STATE], S.BURIED, kr.cell_size,
               kr.grid_cols, kr.grid_rows, world.t_starts, world.t_items)
