"""store/settings.py: defaults are valid; each bad value names its setting first."""

from __future__ import annotations

import pytest

from store.settings import StoreError, StoreSettings


def test_defaults_are_valid_and_as_documented():
    s = StoreSettings()
    s.validate()
    assert (s.ledger_path, s.checkpoint_path, s.checkpoint_every, s.ledger_backend,
            s.ledger_queue_limit, s.ledger_sync) == (
        "xmarks-ledger.sqlite3", "xmarks-checkpoint.npz", 10.0, "sqlite", 1_000_000, "full")
    StoreSettings(checkpoint_every=0.0, ledger_backend="none").validate()
    StoreSettings(ledger_backend="memory", ledger_sync="normal", ledger_queue_limit=1000).validate()


@pytest.mark.parametrize("name, value", [
    ("ledger_path", ""), ("ledger_path", "  "), ("ledger_path", 5), ("ledger_path", "a\0b"),
    ("checkpoint_path", ""), ("checkpoint_path", None),
    ("checkpoint_every", -1.0), ("checkpoint_every", 0.01), ("checkpoint_every", float("nan")),
    ("checkpoint_every", float("inf")), ("checkpoint_every", "10"), ("checkpoint_every", True),
    ("ledger_backend", "redis"), ("ledger_backend", "SQLITE"),
    ("ledger_queue_limit", 999), ("ledger_queue_limit", 10**9), ("ledger_queue_limit", 5000.0),
    ("ledger_queue_limit", True),
    ("ledger_sync", "off"), ("ledger_sync", "FULL"),
])
def test_bad_values_are_refused_naming_the_setting(name, value):
    with pytest.raises(StoreError) as info:
        StoreSettings(**{name: value}).validate()
    assert str(info.value).startswith(f"{name} must be ")
    assert isinstance(info.value, ValueError)


def test_open_ledger_gives_the_backend_asked_for(tmp_path):
    from store.records import CLAIM, Recorder
    from store.settings import open_ledger

    rec = Recorder(9, 4)
    for backend in ("sqlite", "memory", "none"):
        settings = StoreSettings(ledger_backend=backend, ledger_sync="normal",
                                 ledger_path=str(tmp_path / "l.sqlite3"))
        ledger = open_ledger(settings, 9, lambda: 0.0)
        assert ledger.status()["backend"] == backend
        ledger.submit(3, [rec._record(3, CLAIM, 0, 0, 5, 1, "a", 2, 0, 4, 4)])
        assert ledger.close(10.0) and ledger.confirmed_tick() == 3
        assert len(ledger.records_since(0)) == (0 if backend == "none" else 1)
