"""The token key file (net/keys.py): created 0600 and never overwritten; every problem
is one KeyFileError line naming the file."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from net.keys import KeyFileError, create_key_file, ensure_key_file, key_from_env, load_key

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def one_line_error(path, fn, *words):
    with pytest.raises(KeyFileError) as info:
        fn(path)
    text = str(info.value)
    assert "\n" not in text
    for word in words:
        assert word in text, (word, text)
    return text


@posix_only
def test_create_is_0600_and_loads_back(tmp_path):
    path = tmp_path / "xmarks.key"
    key = create_key_file(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == key.hex() + "\n"
    assert load_key(path) == key
    assert load_key(str(path)) == key


@posix_only
def test_create_ignores_a_loose_umask(tmp_path):
    old = os.umask(0)
    try:
        create_key_file(tmp_path / "k")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600


def test_create_never_overwrites(tmp_path):
    path = tmp_path / "xmarks.key"
    key = create_key_file(path)
    one_line_error(path, create_key_file, str(path), "already exists")
    assert load_key(path) == key


def test_create_in_missing_directory(tmp_path):
    one_line_error(tmp_path / "no" / "k", create_key_file, "cannot create")


@pytest.mark.parametrize("content", ["ab" * 32, "AB" * 32 + "\n", "0f" * 32 + "\r\n"])
def test_load_accepts_hex_with_optional_newline(tmp_path, content):
    path = tmp_path / "k"
    path.write_bytes(content.encode())
    path.chmod(0o600)
    assert load_key(path) == bytes.fromhex(content.strip())


def test_load_missing(tmp_path):
    one_line_error(tmp_path / "none.key", load_key, "none.key", "does not exist")


def test_load_directory(tmp_path):
    one_line_error(tmp_path, load_key, "directory")


@posix_only
def test_load_unreadable(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp_path / "k"
    path.write_text("ab" * 32)
    path.chmod(0)
    one_line_error(path, load_key, "cannot read")


def test_load_permission_denied(tmp_path, monkeypatch):
    """The same branch as above, for runs as root (which reads any file)."""
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(os, "open", denied)
    one_line_error(tmp_path / "k", load_key, "cannot read", "Permission denied")


@pytest.mark.parametrize("content,words", [
    (b"", ["64 hex", "found 0"]),
    (b"ab" * 31, ["found 62"]),
    (b"ab" * 33, ["found 66"]),
    (b"ab" * 32 + b"\n\n", ["found 65"]),
    (b" " + b"ab" * 32, ["found 65"]),
    (b"x" * 5000, ["found 4096+"]),
    (b"zz" * 32, ["other characters"]),
    (b"\xff" * 64, ["other characters"]),
])
def test_load_bad_content(tmp_path, content, words):
    path = tmp_path / "k"
    path.write_bytes(content)
    path.chmod(0o600)
    text = one_line_error(path, load_key, "'" + str(path) + "'", *words)
    # The content (a secret, when it is right) is never echoed.
    assert not content or content[:8].decode("latin-1") not in text.replace(str(path), "")


@posix_only
def test_world_writable_is_refused(tmp_path):
    path = tmp_path / "k"
    path.write_text("ab" * 32)
    path.chmod(0o666)
    one_line_error(path, load_key, "world-writable", "chmod 600")


@posix_only
def test_group_readable_is_a_warning(tmp_path, caplog):
    path = tmp_path / "k"
    path.write_text("ab" * 32)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="xmarks"):
        assert load_key(path) == bytes.fromhex("ab" * 32)
    assert "readable by group or others" in caplog.text


def test_ensure_creates_then_loads(tmp_path):
    path = tmp_path / "k"
    key, created = ensure_key_file(path)
    assert created and len(key) == 32
    assert ensure_key_file(path) == (key, False)


def test_ensure_does_not_replace_a_bad_file(tmp_path):
    path = tmp_path / "k"
    path.write_text("oops")
    one_line_error(path, ensure_key_file, "found 4")
    assert path.read_text() == "oops"


def test_key_from_env():
    assert key_from_env("cd" * 32) == bytes.fromhex("cd" * 32)
    assert key_from_env(" " + "cd" * 32 + "\n") == bytes.fromhex("cd" * 32)
    for bad in ("", "cd" * 31, "g" * 64, "é" * 32):
        with pytest.raises(KeyFileError, match="XMARKS_KEY") as info:
            key_from_env(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(KeyFileError, match="MY_KEY"):
        key_from_env("x", name="MY_KEY")
