"""A failing disk under a live server: the ledger's commits raise SQLite's "database or
disk is full" for a while (simulated on the writer: as root, a read-only file would not
fail). The server keeps ticking, says so loudly (an ERROR line, the status and
/metrics), confirms no claim it could not write, retries, and once the disk is back
commits everything: no claim is lost and every claim a bot saw confirmed is durable.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import replace

from sim.rules import GameRules
from store.settings import StoreSettings
from tests.test_e2e_durability import confirmed_claims, ledger_records, live_hunt
from tick.clock import now_s
from tick.config import ServerConfig
from tick.metrics import ServerMetrics
from tick.server import GameServer

KEY = bytes(range(32))
RULES = GameRules(world_width=400.0, world_height=400.0, max_players=8, treasure_count=24,
                  reveal_radius=250.0, dig_time=0.15, respawn_delay=2.0, hunt_duration=600.0,
                  seed=5)


def wait_for(condition, limit_s: float) -> bool:
    start = now_s()
    while not condition():
        if now_s() - start > limit_s:
            return False
        time.sleep(0.02)
    return True


def test_a_failing_disk_stops_confirmations_not_the_game(tmp_path, caplog):
    config = ServerConfig(rules=RULES, port=0, store=replace(
        StoreSettings(), ledger_path=str(tmp_path / "ledger.sqlite3"), checkpoint_every=0))
    server = GameServer(config, key=KEY)
    with live_hunt(server, 5, seed=2, key=KEY) as swarm:
        assert wait_for(lambda: len(confirmed_claims(swarm)) >= 2, 30), "no claim confirmed"

        # the disk fills up
        ledger = server.ledger
        writing = ledger._write
        failing = threading.Event()
        failing.set()

        def full_disk(records):
            if failing.is_set():
                raise sqlite3.OperationalError("database or disk is full")
            return writing(records)

        caplog.set_level(logging.ERROR, logger="xmarks.ledger")
        ledger._write = full_disk
        claims_before = server.claims
        assert wait_for(lambda: ledger.status()["failing"], 5)
        durable = int(server.protocol.durable[0])
        ticks = server.timings.recorded
        assert wait_for(lambda: server.claims >= claims_before + 2, 20), "no claims meanwhile"
        time.sleep(0.5)
        status = ledger.status()
        assert status["failing"] and status["faults"] >= 2 and status["pending"] > 0
        assert "disk is full" in status["last_error"]
        assert server.timings.recorded >= ticks + 10  # the game went on
        assert int(server.protocol.durable[0]) == durable  # nothing new confirmed
        assert all(tick <= (durable & 0xFFFFFFFF)  # no bot was told otherwise
                   for bot in swarm.bots for (tick, _) in bot.client.confirmed)
        assert any("commit failed" in r.getMessage() and "disk is full" in r.getMessage()
                   for r in caplog.records)
        text = ServerMetrics(server).render()[0].decode()
        assert "xmarks_ledger_failing 1.0" in text

        # the disk is back: everything pending goes in, confirmations resume
        failing.clear()
        assert wait_for(lambda: not ledger.status()["failing"] and ledger.pending() == 0, 10)
        assert wait_for(lambda: int(server.protocol.durable[0]) > durable, 5)
    confirmed = confirmed_claims(swarm)
    records = ledger_records(tmp_path / "ledger.sqlite3")
    claims = {(r.client_id, r.tick & 0xFFFFFFFF, r.treasure) for r in records
              if r.kind == "claim"}
    assert len(claims) == server.claims  # every claim of the run, once
    assert confirmed <= claims
