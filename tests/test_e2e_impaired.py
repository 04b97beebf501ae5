"""Bots through `xmarks proxy` at the issue's two bad-network profiles, with their NAT
rebinding every 1.5 s (each bot's source port changes): a real GameServer with its SQLite
ledger, over loopback, for a few seconds each.

- play continues: every bot stays connected (no session lost to loss, duplication,
  reordering or a new address) and snapshots keep coming;
- the sessions moved with their clients (same slot, same player), only on authenticated
  packets;
- no input is applied twice: the acks a bot sees never go backwards, and the server drops
  duplicated datagrams as replayed;
- every claim a bot was shown as confirmed is in the ledger, under its own client id.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from net import drops as D
from net.client import Snapshot
from net.link import LinkSettings
from net.security import SecuritySettings
from net.udp import UdpEndpoint
from sim.rules import GameRules
from store.settings import StoreSettings
from tests.test_e2e_durability import confirmed_claims, ledger_records
from tick.config import ServerConfig
from tick.proxy import Proxy, ProxySettings
from tick.rates import TickRates
from tick.server import GameServer
from tick.swarm import Swarm

KEY = bytes(range(32))
RULES = GameRules(world_width=300.0, world_height=300.0, max_players=8, treasure_count=32,
                  cell_size=64.0, dig_time=0.2, reveal_radius=200.0, respawn_delay=1.0,
                  seed=9)
PROFILES = {
    "jittery": LinkSettings(loss=0.05, duplicate=0.10, latency_ms=250, jitter_ms=250),
    "lossy": LinkSettings(loss=0.20, latency_ms=100, reorder=0.04),
}


def text(address) -> str:
    return "%s:%d" % address


class Watching(Swarm):
    """A Swarm that checks, snapshot by snapshot, that acks never go back and the slot
    never changes."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.acks: dict[int, int] = {}
        self.slots: dict[int, int] = {}
        self.backwards = 0

    def _handle(self, bot, events, now) -> None:
        for ev in events:
            if isinstance(ev, Snapshot):
                key = id(bot)
                if ev.ack < self.acks.get(key, 0):
                    self.backwards += 1
                self.acks[key] = max(self.acks.get(key, 0), ev.ack)
                assert self.slots.setdefault(key, ev.slot) == ev.slot
        super()._handle(bot, events, now)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_play_goes_on_through_a_bad_network_that_rebinds(tmp_path, profile):
    listen = UdpEndpoint("127.0.0.1", 0, io="portable")
    config = ServerConfig(rules=RULES, rates=TickRates(tick_rate=20.0, status_every=0),
                          port=0, security=SecuritySettings(public_address=text(listen.address)),
                          store=replace(StoreSettings(), checkpoint_every=0,
                                        ledger_path=str(tmp_path / "ledger.sqlite3")))
    server = GameServer(config, key=KEY)
    server.warm_up()
    link = PROFILES[profile]
    proxy = Proxy(ProxySettings(listen=text(listen.address), server=text(server.address),
                                up=link, down=link, seed=4, rebind_every=1.5,
                                report_every=0), listen=listen)
    threads = [threading.Thread(target=server.run, daemon=True),
               threading.Thread(target=proxy.run, daemon=True)]
    for t in threads:
        t.start()
    try:
        swarm = Watching(proxy.address, 6, seed=3, key=KEY, progress=None)
        report = swarm.run(7.0)
    finally:
        server.stop()
        proxy.stop()
        for t in threads:
            t.join(timeout=10)
        server.close()
        proxy.close()

    assert report.connected == 6 and report.errors == 0, report.error_reasons
    assert report.snapshots_per_bot_per_s >= 5, report  # jitter reorders half of 20/s
    assert swarm.backwards == 0  # "a": the newest input applied, never an older one
    assert server.protocol.moves >= 6  # every bot's address changed at least once
    drops = server.protocol.drops
    if link.duplicate:
        assert drops[D.REPLAYED] > 0  # duplicates reached the server and went no further
    assert report.claims > 0
    confirmed = confirmed_claims(swarm)
    claims = {(r.client_id, r.tick & 0xFFFFFFFF, r.treasure)
              for r in ledger_records(tmp_path / "ledger.sqlite3") if r.kind == "claim"}
    assert confirmed and confirmed <= claims
