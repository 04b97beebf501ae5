"""A live hunt recorded with an input log replays to the same world, bit for bit.

A real GameServer over loopback with hunting bots (joins, inputs, digs, claims, leaves)
and operator commands through the admin API (a hunt ended, treasures spawned and
cleared, the hunt's duration changed, a bot kicked) records its input log; `xmarks
replay` re-runs it from a fresh world and must print the live server's final state hash.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from dataclasses import replace

from net.admin_http import AdminSettings
from sim.rules import GameRules
from store.settings import StoreSettings
from tests.test_e2e_durability import live_hunt
from tests.test_e2e_loopback import clean_env, xmarks_command
from tick.config import ServerConfig
from tick.replay import replay
from tick.server import GameServer

KEY = bytes(range(32))
TOKEN = "replay-test-admin-token"
RULES = GameRules(world_width=400.0, world_height=400.0, max_players=8, treasure_count=24,
                  reveal_radius=250.0, dig_time=0.15, respawn_delay=0.5, hunt_duration=600.0,
                  seed=21)


def post(server: GameServer, path: str, body: dict | None = None) -> dict:
    host, port = server.admin.address
    request = urllib.request.Request(f"http://{host}:{port}{path}", method="POST",
                                     data=json.dumps(body or {}).encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


def test_a_recorded_hunt_replays_to_the_live_hash(tmp_path):
    log_path = tmp_path / "hunt.xmil"
    config = ServerConfig(rules=RULES, port=0, admin=AdminSettings(admin_port=0),
                          store=replace(StoreSettings(), input_log=str(log_path),
                                        checkpoint_every=0))
    server = GameServer(config, key=KEY, admin_token=TOKEN)
    with live_hunt(server, 5, seed=4, key=KEY):
        deadline = time.monotonic() + 30
        while server.claims < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.claims >= 3
        post(server, "/hunt/duration", {"seconds": 400})
        post(server, "/treasures/clear")
        post(server, "/treasures/spawn", {"count": 10})
        time.sleep(0.3)
        post(server, "/hunt/end")
        kicked = post(server, "/kick", {"slot": 0})["kicked"]
        assert kicked == [0]
        time.sleep(1.0)
    live = server.final_hash
    assert live == server.world.state_hash()
    assert [name for _, name, _ in server.admin_log] == [
        "hunt_duration", "treasures_clear", "treasures_spawn", "hunt_end", "kick"]

    result = replay(str(log_path))
    assert result.recorded_hash == live
    assert result.hash == live and result.matches
    assert result.final_tick == server.world.tick
    assert result.commands == 4 and result.joins >= 5 and result.leaves >= 5

    # the command line says the same, and exit 0
    proc = subprocess.run(xmarks_command() + ["replay", str(log_path), "--json"],
                          capture_output=True, text=True, timeout=120, env=clean_env())
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["match"] is True and report["hash"] == live


def test_replay_of_a_foreign_file_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "not-a-log"
    path.write_bytes(b"hello")
    proc = subprocess.run(xmarks_command() + ["replay", str(path)], capture_output=True,
                          text=True, timeout=60, env=clean_env())
    assert proc.returncode == 2
    assert proc.stderr.startswith("xmarks: error:") and "not an xmarks input log" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
