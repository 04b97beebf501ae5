"""Nothing lost, end to end: a real `xmarks serve` with hunting bots, killed with SIGKILL
mid-hunt and started again; then stopped with SIGTERM.

- Every claim a bot was shown as confirmed ("my" rows with confirmed = 1) is in the ledger,
  with its player's client id.
- The restarted server resumes the same world and hunt: the same bots (same client ids)
  come back with their scores, and the confirmed claims' treasures are not buried again.
- SIGTERM: exit code 0 within 5 seconds, every ledger record committed, a checkpoint
  written that loads.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
import urllib.request


from net.keys import load_key
from sim import schema as S
from sim.rules import GameRules
from store.checkpoint import load_checkpoint
from store.sqlite_ledger import SqliteLedger, read_world_uid
from tests.test_e2e_loopback import clean_env, free_udp_port, read_lines, xmarks_command
from tick.clock import now_s
from tick.swarm import Swarm

BOTS = 6
RULES = dict(world_width=500.0, world_height=500.0, max_players=16, treasure_count=24,
             reveal_radius=250.0, dig_time=0.2, respawn_delay=60.0, hunt_duration=600.0,
             seed=3)


def free_tcp_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`xmarks serve` in `where`, its log lines collected."""

    def __init__(self, where, port: int, admin_port: int) -> None:
        self.where = where
        self.port = port
        self.admin_port = admin_port
        ready = where / "ready.json"
        if ready.exists():
            ready.unlink()
        env = clean_env() | {"XMARKS_ADMIN_PORT": str(admin_port)}
        self.proc = subprocess.Popen(
            xmarks_command() + ["serve", "--port", str(port), "--config", "world.toml",
                                "--ready-file", "ready.json", "--duration", "120"],
            cwd=where, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=read_lines, args=(self.proc.stderr, self.lines),
                         daemon=True).start()
        deadline = time.monotonic() + 90  # a cold numba cache compiles every kernel
        while not ready.exists():
            assert self.proc.poll() is None, "serve exited early:\n" + self.text()
            assert time.monotonic() < deadline, "serve was not ready:\n" + self.text()
            time.sleep(0.05)

    def text(self) -> str:
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.log.append(line)
        return "".join(self.log)

    def admin(self, path: str) -> dict:
        token = (self.where / "xmarks.admin-token").read_text().strip()
        request = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.loads(answer.read())


def hunt_with(server: Server, client_ids: list[int], until, limit_s: float):
    """Run bots (these client ids) against the server on a thread until until(swarm) or
    limit_s; return the swarm and a function that stops it and joins the thread."""
    key = load_key(str(server.where / "xmarks.key"))
    swarm = Swarm(("127.0.0.1", server.port), len(client_ids), seed=1, key=key,
                  client_ids=client_ids, progress=None)
    stop = threading.Event()
    thread = threading.Thread(target=swarm.run, args=(limit_s + 30,), daemon=True,
                              kwargs={"stop": stop.is_set})
    thread.start()
    start = now_s()
    while not until(swarm) and now_s() - start < limit_s:
        time.sleep(0.05)

    def finish():
        stop.set()
        thread.join(timeout=10)
    return swarm, finish


@contextlib.contextmanager
def live_hunt(server, bots: int, seed: int, key: bytes):
    """A warmed-up in-process GameServer serving on a thread, and `bots` Swarm bots on
    another; yields the swarm. On exit the bots stop, then the server (shutdown: leaves,
    ledger flush, final hash), and its socket is closed."""
    server.warm_up()
    serving = threading.Thread(target=server.run, args=(60.0,), daemon=True)
    serving.start()
    swarm = Swarm(server.address, bots, seed=seed, key=key, progress=None)
    stop = threading.Event()
    hunting = threading.Thread(target=swarm.run, args=(60.0,), kwargs={"stop": stop.is_set},
                               daemon=True)
    hunting.start()
    try:
        yield swarm
    finally:
        stop.set()
        hunting.join(timeout=10)
        server.stop()
        serving.join(timeout=10)
        server.close()


def confirmed_claims(swarm) -> set[tuple[int, int, int]]:
    """(client id, claim tick mod 2**32, treasure) of every claim the bots saw confirmed."""
    return {(bot.client.token.client_id, tick, treasure)
            for bot in swarm.bots for (tick, treasure) in bot.client.confirmed}


def ledger_records(path) -> list:
    """Every record of the ledger file at `path`, in seq order."""
    path = str(path)
    ledger = SqliteLedger(path, read_world_uid(path), clock=now_s)
    try:
        return ledger.records_since(0)
    finally:
        ledger.close(1.0)


def test_kill_9_loses_no_confirmed_claim_and_the_hunt_goes_on(tmp_path):
    (tmp_path / "world.toml").write_text(
        "[game]\n" + "".join(f"{k} = {v!r}\n" for k, v in RULES.items())
        + "[store]\ncheckpoint_every = 0.5\n")
    port, admin_port = free_udp_port(), free_tcp_port()
    client_ids = [1000 + 7 * b for b in range(BOTS)]

    # 1. bots hunt until a few claims are confirmed, then the server dies mid-tick
    first = Server(tmp_path, port, admin_port)
    hunt_before = first.admin("/status")["hunt"]["id"]
    swarm, finish = hunt_with(first, client_ids, lambda sw: len(confirmed_claims(sw)) >= 4,
                              limit_s=40)
    time.sleep(0.6)  # a checkpoint or so later, still claiming
    first.proc.send_signal(signal.SIGKILL)
    assert first.proc.wait(timeout=10) == -signal.SIGKILL
    confirmed = confirmed_claims(swarm)
    finish()
    assert len(confirmed) >= 4, "the bots saw too few confirmed claims:\n" + first.text()

    # 2. every claim a bot saw confirmed is in the ledger, by its player's client id
    records = ledger_records(tmp_path / "xmarks-ledger.sqlite3")
    in_ledger = {(r.client_id, r.tick & 0xFFFFFFFF, r.treasure): r for r in records
                 if r.kind == "claim"}
    assert confirmed <= set(in_ledger), confirmed - set(in_ledger)
    hunt = max(r.hunt for r in records)
    assert hunt == hunt_before
    scores: dict[int, int] = {}
    for r in records:  # the latest join / claim / score record holds a player's score
        if r.hunt == hunt and r.kind in ("join", "claim", "score"):
            scores[r.client_id] = r.score
    assert sum(scores.values()) > 0

    # 3. the restarted server resumes the world: same hunt, the bots come back with their
    # scores (their own claims since then only add to them)
    second = Server(tmp_path, port, admin_port)
    assert "resumed world" in second.text()
    status = second.admin("/status")
    assert status["hunt"]["id"] == hunt
    swarm, finish = hunt_with(second, client_ids,
                              lambda sw: sw.connected == BOTS and all(
                                  b.latest is not None or b.snapshots for b in sw.bots),
                              limit_s=30)
    players = {p["client_id"]: p["score"] for p in second.admin("/players")["players"]}
    finish()
    assert set(players) == set(client_ids)
    for cid in client_ids:
        assert players[cid] >= scores.get(cid, 0), (cid, players[cid], scores.get(cid))

    # 4. SIGTERM: exit 0 within 5 s, everything committed, a last checkpoint that loads
    t0 = time.monotonic()
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 5.0
    log = second.text()
    assert "Traceback" not in log and "ledger and checkpoint written" in log
    after = ledger_records(tmp_path / "xmarks-ledger.sqlite3")
    assert {(r.client_id, r.tick & 0xFFFFFFFF, r.treasure) for r in after
            if r.kind == "claim"} >= confirmed
    assert [r.seq for r in after] == sorted(r.seq for r in after)
    left = [r for r in after if r.kind == "leave" and r.detail == "shutdown"]
    assert {r.client_id for r in left} == set(client_ids)
    cp = load_checkpoint(str(tmp_path / "xmarks-checkpoint.npz"), GameRules(**RULES))
    ti = cp.arrays["ti"]
    for cid, tick, treasure in confirmed:  # never buried again in the same generation
        gen = in_ledger[(cid, tick, treasure)].treasure_gen
        assert ti[S.T_GEN, treasure] > gen or ti[S.T_STATE, treasure] != S.BURIED
    assert os.path.exists(tmp_path / "xmarks-ledger.sqlite3")
