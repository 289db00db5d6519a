"""The shell at a real terminal: `python -m kryptondb` on a pseudo-terminal (pexpect), typed at
as a person types. History of whole statements (kept across sessions), Tab completion, commands
inside an unfinished statement, Ctrl-C, .read, the pager.

The editor redraws the line it edits with cursor moves, so the tests wait for prompts without
their trailing space ("kryptondb>", "...>") and for what statements print, which is plain
text. No test measures time; the timeouts only bound a hang."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import kryptondb

pexpect = pytest.importorskip("pexpect")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")

ROOT = Path(__file__).resolve().parents[1]
IMAGE = kryptondb.bundled_image()
PROMPT, MORE = "kryptondb>", r"\.\.\.>"
UP, CTRL_D = "\x1b[A", "\x04"
VIEWS = "name  rows  columns  created"
MODELS = "name                kind  source"
IMAGES = r"name +path +width +height"


@pytest.fixture
def spawn(tmp_path):
    """start(**env) -> a shell on a 40x200 terminal, at its first prompt; HOME and the history
    file in tmp_path, no pager unless asked."""
    children = []

    def start(rows: int = 40, **extra):
        env = dict(os.environ, HOME=str(tmp_path), KRYPTONDB_HISTORY=str(tmp_path / "history"),
                   TERM="xterm", PAGER="cat", PROMPT_TOOLKIT_NO_CPR="1",
                   PYTHONPATH=os.pathsep.join(p for p in (str(ROOT),
                                                          os.environ.get("PYTHONPATH")) if p))
        env.pop("KRYPTON_DEBUG", None)
        env.update(extra)
        child = pexpect.spawn(sys.executable, ["-m", "kryptondb"], env=env, cwd=str(tmp_path),
                              dimensions=(rows, 200), encoding="utf-8", timeout=120)
        children.append(child)
        child.expect("KryptonDB .* type .help for help")
        child.expect(PROMPT)
        return child

    yield start
    for child in children:
        child.close(force=True)


def run(child, text: str, *wait: str) -> str:
    """Type ``text`` and Enter; wait for each of ``wait``, then the next prompt. What the
    terminal showed meanwhile."""
    child.send(text + "\r")
    shown = ""
    for pattern in (*wait, PROMPT):
        child.expect(pattern)
        shown += child.before + child.after
    return shown


def leave(child) -> int:
    child.send(CTRL_D)
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def test_history_recalls_a_multiline_statement_whole_also_after_a_restart(spawn, tmp_path):
    child = spawn()
    child.send("SHOW\r")
    child.expect(MORE)  # Enter in an unfinished statement starts a new line
    run(child, "  VIEWS;", VIEWS)
    run(child, "SHOW MODELS;", MODELS)
    run(child, UP + UP, VIEWS)  # two back: the two-line statement, whole, and Enter runs it
    assert leave(child) == 0
    history = (tmp_path / "history").read_text()
    assert "\n+SHOW\n+  VIEWS;\n" in history  # one entry of two lines

    child = spawn()  # a new session reads the same file: the newest entry first
    run(child, UP, VIEWS)
    # Up inside a recalled two-line statement moves to its first line; once more: the entry
    # before it
    run(child, UP + UP + UP, MODELS)
    child.send("\x12")  # Ctrl-R: search the history backwards
    child.expect("search")
    run(child, "VIEW\r", VIEWS)  # Enter takes the entry found, Enter again runs it
    assert leave(child) == 0


def test_tab_completes_a_model_name_and_a_column_name(spawn):
    child = spawn()
    run(child, f"LOAD IMAGE '{IMAGE}' AS cat;", "loaded image cat")
    child.send("PREDICT IMAGE cat USING MODEL mobilen\t")
    child.expect("v2")  # the editor drew the completed name
    shown = run(child, " TOP 3 INTO preds;", "Egyptian cat")
    assert "error" not in shown
    child.send("SELECT label, probab\t")  # no table named yet: the columns of all of them
    child.expect("ility")
    shown = run(child, " FROM preds ORDER BY rank LIMIT 1;", "probability", r"\(1 row\)")
    assert "error" not in shown and "Egyptian cat" in shown
    assert leave(child) == 0


def test_a_command_inside_an_unfinished_statement_runs_and_keeps_the_statement(spawn):
    child = spawn()
    child.send("SHOW\r")
    child.expect(MORE)
    child.send(".tables\r")
    child.expect("no tables or views yet")
    child.expect(MORE)  # back in the statement, on a new line
    child.send("\\d\r")  # psql's alias, likewise
    child.expect("no tables or views yet")
    child.expect(MORE)
    shown = run(child, "IMAGES;", IMAGES)
    assert "error" not in shown
    child.send("SHOW\r")
    child.expect(MORE)
    child.send("\x03")  # Ctrl-C at the prompt drops the unfinished statement
    child.expect(PROMPT)
    shown = run(child, "SHOW MODELS;", MODELS)
    assert "error" not in shown
    child.send("\\q\r")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_ctrl_c_cancels_a_long_scan_and_the_session_goes_on(spawn):
    child = spawn()
    child.send(f"EXPLAIN OCCLUSION OF IMAGE '{IMAGE}' USING MODEL mobilenet_v2 PATCH 16 STRIDE 2 "
               "ON numpy;\r")  # 11,025 positions on the NumPy backend: minutes of work
    child.expect(r"eta \d+s")  # the progress bar: the scan is under way
    child.sendintr()
    child.expect("cancelled")
    shown = run(child, "SHOW MODELS;", MODELS)
    assert "error" not in shown
    assert leave(child) == 0


def test_read_stops_at_the_error_in_the_third_statement(spawn, tmp_path):
    script = tmp_path / "four.kql"
    script.write_text(f"LOAD IMAGE '{IMAGE}' AS first;\nSHOW IMAGES;\nSHOW MODLES;\n"
                      f"LOAD IMAGE '{IMAGE}' AS fourth;\n")
    child = spawn()
    shown = run(child, f".read {script}", "loaded image first", IMAGES,
                f"error: {script}, statement at line 3: unexpected 'MODLES'")
    assert "fourth" not in shown
    shown = run(child, "SHOW IMAGES;", IMAGES, r"\(1 row\)")  # the session went on
    assert "fourth" not in shown
    assert leave(child) == 0


def test_output_taller_than_the_screen_goes_through_the_pager(spawn):
    child = spawn(rows=8, PAGER="sed s/^/paged:/")
    run(child, "SHOW MODELS;", "paged:" + MODELS, "paged:.6 rows.")
    run(child, "SHOW VIEWS;", VIEWS)  # fits: no pager
    assert "paged:" not in child.before
    run(child, ".pager off")
    shown = run(child, "SHOW MODELS;", MODELS, r"\(6 rows\)")
    assert "paged:" not in shown
    assert leave(child) == 0
