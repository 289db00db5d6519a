"""The shell, driven as a user drives it: `python -m kryptondb` with piped stdin, run_repl and
run_script on text, and its pieces (completion, highlighting, the pager). A real terminal:
tests/test_shell_pty.py."""

from __future__ import annotations

import os
import subprocess
import sys
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


def test_piped_input_stops_at_the_first_error_with_a_caret_and_status_1(tmp_path):
    """Like `duckdb -f`: statements before the error ran, none after it (issue 14: piped
    input went on after errors and exited 0)."""
    r = shell("SHOW MODELS;\nSHOW MODLES;\nSHOW IMAGES;\n", tmp_path, merge=True)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    err = lines.index("error: unexpected 'MODLES' at line 1, column 6")
    assert lines[err + 1:err + 3] == ["  SHOW MODLES", "       ^^^^^^"]
    assert lines[err + 3].startswith("expected: MODELS")
    assert r.stdout.index(HEADERS["models"]) < r.stdout.index("error:")
    assert HEADERS["images"] not in r.stdout


def test_unknown_name_error_lists_the_known_ones(tmp_path):
    r = shell(f"PREDICT IMAGE '{IMAGE}'\nUSING MODEL resnt18;\nSHOW MODELS;\n", tmp_path)
    assert r.returncode == 1
    assert "error: no model 'resnt18'; known: efficientnet_lite0" in r.stderr
    assert "^^^^^^^" in r.stderr
    assert HEADERS["models"] not in r.stdout  # piped input stops at the first error


def test_dot_commands(tmp_path):
    r = shell(".help\n.tables\n.models\n.timer on\nSHOW VIEWS;\n.timer off\n.quit\n"
              "SHOW MODELS;\n", tmp_path)
    assert r.returncode == 0
    for name, _ in EXAMPLES:
        assert f"  {name}  " in r.stdout
    for command in (".tables", ".schema", ".models", ".mode", ".read", ".output", ".outdir",
                    ".timer", ".pager", ".open", ".quit", "\\d", "\\q"):
        assert command in r.stdout
    assert "no tables or views yet" in r.stdout
    assert "mobilenet_v2        zoo   ImageNet" in r.stdout
    assert r.stdout.count("time: ") == 1
    assert HEADERS["models"] not in r.stdout  # .quit ended the session
    r = shell(".nope\nSHOW MODELS;\n", tmp_path)
    assert r.returncode == 1 and HEADERS["models"] not in r.stdout
    assert "error: unknown command '.nope'; try .help" in r.stderr


def test_dot_commands_check_their_arguments():
    """.tables extra, .quit now ... ran as if the argument were not there."""
    import io

    from kryptondb.repl import run_repl

    for line, says in ((".tables extra", ".tables takes no argument, got 'extra'"),
                       (".quit now", ".quit takes no argument"), (".timer maybe", "usage: .timer"),
                       (".open /dev/null", "not a KryptonDB database directory"),
                       (".outdir /dev/null", "it is a character device, not a folder"),
                       (".output /dev/null", "it is a character device, not a regular file"),
                       (".mode xml", "unknown output mode 'xml'"), (".read", "usage: .read"),
                       (".pager maybe", "usage: .pager on|off"), (".schema nope", "no table")):
        out = io.StringIO()
        status = run_repl(kryptondb.connect(), io.StringIO(line + "\nSHOW VIEWS;\n"), out,
                          interactive=True)
        assert f"error: {says}" in out.getvalue() or says in out.getvalue(), line
        assert "(0 rows)" in out.getvalue() and status == 0, line  # the session went on


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
    r = shell(f".outdir {figs}\nLOAD IMAGE '{IMAGE}' AS cat;\n"
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
    """.outdir (was .output) to a FIFO or a device said '[Errno 17] File exists'; a plan SVG (or heatmap PNG)
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
    assert "heat.png' as the output folder: it is a FIFO" in run(f".outdir {tmp_path}/heat.png")
    assert "/dev/null' as the output folder: it is a character device" in run(".outdir /dev/null")
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


@pytest.fixture
def completer(tmp_path):
    import pyarrow as pa

    con = kryptondb.connect(tmp_path / "db")
    con.execute(f"LOAD IMAGE '{IMAGE}' AS chelsea")
    con.db.put_table("heat", pa.table({"y": [0], "x": [0], "drop": [0.5]}))
    con.db.put_table("labels", pa.table({"frame": [0], "label": ["cat"]}))
    return Completer(lambda: con)


def test_completion_offers_the_keywords_the_grammar_accepts_in_the_typed_case(completer):
    c = completer
    assert c.candidates("") == ["COPY", "CREATE", "DESCRIBE", "DROP", "EXPLAIN", "LOAD", "PREDICT",
                                "RECOGNIZE", "SELECT", "SHOW", "TUNE", "WITH"]
    assert c.candidates("expl") == ["explain"] and c.candidates("EXPL") == ["EXPLAIN"]
    assert c.candidates("explain Occ") == ["OCCLUSION"]
    assert c.candidates("explain ") == ["occlusion", "plan"]  # as the last word was typed
    assert c.candidates("show mo") == ["models"]  # SHOW takes a kind, not MODEL
    assert c.candidates("EXPLAIN OCCLUSION OF IMAGE chelsea USING MODEL resnet18 ST") == \
        ["STRIDE"]
    assert c.candidates("SHOW MODELS;\nSHOW IMAGES; sh") == ["show"]  # the open statement
    assert c.candidates("SHOW\n  IM") == ["IMAGES"]
    every = c.candidates("show $ ex")  # does not lex: every keyword that fits
    assert {"exact", "exists", "explain"} <= set(every) and "show" not in every


def test_completion_offers_catalog_names_where_the_grammar_wants_them(completer):
    c = completer
    models = c.candidates("PREDICT IMAGE chelsea USING MODEL ")
    assert {"mobilenet_v2", "resnet18", "efficientnet_lite0"} <= set(models)
    assert c.candidates("predict image chelsea using model mobilenet") == ["mobilenet_v2"]
    assert c.candidates("DESCRIBE resnet1") == ["resnet18"]
    assert c.candidates("EXPLAIN OCCLUSION OF IMAGE ch") == ["chelsea"]
    assert c.candidates("DROP IMAGE ") == ["IF", "chelsea"] and c.candidates("DROP TABLE ") == \
        ["IF", "heat", "labels"]
    assert c.candidates("CREATE MODEL ") == []  # a new name: nothing to offer
    assert c.candidates("RECOGNIZE OBJECTS IN VIDEO ") == []
    assert c.candidates("PREDICT IMAGE x USING MODEL m ON n") == ["numpy"]
    assert c.candidates("COPY h") == ["heat"] and c.candidates("copy heat t") == ["to"]
    assert c.candidates("PREDICT IMAGE x USING MODEL m INTO OR REPLACE l") == ["labels"]
    assert c.candidates("COPY heat TO 'h.csv' (FORMAT c") == ["csv"]


def test_completion_in_select_offers_relations_then_their_columns(completer):
    c = completer
    assert c.candidates("SELECT * FROM ") == ["heat", "images", "labels", "models", "tables",
                                              "videos", "views"]
    assert c.candidates("select * from heat join la") == ["labels"]
    assert c.candidates("SELECT dr", " FROM heat") == ["drop"]  # the table named after it
    assert c.candidates("SELECT x FROM heat WHERE ")[:4] == ["y", "x", "drop", "AND"]
    assert c.candidates("SELECT fr") == ["frame", "frames", "from"]  # all relations' columns
    assert c.candidates("select frame, label from labels order b") == ["between", "by"]


def test_completion_of_quoted_paths_and_commands(completer, tmp_path):
    c = completer
    (tmp_path / "photo.png").write_bytes(b"")
    (tmp_path / "scripts").mkdir()
    assert c.candidates(f"LOAD IMAGE '{tmp_path}/ph") == [f"{tmp_path}/photo.png"]
    assert c.candidates(f"PREDICT IMAGE \"{tmp_path}/s") == [f"{tmp_path}/scripts"]
    assert c.candidates("SHOW MODELS -- 'x") == []  # in a comment: nothing
    assert c.candidates(".sch") == [".schema"] and c.candidates("\\") == ["\\?", "\\d", "\\q"]
    assert c.candidates(".schema h") == ["heat"] and c.candidates("\\d l") == ["labels"]
    assert c.candidates("SELECT *\n.mode c") == ["csv"]  # a command inside a statement
    assert c.candidates(".timer o") == ["on", "off"]
    assert c.candidates(f".read {tmp_path}/scr") == [f"{tmp_path}/scripts"]
    assert {"RECOGNIZE", "STRIDE", "SVG", "TABLES", "SELECT"} <= set(c.keywords)


def test_highlighting_tells_keywords_strings_numbers_comments_and_commands():
    from kryptondb.repl.highlight import pieces

    keywords = frozenset(Completer(kryptondb.connect).keywords)
    assert pieces("explain occlusion of image 'a.png' using model m patch 16 -- x", keywords) \
        == [("keyword", "explain"), ("", " "), ("keyword", "occlusion"), ("", " "),
            ("keyword", "of"), ("", " "), ("keyword", "image"), ("", " "),
            ("string", "'a.png'"), ("", " "), ("keyword", "using"), ("", " "),
            ("keyword", "model"), ("", " m "), ("keyword", "patch"), ("", " "),
            ("number", "16"), ("", " "), ("comment", "-- x")]
    assert pieces("  .schema heat", keywords) == [("command", "  .schema heat")]
    assert pieces("LOAD IMAGE 'unfinished", keywords)[-1] == ("string", "'unfinished")
    assert "".join(t for _, t in pieces("SELECT a.b, 1.5e3 FROM t;", keywords)) == \
        "SELECT a.b, 1.5e3 FROM t;"


def test_the_editor_lexer_and_completer_speak_prompt_toolkit(completer, tmp_path):
    """The adapters terminal.py hands prompt_toolkit: styles by class, completions that
    replace the partial word."""
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from kryptondb.repl.terminal import _completer, _lexer

    class FakeShell:
        con = completer.connection()

    line = _lexer(FakeShell()).lex_document(Document("SHOW models;"))(0)
    assert line[0] == ("class:keyword", "SHOW")
    found = list(_completer(completer).get_completions(
        Document("predict image chelsea using model mobilen"), CompleteEvent()))
    assert [(f.text, f.start_position) for f in found] == [("mobilenet_v2", -7)]
    (tmp_path / "photo.png").write_bytes(b"")
    found = list(_completer(completer).get_completions(
        Document(f"LOAD IMAGE '{tmp_path}/ph"), CompleteEvent()))
    assert [(f.text, f.start_position, f.display_text) for f in found] == \
        [("oto.png", 0, "photo.png")]


def test_enter_runs_a_complete_statement_or_a_command_line_else_starts_a_line():
    from kryptondb.repl.terminal import split_command
    from kryptondb.repl.text import ready

    assert ready("SHOW\n  MODELS;") and ready("SHOW MODELS; -- done") and ready("")
    assert not ready("SHOW MODELS") and not ready("LOAD IMAGE 'a;b") and not ready("SHOW; SH")
    assert ready(".tables") and ready("\\d heat") and ready("help") and ready("exit")
    assert split_command("SELECT *\n.tables", 1) == (".tables", "SELECT *\n")
    assert split_command("SELECT *\nhelp", 1) is None  # bare words only start a statement
    assert split_command("LOAD IMAGE 'a\n.b", 1) is None  # inside a quote: text


def test_dot_commands_inside_an_unfinished_statement_keep_it_pending():
    import io

    from kryptondb.repl import run_repl

    out = io.StringIO()
    status = run_repl(kryptondb.connect(), io.StringIO("SHOW\n.mode csv\n\\d\n  VIEWS;\n"
                                                       "help\nexit\nSHOW MODELS;\n"), out)
    text = out.getvalue()
    assert status == 0
    assert "no tables or views yet" in text  # \d ran while SHOW was pending
    assert "name,rows,columns,created" in text  # then SHOW VIEWS, in csv
    assert "Commands (on a line of their own" in text  # help
    assert HEADERS["models"].split()[0] + ",kind" not in text  # exit left before SHOW MODELS


def test_schema_mode_output_and_read(tmp_path):
    import io

    import pyarrow as pa

    from kryptondb.repl import run_script

    con = kryptondb.connect(tmp_path / "db")
    con.db.put_table("heat", pa.table({"y": [0, 1], "drop": [0.5, 0.25]}))
    (tmp_path / "inner.kql").write_text(".mode json\nSELECT y FROM heat ORDER BY y;\n")
    out, err = io.StringIO(), io.StringIO()
    status = run_script(con, f".schema heat\n\\d\n.schema\n.output {tmp_path}/o.csv\n"
                             ".mode csv\nSELECT * FROM heat;\n.output\n"
                             f".read {tmp_path}/inner.kql\n.mode\n", out, err)
    assert status == 0, err.getvalue()
    text = out.getvalue()
    assert "column  type\n------  ------\ny       int64\ndrop    double" in text
    assert "table  column  type" in text  # .schema of every table names the table
    assert (tmp_path / "o.csv").read_text() == "y,drop\n0,0.5\n1,0.25\n"
    assert "0.25" not in text.split("table  column")[1].split("[")[0]  # it went to the file
    assert '[{"y": 0},\n {"y": 1}]' in text and "mode: json" in text


def test_read_stops_at_the_first_error_and_names_file_and_line(tmp_path):
    import io

    from kryptondb.repl import run_repl

    script = tmp_path / "four.kql"
    script.write_text(f"LOAD IMAGE '{IMAGE}' AS first;\nSHOW IMAGES;\n\n"
                      f"LOAD IMAGE '{IMAGE}'\n  AS;\nLOAD IMAGE '{IMAGE}' AS fourth;\n")
    out = io.StringIO()
    status = run_repl(kryptondb.connect(), io.StringIO(f".read {script}\nSHOW IMAGES;\n"), out,
                      interactive=True)  # a person's session goes on after the error
    text = out.getvalue()
    assert status == 0
    assert f"error: {script}, statement at line 4: unexpected end of statement at line 2" in text
    assert text.count("\nfirst ") == 2 and "fourth" not in text
    status = run_repl(kryptondb.connect(), io.StringIO(f".read {script}\nSHOW IMAGES;\n"),
                      out := io.StringIO())
    assert status == 1 and out.getvalue().count("\nfirst ") == 1  # a pipe stops there


def test_the_pager_takes_output_taller_than_the_screen(tmp_path, monkeypatch):
    import io

    from kryptondb.repl.output import Output

    monkeypatch.setenv("PAGER", f"sh -c 'sed s/^/paged:/ > {tmp_path}/paged'")
    monkeypatch.setenv("LINES", "5")
    monkeypatch.setenv("COLUMNS", "80")
    screen = io.StringIO()
    out = Output(screen, terminal=True)
    out.write("short\n")
    out.flush()
    out.write("1\n2\n3\n4\n5\n")
    out.flush()
    assert screen.getvalue() == "short\n"
    assert (tmp_path / "paged").read_text() == "".join(f"paged:{i}\n" for i in range(1, 6))
    out.paging = False  # .pager off
    out.write("1\n2\n3\n4\n5\n")
    out.flush()
    assert screen.getvalue().endswith("5\n")
    monkeypatch.setenv("PAGER", "")
    out.paging = True  # no pager to run: straight to the screen
    out.write("a\n" * 9)
    out.flush()
    assert screen.getvalue().endswith("a\n" * 9)


# -- Ctrl-C (the terminal itself: tests/test_shell_pty.py) -----------------------------------

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
