"""`xmarks top` (cli/top.py): the pure frame renderer on known status answers, the bars
against the budget, `--once` against the fake admin API, and the live loop surviving an
unreachable server."""

from __future__ import annotations

import copy
import io
import re

import pytest
from rich.console import Console

import cli.top as top_module
from cli.admin_client import AdminClient, AdminError, admin_endpoint
from cli.top import BAR_WIDTH, BUDGET_MARK, phase_bar, render_status, watch
from tests.admin_fake import STATUS, TOKEN, FakeAdmin
from tests.test_cli_ops import assert_error, free_tcp_port, xmarks


def text_of(renderable, width: int = 120) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, markup=False,
            highlight=False).print(renderable)
    return out.getvalue()


def line_of(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


pytestmark = pytest.mark.usefixtures("no_xmarks_env")


# ---- the frame ----------------------------------------------------------------------

def test_frame_shows_every_figure():
    text = text_of(render_status(STATUS, "127.0.0.1:7778"))
    assert text.startswith("xmarks top  127.0.0.1:7778  tick 1234  20 Hz  up 1m 02s\n")
    assert "hunt 3 " in text and "2m 31s left of 5m 00s" in text
    assert "budget 50 ms" in text
    for phase, fig in STATUS["phases"].items():
        cells = line_of(text, phase).split()
        assert cells[1:4] == [f"{fig['p50_ms']:.2f}", f"{fig['p99_ms']:.2f}",
                              f"{fig['max_ms']:.2f}"]
    assert "2 / 64" in line_of(text, "players")
    assert "12.3 kB/s" in line_of(text, "out ")
    assert "160/s" in line_of(text, "packets out")
    assert "150/s" in line_of(text, "packets in")
    assert line_of(text, "overruns").split()[:2] == ["overruns", "7"]
    assert "bad_tag" in text and "rate_limited" in text
    assert "bot-1" in text and "ada" in text
    assert "ledger sqlite: 3 pending, 120 committed, 0 faults" in text
    assert "unreachable" not in text


def test_frame_orders_drops_and_leaders_and_cuts_them():
    status = copy.deepcopy(STATUS)
    status["drops"] = {f"reason_{i}": i + 1 for i in range(9)}  # 9 reasons, 6 shown
    status["leaderboard"] = [{"rank": r, "slot": r, "name": f"p{r}", "score": 100 - r}
                             for r in range(1, 9)]
    status["ledger"] = None
    text = text_of(render_status(status, "h:1"))
    shown = [f"reason_{i}" for i in range(9) if f"reason_{i} " in text]
    assert shown == [f"reason_{i}" for i in range(3, 9)]  # the largest counts
    assert re.search(r"3 more +6 ", text)  # 1 + 2 + 3
    assert [f"p{r}" for r in range(1, 9) if f" p{r} " in text] == [f"p{r}" for r in range(1, 6)]
    assert "ledger" not in text


def test_phase_bar_places_p50_p99_and_the_budget_line():
    budget = 50.0
    bar = phase_bar(10.0, 25.0, budget)  # scale 0..75 ms over 30 cells
    plain = bar.plain
    assert len(plain) == BAR_WIDTH + 2  # the budget mark and the overflow cell
    assert plain.index(BUDGET_MARK) == 20  # 50 ms of 75
    assert plain.count("█") == 4 and plain.count("▒") == 6  # 10 ms -> 4, 25 ms -> 10
    assert plain.endswith(" ")
    assert {span.style for span in bar.spans if span.style != "bold"} == {"green"}


@pytest.mark.parametrize("p99,style", [(30.0, "green"), (40.0, "yellow"), (50.0, "red"),
                                       (200.0, "red")])
def test_phase_bar_colour_follows_p99_against_the_budget(p99, style):
    bar = phase_bar(1.0, p99, 50.0)
    assert {span.style for span in bar.spans if span.style != "bold"} == {style}


def test_phase_bar_off_the_scale():
    plain = phase_bar(80.0, 200.0, 50.0).plain
    assert plain.endswith("»")
    assert plain.replace(BUDGET_MARK, "").count("█") == BAR_WIDTH


def test_frame_when_never_reached():
    text = text_of(render_status(None, "127.0.0.1:7778", "Connection refused"))
    assert "unreachable: Connection refused; retrying" in text
    assert "hunt" not in text and "phase" not in text


def test_frame_when_lost_shows_the_last_figures_and_their_age():
    text = text_of(render_status(STATUS, "127.0.0.1:7778", "timed out", stale_s=12.0))
    assert "unreachable: timed out; retrying (figures below are 12s old)" in text
    assert "hunt 3 " in text and "bot-1" in text


def test_frame_before_the_first_answer():
    assert "waiting for the first status" in text_of(render_status(None, "h:1"))


# ---- the command --------------------------------------------------------------------

def test_once_prints_one_frame(token_file):
    with FakeAdmin() as fake:
        code, out, err = xmarks("top", "--once", "--admin", fake.address,
                                "--admin-token-file", token_file)
    assert (code, err) == (0, "")
    assert out.startswith(f"xmarks top  {fake.address}  tick 1234")
    assert "2m 31s left of 5m 00s" in out
    assert [r[1] for r in fake.requests] == ["/status"]


def test_once_unreachable_is_exit_3(token_file):
    port = free_tcp_port()
    assert_error(xmarks("top", "--once", "--admin", f"127.0.0.1:{port}",
                        "--admin-token-file", token_file), 3, "cannot reach the admin API")


def test_once_with_a_wrong_token_is_exit_1(tmp_path):
    path = tmp_path / "t"
    path.write_text("another-token-0123456789")
    path.chmod(0o600)
    with FakeAdmin() as fake:
        assert_error(xmarks("top", "--once", "--admin", fake.address, "--admin-token-file",
                            str(path)), 1, "admin token rejected")


def test_ctrl_c_ends_top_with_exit_0(token_file, monkeypatch):
    def interrupted(client, interval, live):
        raise KeyboardInterrupt
    monkeypatch.setattr(top_module, "watch", interrupted)
    with FakeAdmin() as fake:
        code, _, err = xmarks("top", "--admin", fake.address, "--admin-token-file", token_file)
    assert (code, err) == (0, "")


class Frames:
    """Stands in for rich.live.Live: keeps each frame as text; Ctrl-C after `stop_after`."""

    def __init__(self, stop_after: int, between=None) -> None:
        self.frames: list[str] = []
        self.stop_after = stop_after
        self.between = between or (lambda n: None)

    def update(self, renderable, refresh: bool = False) -> None:
        self.frames.append(text_of(renderable))
        if len(self.frames) >= self.stop_after:
            raise KeyboardInterrupt
        self.between(len(self.frames))


def test_watch_survives_the_server_going_away_and_coming_back(monkeypatch):
    monkeypatch.setattr(top_module, "sleep_until_ns", lambda deadline: None)
    with FakeAdmin() as fake:
        client = AdminClient(*admin_endpoint(fake.address, {}), TOKEN, timeout=2.0)

        def between(n: int) -> None:  # after frame n, before fetch n + 1
            fake.fail = {1: (503, {"error": "server busy"}), 2: None}.get(n, fake.fail)
        live = Frames(stop_after=3, between=between)
        with pytest.raises(KeyboardInterrupt):
            watch(client, 0.01, live)
    first, lost, back = live.frames
    assert "tick 1234" in first and "unreachable" not in first
    assert "unreachable: server busy (HTTP 503); retrying" in lost
    assert "hunt 3 " in lost  # the last figures stay on screen
    assert "unreachable" not in back and "tick 1234" in back


def test_watch_retries_while_nothing_listens(monkeypatch):
    monkeypatch.setattr(top_module, "sleep_until_ns", lambda deadline: None)
    client = AdminClient("127.0.0.1", free_tcp_port(), TOKEN, timeout=1.0)
    live = Frames(stop_after=3)
    with pytest.raises(KeyboardInterrupt):
        watch(client, 0.01, live)
    assert all("unreachable:" in frame for frame in live.frames)


def test_watch_stops_on_a_rejected_token(monkeypatch):
    monkeypatch.setattr(top_module, "sleep_until_ns", lambda deadline: None)
    with FakeAdmin(token="a-different-token-0123456789") as fake:
        client = AdminClient(*admin_endpoint(fake.address, {}), TOKEN)
        with pytest.raises(AdminError) as info:
            watch(client, 0.01, Frames(stop_after=5))
    assert info.value.exit_code == 1
