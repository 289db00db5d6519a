"""The interactive shell, driven as a user drives it: `python -m kryptondb` with piped stdin, and
once in a pseudo-terminal (banner, prompts, tab completion, Ctrl-C, history)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kryptondb
from kryptondb.lang import parse
from kryptondb.lang.statements import take_statements
from kryptondb.repl import EXAMPLES, Completer

ROOT = Path(__file__).resolve().parents[1]
IMAGE = kryptondb.bundled_image()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HEADERS = {"models": "kind  source", "images": "name  path  width  height",
           "tables": "name  rows  columns  created"}


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    env.pop("KRYPTON_DEBUG", None)
    env.update(extra)
    return env


def shell(stdin: str, cwd, merge: bool = False) -> subprocess.CompletedProcess:
    """`python -m kryptondb` reading ``stdin`` from a pipe (stderr into stdout if ``merge``)."""
    return subprocess.run([sys.executable, "-m", "kryptondb"], input=stdin, text=True, cwd=cwd,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT if merge else subprocess.PIPE,
                          env=_env(HOME=str(cwd)), timeout=120)


# -- piped stdin ---------------------------------------------------------------------------------

def test_multiline_statement_and_two_statements_on_a_line(tmp_path):
    r = shell("SHOW\n  MODELS\n;\nSHOW IMAGES; SHOW TABLES;\n", tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    positions = [r.stdout.index(HEADERS[k]) for k in ("models", "images", "tables")]
    assert positions == sorted(positions)
    assert "kryptondb>" not in r.stdout and "KryptonDB 0.1.0" not in r.stdout  # not a terminal


def test_syntax_error_is_reported_with_caret_and_the_session_goes_on(tmp_path):
    r = shell("SHOW MODELS;\nSHOW MODLES;\nSHOW IMAGES;\n", tmp_path, merge=True)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    err = lines.index("error: unexpected 'MODLES' at line 1, column 6")
    assert lines[err + 1:err + 3] == ["  SHOW MODLES", "       ^^^^^^"]
    assert lines[err + 3].startswith("expected: MODELS")
    assert r.stdout.index(HEADERS["models"]) < r.stdout.index("error:") \
        < r.stdout.index(HEADERS["images"])


def test_unknown_name_error_lists_the_known_ones(tmp_path):
    r = shell(f"PREDICT IMAGE '{IMAGE}'\nUSING MODEL resnt18;\nSHOW MODELS;\n", tmp_path)
    assert r.returncode == 0
    assert "error: no model 'resnt18'; known: efficientnet_lite0" in r.stderr
    assert "^^^^^^^" in r.stderr
    assert HEADERS["models"] in r.stdout


def test_dot_commands(tmp_path):
    r = shell(".help\n.tables\n.models\n.timer on\nSHOW VIEWS;\n.timer off\n.nope\n.quit\n"
              "SHOW MODELS;\n", tmp_path)
    assert r.returncode == 0
    for name, _ in EXAMPLES:
        assert f"  {name}  " in r.stdout
    for command in (".tables", ".models", ".open", ".output", ".timer", ".quit"):
        assert command in r.stdout
    assert "no tables or views yet" in r.stdout
    assert "mobilenet_v2        zoo   ImageNet" in r.stdout
    assert r.stdout.count("time: ") == 1
    assert "error: unknown command '.nope'; try .help" in r.stderr
    assert HEADERS["models"] not in r.stdout  # .quit ended the session


def test_dot_commands_check_their_arguments():
    """.tables extra, .quit now ... ran as if the argument were not there."""
    import io

    from kryptondb.repl import run_repl

    for line, says in ((".tables extra", ".tables takes no argument, got 'extra'"),
                       (".quit now", ".quit takes no argument"), (".timer maybe", "usage: .timer"),
                       (".open /dev/null", "not a KryptonDB database directory"),
                       (".output /dev/null", "it is a character device, not a folder")):
        out = io.StringIO()
        run_repl(kryptondb.connect(), io.StringIO(line + "\nSHOW VIEWS;\n"), out)
        assert f"error: {says}" in out.getvalue() or says in out.getvalue(), line
        assert "(0 rows)" in out.getvalue(), line  # the session went on


def test_help_examples_parse():
    for _, example in EXAMPLES:
        parse(example)


def test_predict_on_the_bundled_image(tmp_path):
    r = shell(f"PREDICT IMAGE '{IMAGE}' USING MODEL mobilenet_v2 TOP 3;\n", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "   1    285  Egyptian cat" in r.stdout
    assert "(3 rows)" in r.stdout


def test_occlusion_heatmaps_and_plans_are_saved_in_the_output_dir(tmp_path):
    figs = tmp_path / "figs"
    r = shell(f".output {figs}\nLOAD IMAGE '{IMAGE}' AS cat;\n"
              "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL mobilenet_v2 PATCH 56 STRIDE 56;\n"
              "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL mobilenet_v2 PATCH 56 STRIDE 56 "
              "INTO heat;\nSELECT COUNT(*) AS n FROM heat;\n"
              "EXPLAIN PLAN FORMAT SVG FOR PREDICT IMAGE cat USING MODEL mobilenet_v2;\n"
              "EXPLAIN PLAN FORMAT DOT FOR PREDICT IMAGE cat USING MODEL mobilenet_v2;\n",
              tmp_path)
    assert r.returncode == 0, r.stderr
    assert "heatmap 4x4 for class 285 ('Egyptian cat'" in r.stdout
    assert "... (16 rows: all in table heat)" in r.stdout
    for name in ("heatmap_1.png", "heat.png"):
        assert f"heatmap saved to {figs / name}" in r.stdout
        assert (figs / name).read_bytes()[:8] == PNG_MAGIC
    assert "\n16\n" in r.stdout  # SELECT COUNT(*) over the INTO table
    assert f"plan saved to {figs / 'plan_1.svg'}" in r.stdout
    assert "<svg" in (figs / "plan_1.svg").read_text()
    assert "digraph plan {" in r.stdout


def test_special_files_where_the_shell_writes_are_named(tmp_path):
    """.output to a FIFO or a device said '[Errno 17] File exists'; a plan SVG (or heatmap PNG)
    whose path is a FIFO, 'File or stream is not seekable'."""
    import io

    from kryptondb.repl import run_script

    def run(text: str) -> str:
        err = io.StringIO()
        run_script(kryptondb.connect(), text, io.StringIO(), err, output_dir=str(tmp_path))
        return err.getvalue()

    os.mkfifo(tmp_path / "heat.png")
    os.mkfifo(tmp_path / "plan_1.svg")
    (tmp_path / "plan_2.svg").symlink_to(tmp_path / "nowhere.svg")  # a link to nothing: skipped
    assert "heat.png' as the output folder: it is a FIFO" in run(f".output {tmp_path}/heat.png")
    assert "/dev/null' as the output folder: it is a character device" in run(".output /dev/null")
    from hostile import tiny_cnn

    (tmp_path / "tiny.onnx").write_bytes(tiny_cnn().SerializeToString())
    heat = (f"CREATE MODEL t FROM '{tmp_path}/tiny.onnx'; EXPLAIN OCCLUSION OF IMAGE '{IMAGE}' "
            "USING MODEL t PATCH 8 STRIDE 8 INTO heat;")
    assert "heat.png': it is a FIFO (named pipe), not a regular file" in run(heat)
    plan = "EXPLAIN PLAN FORMAT SVG FOR SHOW MODELS;"  # a fresh name: past the FIFO and the link
    assert run(plan) == "" and (tmp_path / "plan_3.svg").read_text().startswith("<svg")
    assert not (tmp_path / "nowhere.svg").exists()


def test_the_last_statement_may_omit_its_semicolon(tmp_path):
    r = shell("SHOW MODELS;\nSHOW\nIMAGES", tmp_path)
    assert r.returncode == 0 and HEADERS["images"] in r.stdout


# -- pieces ---------------------------------------------------------------------------------------

def test_take_statements_respects_quotes_comments_and_lines():
    text = ("SHOW MODELS; LOAD IMAGE 'a;b.png' AS x -- not; the end\n;\n\n"
            "LOAD IMAGE 'it''s;\\';' AS y;")
    done, rest = take_statements(text + " SHOW")
    assert [s for _, s in done] == ["SHOW MODELS", "LOAD IMAGE 'a;b.png' AS x -- not; the end",
                                    "LOAD IMAGE 'it''s;\\';' AS y"]
    assert [line for line, _ in done] == [0, 0, 3]
    assert rest == " SHOW"
    assert take_statements("-- only a comment;\n") == ([], "-- only a comment;\n")


def test_completion_follows_the_typed_case_and_knows_the_catalog(tmp_path):
    con = kryptondb.connect(tmp_path / "db")
    con.execute(f"LOAD IMAGE '{IMAGE}' AS chelsea")
    c = Completer(lambda: con)
    assert c.candidates("expl", "expl") == ["explain"]
    assert c.candidates("EXPL", "EXPL") == ["EXPLAIN"]
    assert c.candidates("Occ", "explain Occ") == ["OCCLUSION"]
    assert c.candidates("mo", "show mo") == ["model", "models", "mobilenet_v2"]
    assert c.candidates("chel", "explain occlusion of image chel") == ["chelsea"]
    assert c.candidates(".o", ".o") == [".open", ".output"]
    assert {"RECOGNIZE", "STRIDE", "SVG", "TABLES", "SELECT"} <= set(c.keywords)


# -- a real terminal ------------------------------------------------------------------------------

class Terminal:
    """A child process on a pseudo-terminal; ``expect`` waits for text after the last match."""

    def __init__(self, cwd, env):
        import fcntl
        import pty
        import struct
        import termios

        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kryptondb"], stdin=slave, stdout=slave, stderr=slave,
            cwd=cwd, env=env, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))  # so Ctrl-C is SIGINT
        os.close(slave)
        self.fd, self.seen, self.pos = master, b"", 0

    def expect(self, text: str, timeout: float = 60) -> str:
        import select

        want, deadline = text.encode(), time.monotonic() + timeout
        while want not in self.seen[self.pos:] and time.monotonic() < deadline:
            if select.select([self.fd], [], [], 0.1)[0]:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    break
                self.seen += data
                if not data:
                    break
        found = self.seen.find(want, self.pos)
        assert found >= 0, f"never saw {text!r}; the terminal showed:\n{self.transcript()}"
        self.pos = found + len(want)
        return self.transcript()

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def transcript(self) -> str:
        return self.seen.decode(errors="replace").replace("\r\n", "\n")

    def close(self) -> int | None:
        """Wait for the child to exit (killing it after 10 s), keeping what it printed last."""
        with contextlib.suppress(AssertionError):
            self.expect("\0never printed\0", timeout=10)  # reads until the terminal closes
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return None
        finally:
            os.close(self.fd)


@pytest.fixture
def terminal(tmp_path):
    env = _env(TERM="dumb", HOME=str(tmp_path), KRYPTONDB_HISTORY=str(tmp_path / "history"))
    term = Terminal(tmp_path, env)
    yield term
    if term.proc.poll() is None:
        term.proc.kill()


needs_pty = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")


@needs_pty
def test_terminal_session(terminal, tmp_path):
    pytest.importorskip("readline")
    terminal.expect("KryptonDB 0.1.0 — type .help for help, .quit to leave")
    terminal.expect("kryptondb> ")
    terminal.type("sho\t")
    terminal.expect("show ")  # completed, in the case it was typed
    terminal.type("models;\r")
    terminal.expect(HEADERS["models"])
    terminal.expect("kryptondb> ")
    terminal.type("SHOW\r")
    terminal.expect("      ...> ")
    terminal.type("IMAGES;\r")
    terminal.expect(HEADERS["images"])
    terminal.expect("kryptondb> ")
    terminal.type(".quit\r")
    assert terminal.close() == 0
    history = (tmp_path / "history").read_text()
    assert "show models;" in history and ".quit" in history
    print(terminal.transcript())


@needs_pty
def test_ctrl_c_cancels_a_long_statement(terminal):
    terminal.expect("kryptondb> ")
    terminal.type(f"EXPLAIN OCCLUSION OF IMAGE '{IMAGE}' USING MODEL mobilenet_v2 "
                  "PATCH 16 STRIDE 2;\r")  # 11,025 positions: far longer than the wait below
    terminal.expect("STRIDE 2;")  # echoed: the statement starts
    time.sleep(1.5)
    terminal.type("\x03")
    terminal.expect("cancelled")
    terminal.expect("kryptondb> ")
    terminal.type("SHOW MODELS;\r")
    terminal.expect(HEADERS["models"])
    terminal.expect("kryptondb> ")
    terminal.type("\x04")  # Ctrl-D
    assert terminal.close() == 0


def test_an_interrupt_lost_on_the_way_is_raised_by_the_next_progress_update():
    """Ctrl-C during a statement is also recorded: if its KeyboardInterrupt never reaches the
    statement (seen rarely while worker threads ran a scan), the next progress update raises
    it; the SIGINT handler in place before the statement is restored afterwards."""
    import io
    import signal

    from kryptondb.progress import INTERRUPTED, ProgressBar, interruptible

    before = signal.getsignal(signal.SIGINT)
    bar = ProgressBar(10, "scan", stream=io.StringIO())
    with interruptible():
        handler = signal.getsignal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, None)  # what Ctrl-C runs
        with pytest.raises(KeyboardInterrupt):  # had the exception above been swallowed,
            bar.update(1)                       # the next progress update raises it again
    assert signal.getsignal(signal.SIGINT) is before and not INTERRUPTED.is_set()
    bar.update(1)
