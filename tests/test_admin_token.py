"""net/admin_token.py: the admin API's token file (created 0600, refused when open to
others) and XMARKS_ADMIN_TOKEN."""

from __future__ import annotations

import os
import re
import stat
import threading

import pytest

from net.admin_token import (TOKEN_ENV, AdminTokenError, create_admin_token, ensure_admin_token,
                             load_admin_token, new_admin_token, read_admin_token)

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_new_tokens_are_43_url_safe_characters_and_differ():
    tokens = {new_admin_token() for _ in range(50)}
    assert len(tokens) == 50 and all(TOKEN_RE.match(t) for t in tokens)


def test_ensure_creates_a_0600_file_then_reuses_it(tmp_path):
    path = tmp_path / "xmarks.admin-token"
    token, created = ensure_admin_token(path)
    assert created and TOKEN_RE.match(token)
    assert path.read_text() == token + "\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ensure_admin_token(path) == (token, False)
    assert read_admin_token(path, {}) == token


def test_creation_ignores_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        create_admin_token(tmp_path / "t")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "t").st_mode) == 0o600


def test_an_existing_file_is_never_overwritten(tmp_path):
    path = tmp_path / "t"
    path.write_text("x" * 20 + "\n")
    path.chmod(0o600)
    with pytest.raises(AdminTokenError, match="already exists"):
        create_admin_token(path)
    assert ensure_admin_token(path) == ("x" * 20, False)


def test_racing_creators_agree_on_one_token(tmp_path):
    """No racer sees a half-written file: every one gets the one token that won."""
    for round_ in range(20):
        path = tmp_path / f"t{round_}"
        got: list[str] = []
        errors: list[Exception] = []

        def start() -> None:
            try:
                got.append(ensure_admin_token(path)[0])
            except Exception as exc:  # noqa: BLE001 - collected, asserted below
                errors.append(exc)
        threads = [threading.Thread(target=start) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and len(got) == 8
        assert len(set(got)) == 1 and path.read_text().strip() == got[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"t{k}" for k in range(20))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o644, 0o666])
def test_a_file_open_to_group_or_others_is_refused(tmp_path, mode):
    path = tmp_path / "t"
    path.write_text(new_admin_token() + "\n")
    path.chmod(mode)
    with pytest.raises(AdminTokenError) as exc:
        load_admin_token(path)
    text = one_line(exc)
    assert str(path) in text and f"{mode:04o}" in text and "chmod 600" in text
    with pytest.raises(AdminTokenError):
        ensure_admin_token(path)  # and the server does not start with it either


@pytest.mark.parametrize("content, words", [
    ("", ["0"]), ("short\n", ["16", "5"]), ("x" * 600, ["512"]),
    ("has a space in it ok\n", ["visible ASCII"]), ("ünïcödé-token-here\n", ["ASCII"]),
])
def test_unusable_contents_are_one_line_errors(tmp_path, content, words):
    path = tmp_path / "t"
    path.write_bytes(content.encode("utf-8"))
    path.chmod(0o600)
    with pytest.raises(AdminTokenError) as exc:
        load_admin_token(path)
    text = one_line(exc)
    assert all(w in text for w in words), text
    assert str(path) in text


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(AdminTokenError) as exc:
        read_admin_token(tmp_path / "nope", {})
    assert "does not exist" in one_line(exc) and TOKEN_ENV in str(exc.value)
    with pytest.raises(AdminTokenError, match="directory"):
        load_admin_token(tmp_path)


def test_the_variable_wins_over_the_file(tmp_path):
    path = tmp_path / "t"
    file_token, _ = ensure_admin_token(path)
    env = {TOKEN_ENV: "  from-the-environment-123\n"}
    assert read_admin_token(path, env) == "from-the-environment-123"
    assert ensure_admin_token(path, env) == ("from-the-environment-123", False)
    # with the variable set the server touches no file at all
    assert ensure_admin_token(tmp_path / "absent", env)[0] == "from-the-environment-123"
    assert not (tmp_path / "absent").exists()
    assert read_admin_token(path, {}) == file_token


def test_a_bad_variable_names_the_variable_not_its_value():
    with pytest.raises(AdminTokenError) as exc:
        read_admin_token("unused", {TOKEN_ENV: "tiny"})
    text = one_line(exc)
    assert TOKEN_ENV in text and "tiny" not in text
