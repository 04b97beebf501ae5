"""The control plane on the tick thread: the admin API's calls, answered between ticks.

net/admin_http.py checks each request and queues it here as an AdminCall; the GameServer
calls HuntMaster.serve_pending() once per tick, after the tick's work, so every command
lands at a tick boundary and never races the simulation. Idle, that costs one integer
compare and one look at the queue's length. Every applied command (not the reads) is
appended to server.admin_log as (tick, name, args): the world commands among them
(sim.control.WORLD_COMMANDS), re-applied at the same ticks, give the same world; kicks
and bans act on sessions and reach the world as leaves.

Reads are built in Python on request (status, players: one row per player, only when
asked); nothing here runs per player per tick.
"""

from __future__ import annotations

import logging
import queue
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from net.address import int_to_ip, ip_to_int
from net.admin_http import AdminCall
from net.bans import ADDRESS, CLIENT_ID
from net.drops import drops_by_reason
from net.sessions import (CONNECTED, S_CLIENT_ID, S_IP, S_JOINED, S_LAST_HEARD, S_PORT, S_RTT,
                          S_STATE)
from sim import schema as S
from sim.control import (clear_treasures, end_hunt_now, hunt_clock, set_hunt_duration,
                         spawn_treasures, treasure_census)
from tick.stats import phase_figures
from tick.timings import COL_START

log = logging.getLogger("xmarks.admin")

#: Calls waiting for the tick thread at most; more are refused with 503.
QUEUE_LIMIT = 64
#: Seconds of tick timings the status figures cover.
STATUS_WINDOW_S = 60.0
#: Seconds of counters the bandwidth figures cover, sampled once a second.
BANDWIDTH_WINDOW_S = 10
SAMPLE_EVERY_NS = 1_000_000_000
#: Commands that change something (logged in server.admin_log); the rest are reads.
COMMANDS = frozenset({"kick", "ban", "unban", "hunt_end", "hunt_start", "hunt_duration",
                      "treasures_spawn", "treasures_clear"})

Answer = tuple[int, dict[str, Any]]


class HuntMaster:
    """Answers the admin API's calls on the tick thread. `submit` is the AdminServer's
    `handle`; the GameServer calls `serve_pending` once per tick."""

    def __init__(self) -> None:
        self.calls: queue.Queue[AdminCall] = queue.Queue(maxsize=QUEUE_LIMIT)
        self.open = True
        # (time ns, bytes out, packets out, packets in), once a second, the newest last
        self._samples: deque[tuple[int, int, int, int]] = deque(
            maxlen=BANDWIDTH_WINDOW_S + 2)
        self._next_sample = 0
        self._handlers: dict[str, Callable[[Any, dict, int], Answer]] = {
            "status": self._status, "players": self._players, "kick": self._kick,
            "ban": self._ban, "bans": self._bans, "unban": self._unban,
            "hunt_end": self._hunt_end, "hunt_start": self._hunt_start,
            "hunt_duration": self._hunt_duration, "treasures": self._treasures,
            "treasures_spawn": self._spawn, "treasures_clear": self._clear,
        }

    # ---- the HTTP thread's side ---------------------------------------------------------

    def submit(self, call: AdminCall) -> None:
        """Queue `call` for the tick thread; queue.Full when full or closed (-> 503)."""
        if not self.open:
            raise queue.Full("the server is stopping")
        self.calls.put_nowait(call)

    # ---- the tick thread's side ---------------------------------------------------------

    def serve_pending(self, server, now: int) -> None:
        """Between two ticks: sample the counters once a second and answer every queued
        call. server: the GameServer; now: monotonic ns (the tick's end)."""
        if now >= self._next_sample:
            self._next_sample = now + SAMPLE_EVERY_NS
            self._samples.append((now, server.bytes_out, server.packets_out, server.packets_in))
        if not self.calls.queue:  # as queue.empty(), without its lock: no allocation
            return
        for call in self._taken():
            call.answer(*self.carry_out(server, call.name, call.args, now))

    def _taken(self):
        """The queued calls, each taken (a call its HTTP thread withdrew is skipped)."""
        while True:
            try:
                call = self.calls.get_nowait()
            except queue.Empty:
                return
            if call.take():
                yield call

    def carry_out(self, server, name: str, args: dict, now: int) -> Answer:
        """Run one checked command or read now; (HTTP status, JSON body). An applied
        command is logged in server.admin_log. Never raises."""
        handler = self._handlers.get(name)
        if handler is None:
            return 404, {"error": f"no such command: {name}"}
        tick = server.world.tick
        try:
            status, body = handler(server, args, now)
        except Exception as exc:  # a bug here must not stop the tick
            log.exception("admin command %s %r failed", name, args)
            return 500, {"error": f"internal error: {type(exc).__name__}"}
        if status == 200 and name in COMMANDS:
            server.note_command(tick, name, args)
            log.info("admin: %s %s at tick %d", name, _args_text(args), tick)
        return status, body

    def close(self) -> None:
        """Refuse new calls and answer the queued ones with 503 (the server stops)."""
        self.open = False
        for call in self._taken():
            call.answer(503, {"error": "server stopping"})

    # ---- reads --------------------------------------------------------------------------

    def _status(self, server, args: dict, now: int) -> Answer:
        world, proto = server.world, server.protocol
        rate = server.tick_rate
        rows = server.timings.latest(int(STATUS_WINDOW_S * rate))
        rows = rows[rows[:, COL_START] >= now - int(STATUS_WINDOW_S * 1e9)]  # slow ticks
        names = proto.names
        board = [{"rank": r + 1, "slot": int(slot), "name": names[int(slot)], "score": int(score)}
                 for r, (slot, _gen, score) in enumerate(world.board.tolist()) if slot >= 0]
        return 200, {
            "tick": world.tick, "tick_rate": rate, "snapshot_rate": float(proto.snapshot_rate),
            "uptime_s": round(max(0, now - server.started_ns) / 1e9, 3),
            "players": proto.connected_count(), "max_players": world.rules.max_players,
            "hunt": _hunt(world, rate), "budget_ms": 1000.0 / rate,
            "phases": phase_figures(rows), "overruns": int(server.timings.overruns),
            "drops": drops_by_reason(proto.drops), "packets_in": int(server.packets_in),
            "packets_out": int(server.packets_out), "bytes_out": int(server.bytes_out),
            "claims": int(server.claims), "bandwidth": self._bandwidth(server, now),
            "leaderboard": board, "last_hunt": _last_hunt(world, proto),
            "ledger": _ledger(getattr(server, "ledger", None)),
        }

    def _bandwidth(self, server, now: int) -> dict[str, float]:
        """Rates over the last BANDWIDTH_WINDOW_S seconds (or since the first sample)."""
        since = now - BANDWIDTH_WINDOW_S * SAMPLE_EVERY_NS
        first = next((s for s in self._samples if s[0] >= since), None)
        if first is None or now <= first[0]:
            return {"bytes_out_per_s": 0.0, "packets_out_per_s": 0.0, "packets_in_per_s": 0.0}
        seconds = (now - first[0]) / 1e9
        return {"bytes_out_per_s": round((server.bytes_out - first[1]) / seconds, 1),
                "packets_out_per_s": round((server.packets_out - first[2]) / seconds, 1),
                "packets_in_per_s": round((server.packets_in - first[3]) / seconds, 1)}

    def _players(self, server, args: dict, now: int) -> Answer:
        # one row per player, built from whole columns (a 10k-player answer costs a few ms
        # of the tick thread, once per request)
        proto = server.protocol
        s = proto.sessions
        slots = np.flatnonzero(s[S_STATE] == CONNECTED)
        cols = s[:, slots]
        ids = (cols[S_CLIENT_ID].astype(np.uint64)).tolist()  # the u64s' bits
        rtt = np.where(cols[S_RTT] > 0, np.round(cols[S_RTT] / 1e6, 3), -1.0).tolist()
        idle = np.round(np.maximum(0, now - cols[S_LAST_HEARD]) / 1e9, 3).tolist()
        age = np.round(np.maximum(0, now - cols[S_JOINED]) / 1e9, 3).tolist()
        names = proto.names
        players = [
            {"slot": slot, "client_id": cid, "name": names[slot],
             "address": f"{ip >> 24}.{ip >> 16 & 255}.{ip >> 8 & 255}.{ip & 255}:{port}",
             "score": score, "rtt_ms": None if r < 0 else r, "idle_s": i, "connected_s": c}
            for slot, cid, ip, port, score, r, i, c in zip(
                slots.tolist(), ids, cols[S_IP].tolist(), cols[S_PORT].tolist(),
                server.world.pi[S.P_SCORE, slots].tolist(), rtt, idle, age)]
        return 200, {"players": players}

    def _bans(self, server, args: dict, now: int) -> Answer:
        return 200, {"bans": [{"kind": b.kind, "value": _value(b.kind, b.value),
                               "expires_in_s": round((b.until_ns - now) / 1e9, 3),
                               "reason": b.reason}
                              for b in server.protocol.bans.active(now)]}

    def _treasures(self, server, args: dict, now: int) -> Answer:
        census = treasure_census(server.world)
        return 200, {"capacity": census["capacity"], "buried": census["buried"],
                     "claimed": census["claimed"],
                     "by_value": {str(v): n for v, n in census["by_value"].items()}}

    # ---- commands -----------------------------------------------------------------------

    def _kick(self, server, args: dict, now: int) -> Answer:
        slots = _matching(server.protocol, args)
        if not slots:
            return 409, {"error": f"no player matches {_args_text(args)}"}
        return 200, {"kicked": _kick_all(server, slots)}

    def _ban(self, server, args: dict, now: int) -> Answer:
        kind = CLIENT_ID if "client_id" in args else ADDRESS
        value = args["client_id"] if kind == CLIENT_ID else ip_to_int(args["address"])
        seconds = args["seconds"]
        server.protocol.bans.ban(kind, value, now + int(seconds * 1e9), args["reason"], now=now)
        kicked = _kick_all(server, _matching(server.protocol, args))
        return 200, {"ban": {"kind": kind, "value": _value(kind, value),
                             "expires_in_s": seconds}, "kicked": kicked}

    def _unban(self, server, args: dict, now: int) -> Answer:
        kind = CLIENT_ID if "client_id" in args else ADDRESS
        value = args["client_id"] if kind == CLIENT_ID else ip_to_int(args["address"])
        server.protocol.bans.purge(now)
        if not server.protocol.bans.unban(kind, value):
            return 409, {"error": f"no ban on {_args_text(args)}"}
        return 200, {"removed": True}

    def _hunt_end(self, server, args: dict, now: int) -> Answer:
        ended = end_hunt_now(server.world)
        _world_events(server)
        return 200, {"hunt": _hunt(server.world, server.tick_rate), "ended": ended,
                     "results": _last_hunt(server.world, server.protocol)["results"]}

    def _hunt_start(self, server, args: dict, now: int) -> Answer:
        # a hunt always runs here (its end opens the next): starting one ends this one
        end_hunt_now(server.world)
        _world_events(server)
        return 200, {"hunt": _hunt(server.world, server.tick_rate)}

    def _hunt_duration(self, server, args: dict, now: int) -> Answer:
        set_hunt_duration(server.world, args["seconds"])
        return 200, {"hunt": _hunt(server.world, server.tick_rate)}

    def _spawn(self, server, args: dict, now: int) -> Answer:
        spawned = spawn_treasures(server.world, args["count"])
        census = treasure_census(server.world)
        if spawned == 0:
            return 409, {"error": f"no room: all {census['capacity']} treasures are buried"}
        return 200, {"spawned": spawned, "buried": census["buried"]}

    def _clear(self, server, args: dict, now: int) -> Answer:
        return 200, {"cleared": clear_treasures(server.world)}


def _last_hunt(world, proto) -> dict | None:
    """The final board of the hunt that ended last (the ledger keeps every one): id, the
    tick it ended, and its ranks with each player's client id and name as they are now
    (a player who left since has neither). None before the first hunt ends."""
    end = int(world.clock[S.LAST_HUNT_END])
    if end < 0:
        return None
    results = []
    for r, (slot, _gen, score) in enumerate(world.final_board.tolist()):
        if slot < 0:
            continue
        here = bool(world.pi[S.P_ALIVE, slot]) and proto.names[slot] != ""
        results.append({"rank": r + 1, "slot": int(slot), "score": int(score),
                        "client_id": proto.client_id(slot) if here else None,
                        "name": proto.names[slot] if here else None})
    return {"id": int(world.clock[S.HUNT_ID]) - 1, "ended_tick": end, "results": results}


def _hunt(world, tick_rate: float) -> dict[str, float]:
    """{id, elapsed_s, remaining_s, duration_s} of the running hunt."""
    hunt_id, elapsed, duration = hunt_clock(world)
    return {"id": hunt_id, "elapsed_s": round(elapsed / tick_rate, 3),
            "remaining_s": round(max(0, duration - elapsed) / tick_rate, 3),
            "duration_s": round(duration / tick_rate, 3)}


def _ledger(ledger) -> dict[str, Any] | None:
    if ledger is None:
        return None
    st = ledger.status()
    error = st.get("last_error")
    return {"backend": str(st.get("backend", "")), "pending": int(st.get("pending", 0)),
            "committed": int(st.get("committed", 0)), "faults": int(st.get("faults", 0)),
            "last_error": None if error is None else str(error)}


def _matching(proto, args: dict) -> list[int]:
    """Slots of the connected players that args' slot / client_id / address names."""
    if "slot" in args:
        slot = args["slot"]
        connected = slot < proto.capacity and proto.sessions[S_STATE, slot] == CONNECTED
        return [slot] if connected else []
    if "client_id" in args:
        slot = proto.slot_of_client(args["client_id"])
        return [] if slot is None else [slot]
    return proto.slots_of_address(ip_to_int(args["address"]))


def _kick_all(server, slots: list[int]) -> list[int]:
    """Kick every slot (the clients are sent DISCONNECT kicked with the next tick's
    replies); return those kicked."""
    left = [ev for ev in (server.protocol.kick(slot) for slot in slots) if ev is not None]
    if left:
        server.between_ticks(left)
    return [ev.slot for ev in left]


def _world_events(server) -> None:
    """Hand the events a command put in world.events to the server's usual handling."""
    if server.world.event_count:
        server.between_ticks([], world_events=True)


def _value(kind: str, value: int) -> int | str:
    return int_to_ip(value) if kind == ADDRESS else value


def _args_text(args: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in args.items()) or "-"
