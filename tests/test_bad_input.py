"""The bad-input corpus: whatever a user or an attacker sends, KryptonDB answers with a result or
a KryptonError; never another exception, never a hang, never code of theirs run.

Two parts. A hypothesis-driven mutator takes every documented statement form and deletes,
duplicates and swaps tokens, puts absurd numbers, hostile strings and wrong names in, repeats
options, nests statements and adds comments, semicolons and odd characters; each case runs
through ``Connection.execute`` on a fresh in-memory database holding a tiny model, images and
a video, so running it is cheap, and a statement naming a zoo model is only planned (EXPLAIN
PLAN FOR). Then hand-made hostile files (truncated, corrupt, bombs, special files, external
data, malicious checkpoints: tests/hostile_files.py) go through the statements and functions
that read files.

Cases run in a worker process (tests/corpus_worker.py) under a time limit and an address-space
cap, and payloads try to create a marker file; a case that kills the worker is reported and a
new worker goes on. Failures are collected over the whole run and reported together (input and
outcome), not shrunk. Derandomized: every run tries the same cases.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corpus_worker import TIMEOUT_S, World, make_world
from hostile_files import hostile_files, readers

HERE = Path(__file__).resolve().parent
ZOO_NAMES = ("mobilenet_v2", "efficientnet_lite0", "resnet18", "resnet50", "vgg16", "inception3")

# Every documented statement form with every option (docs/language.md, README).
# {img} {img2} {vid} {onnx} {npy} {dir} {out} {marker} are the world's paths.
OCC = "EXPLAIN OCCLUSION OF IMAGE"
SEEDS = (
    f"{OCC} cat USING MODEL tiny",
    f"{OCC} '{{img}}' USING MODEL tiny FOR CLASS 3 PATCH 4 STRIDE 4 FILL 0.25 EXACT NAIVE "
    "BATCH 4 MEMORY 64 MB ON CPU INTO OR REPLACE heat",
    f"{OCC} cat USING MODEL tiny FOR CLASS 7 PATCH 8 STRIDE 2 FILL GRAY INCREMENTAL "
    "ON NUMPY INTO heat2",
    f"{OCC} \"{{img2}}\" USING MODEL tiny PATCH 6 STRIDE 3 FILL BLACK",
    f"{OCC} cat USING MODEL tiny PATCH 4 STRIDE 2 FILL MEAN BATCH 1 MEMORY 1 MB",
    f"{OCC} cat USING MODEL tiny PATCH 5 STRIDE 5 FILL BLUR ON ONNXRUNTIME",
    f"{OCC} cat USING MODEL tiny PATCH 4 STRIDE 1 APPROXIMATE TAU 0.5 DRILLDOWN 0.25 TARGET 3",
    f"{OCC} cat USING MODEL tiny PATCH 4 STRIDE 2 APPROXIMATE TAU 0.8",
    f"{OCC} cat USING MODEL tiny PATCH 4 STRIDE 2 APPROXIMATE DRILLDOWN 0.5",
    f"{OCC} cat USING MODEL tiny PATCH 4 STRIDE 2 APPROXIMATE WITH SSIM >= 0.9",
    f"{OCC} cat USING MODEL tiny PATCH 4 STRIDE 2 APPROXIMATE WITHIN 3 SECONDS",
    f"{OCC} cat USING MODEL tiny PATCH 4 STRIDE 2 APPROXIMATE WITHIN 0.5",
    f"{OCC} cat USING MODEL tiny PATCH 4 STRIDE 2 APPROXIMATE",
    f"{OCC} cat USING MODEL mobilenet_v2 FOR CLASS 'tabby' PATCH 16 STRIDE 4 FILL GRAY ON CPU",
    "EXPLAIN OCCLUSION OF IMAGES ('{img}', cat) USING MODEL tiny PATCH 4 6 STRIDE 2 3 GRID COVER "
    "SCORE LOGIT FOR CLASSES (1, 2) LAYOUT PIXELS",
    "EXPLAIN OCCLUSION OF IMAGES '{dir}/*.png' USING MODEL tiny PATCH 8 STRIDE 8 FOR ALL CLASSES "
    "BASELINE -1.5 GRID FIT LAYOUT WINDOWS SCORE PROBABILITY INTO heats",
    "EXPLAIN OCCLUSION OF IMAGES TABLE images USING MODEL tiny PATCH 8 STRIDE 4 FOR CLASS 3",
    "EXPLAIN OCCLUSION OF TENSOR '{npy}' USING MODEL tiny PATCH 5 STRIDE 5 GRID COVER "
    "APPROXIMATE TAU 0.5",
    "EXPLAIN OCCLUSION OF ? USING MODEL tiny PATCH 4 8 STRIDE 4 BASELINE ? FOR CLASSES (0, 9) "
    "NAIVE",
    "EXPLAIN PLAN FOR EXPLAIN OCCLUSION OF TENSOR ? USING MODEL tiny BASELINE ? PATCH 8",
    "TUNE MODEL tiny PATCH 4 STRIDE 2 FILL GRAY ON IMAGES cat, '{img2}', '{dir}/*.png'",
    "TUNE MODEL tiny PATCH 6 STRIDE 2 ON IMAGES cat",
    "PREDICT IMAGE cat USING MODEL tiny TOP 3 ON CPU INTO OR REPLACE preds",
    "PREDICT IMAGE '{img}' USING MODEL tiny",
    "PREDICT IMAGE cat USING MODEL efficientnet_lite0 TOP 5 INTO p",
    "RECOGNIZE OBJECTS IN VIDEO clip USING MODEL tiny TOP 1 FRAMES 0 TO 3 EVERY 2 INTO labels",
    "RECOGNIZE OBJECTS IN VIDEO '{vid}' USING MODEL tiny THRESHOLD 0.03 KEYFRAME EVERY 4 "
    "KEYFRAME AREA 0.5 BOXES 2 WITH AGREEMENT",
    "RECOGNIZE OBJECTS IN VIDEO clip USING MODEL tiny APPROXIMATE TAU 0.5 INCREMENTAL ON NUMPY",
    "RECOGNIZE OBJECTS IN VIDEO clip USING MODEL tiny NAIVE EXACT TOP 2",
    "RECOGNIZE OBJECTS IN VIDEO clip USING MODEL resnet18 THRESHOLD 0.03",
    "RECOGNIZE OBJECTS IN VIDEO clip USING MODEL tiny FEATURE THRESHOLD 0.05 KEYFRAME EVERY 2 "
    "WITH AGREEMENT",
    "EXPLAIN PLAN ANALYZE FOR RECOGNIZE OBJECTS IN VIDEO '{vid}' USING MODEL tiny FRAMES 0 TO 3 "
    "FEATURE THRESHOLD 0.5",
    "TUNE MODEL tiny ON VIDEO clip FRAMES 0 TO 3 KEYFRAME EVERY 2 FOR AGREEMENT 0.9",
    "PREDICT IMAGES '{dir}/*' USING MODEL tiny TOP 2 ON NUMPY INTO OR REPLACE preds",
    "PREDICT IMAGES ('{img}', cat) USING MODEL tiny TOP 1",
    "PREDICT IMAGES TABLE images USING MODEL tiny",
    "RECOGNIZE OBJECTS IN VIDEOS ('{vid}', clip) USING MODEL tiny TOP 1 FRAMES 0 TO 3 EVERY 2 "
    "THRESHOLD 0.03 KEYFRAME EVERY 2 INTO labels2",
    "RECOGNIZE OBJECTS IN VIDEOS '{vid}*' USING MODEL tiny NAIVE TOP 2",
    "EXPLAIN PLAN ANALYZE FOR RECOGNIZE OBJECTS IN VIDEOS (clip) USING MODEL resnet18 TOP 1",
    "CREATE MODEL mynet FROM '{onnx}'",
    "CREATE MODEL mynet FROM '{onnx}' PREPROCESS (RESIZE 18 CROP 16 SCALE 255 "
    "MEAN (0.5, 0.5, 0.5) STD (0.25, 0.25, 0.25))",
    "CREATE MODEL mynet FROM '{onnx}' PREPROCESS RESIZE 16 16 MEAN (0.5, 0.4, -0.3) STD (1, 2, 3)",
    "CREATE MODEL mynet FROM '{onnx}' PREPROCESS NONE",
    "CREATE MODEL mynet FROM '{onnx}' PREPROCESS IMAGENET",
    "CREATE MODEL mynet FROM '{onnx}' PREPROCESS SCALE 255",
    "CREATE MODEL tiny FROM '{onnx}' PREPROCESS (RESIZE 20 CROP 16 SCALE 2 STD (0.5, 0.5, 0.5)); "
    f"{OCC} cat USING MODEL tiny PATCH 4 FILL 0.25; PREDICT IMAGE cat USING MODEL tiny",
    "LOAD IMAGE '{img2}' AS dog",
    "LOAD VIDEO '{vid}' AS street",
    "SHOW MODELS", "SHOW IMAGES", "SHOW VIDEOS", "SHOW VIEWS", "SHOW TABLES",
    "DESCRIBE MODEL tiny", "DESCRIBE resnet18",
    "DROP TABLE IF EXISTS heat", "DROP MODEL tiny", "DROP IMAGE cat", "DROP VIDEO clip",
    "DROP VIEW IF EXISTS v",
    "EXPLAIN PLAN FOR PREDICT IMAGE cat USING MODEL tiny",
    f"EXPLAIN PLAN ANALYZE VERBOSE FORMAT TEXT FOR {OCC} cat USING MODEL tiny PATCH 8 STRIDE 8",
    f"EXPLAIN PLAN FORMAT DOT FOR {OCC} cat USING MODEL tiny",
    "EXPLAIN PLAN ANALYZE FORMAT SVG FOR RECOGNIZE OBJECTS IN VIDEO clip USING MODEL tiny",
    "EXPLAIN PLAN FORMAT HTML FOR SHOW MODELS",
    "SELECT y, x, drop FROM heat ORDER BY drop DESC LIMIT 5",
    "SELECT label, probability FROM preds WHERE probability > 0.1",
    "SELECT name, width, height FROM images",
    "WITH t AS (SELECT * FROM heat) SELECT COUNT(*) AS n FROM t",
    # COPY writes files: only under {out}, and only with an extension (the marker has none)
    "COPY heat TO '{out}/heat.parquet'",
    "COPY (SELECT label, probability FROM preds WHERE probability > 0.1) TO '{out}/top.csv'",
    "COPY preds TO '{out}/preds.json'",
    "COPY models TO '{out}/models.ndjson'",
    # SQL whose text the old executor pasted into Python source
    "SELECT EXTRACT(\"x' + str(__import__('os').system('touch {marker}')) + '\" FROM NULL) "
    "FROM models",
    "SELECT JSON_EXTRACT(name, '$.a') FROM models",
    "SELECT * FROM heat; COPY heat TO '{marker}'",
)

NUMBERS = ("0", "1", "2", "-1", "?", "65536", "2147483648", "9223372036854775808", "9" * 30,
           "9" * 400, "0.5", "1.5", "0.0", "-0.5", ".5", "5.", "1e3", "1e400", "1E-400", "0x10",
           "00000000000000000004", "1_000", "NaN", "inf", "\u0663", "1" + "0" * 19)
STRINGS = ("''", "'it''s'", r"'a\'b'", "'back\\\\'", "'nul\x00byte'", "'\u732b\U0001f431\u00e9'",
           "'line\nbreak'", "';'", "'a;b'", "'; DROP MODEL tiny; --'", "'$(touch {marker})'",
           "'`touch {marker}`'", "'__import__(\"os\").system(\"touch {marker}\")'",
           "'{img}'", "'{img2}'", "'{vid}'", "'{onnx}'", "'{dir}'", "'{dir}/*.png'", "'{dir}/*'",
           "'/nonexistent/cat.png'", "'~'", "'../../../../../../etc/passwd'", "'/etc/passwd'",
           "'x' 'y'", "'''", "\"dq\"", "'%s%n%x'", "'{marker}'", "'\u202eevil'")
NAMES = ("EXPLAIN", "SELECT", "FROM", "MODEL", "drop", "models", "views", "NULL", "Patch",
         *ZOO_NAMES, "nope", "resnt18", "a" * 300, "_", "Tiny", "tiny", "cat", "clip", "heat",
         "preds", "mynet", "tiny10")
INSERTS = (";", ",", "(", ")", ">=", "*", "=", "-", "--", "-- comment\n", "/* c */", "#", "\n",
           "\t", "\r", "\x00", "\ufeff", "\u00a0", "\u2028", "\u00e9", "FOR", "OF", "INTO",
           "KEYFRAME", "APPROXIMATE", "EXPLAIN PLAN FOR", "'", "\"", "\\", "$", "{", "}",
           "COPY heat TO '{marker}'", "__import__('os').system('touch {marker}')")
NESTS = ("EXPLAIN PLAN FOR ", "EXPLAIN PLAN ANALYZE VERBOSE FOR ", "EXPLAIN PLAN FORMAT SVG FOR ",
         "EXPLAIN PLAN FOR EXPLAIN PLAN FOR ", "EXPLAIN PLAN ANALYZE FOR EXPLAIN PLAN FOR ")
# Options and how many tokens follow each (repeated by the `repeat` mutation).
ARITY = {"PATCH": 1, "STRIDE": 1, "FILL": 1, "BASELINE": 1, "SCORE": 1, "GRID": 1, "LAYOUT": 1,
         "TOP": 1, "BATCH": 1, "MEMORY": 2, "FRAMES": 3, "EVERY": 1, "THRESHOLD": 1, "KEYFRAME": 2, "BOXES": 1, "TAU": 1, "DRILLDOWN": 1,
         "TARGET": 1, "WITHIN": 1, "ON": 1, "INTO": 1, "FOR": 2, "WITH": 1, "EXACT": 0,
         "NAIVE": 0, "INCREMENTAL": 0, "APPROXIMATE": 0, "ANALYZE": 0, "VERBOSE": 0,
         "FORMAT": 1, "PREPROCESS": 1, "RESIZE": 2, "CROP": 1, "SCALE": 1}

TOKEN = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"|\d+\.\d*|\.\d+|\d+"
                   r"|[A-Za-z_][A-Za-z0-9_]*|>=|\S")
NUMBER = re.compile(r"\d|\.\d")


def _index(draw, tokens, pick=lambda t: True) -> int | None:
    where = [i for i, t in enumerate(tokens) if pick(t)]
    return draw(st.sampled_from(where)) if where else None


def _replace(pool, pick):
    def mutate(draw, tokens):
        i = _index(draw, tokens, pick)
        if i is not None:
            tokens[i] = draw(st.sampled_from(pool))
        return tokens
    return mutate


def _delete(draw, tokens):
    i = _index(draw, tokens)
    return tokens if i is None else tokens[:i] + tokens[i + 1:]


def _duplicate(draw, tokens):
    i = _index(draw, tokens)
    return tokens if i is None else tokens[:i + 1] + tokens[i:]


def _swap(draw, tokens):
    i = _index(draw, tokens[:-1])
    if i is not None:
        tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
    return tokens


def _insert(draw, tokens):
    i = draw(st.integers(0, len(tokens)))
    return tokens[:i] + [draw(st.sampled_from(INSERTS))] + tokens[i:]


def _repeat_option(draw, tokens):
    i = _index(draw, tokens, lambda t: t.upper() in ARITY)
    if i is None:
        return tokens
    option = tokens[i:i + 1 + ARITY[tokens[i].upper()]]
    at = draw(st.sampled_from([i + len(option), len(tokens)]))
    return tokens[:at] + option + tokens[at:]


def _nest(draw, tokens):
    if draw(st.booleans()):
        return [draw(st.sampled_from(NESTS))] + tokens
    other = TOKEN.findall(draw(st.sampled_from(SEEDS)))
    return tokens + [draw(st.sampled_from([";", "FOR", "INTO", "("]))] + other


def _case(draw, tokens):
    i = _index(draw, tokens, str.isalpha)
    if i is not None:
        tokens[i] = draw(st.sampled_from([str.lower, str.upper, str.title]))(tokens[i])
    return tokens


VALUES = (_replace(NUMBERS, lambda t: bool(NUMBER.match(t))),
          _replace(STRINGS, lambda t: t[:1] in "'\""),
          _replace(NAMES, lambda t: t[:1].isalpha() or t[:1] == "_"),
          _repeat_option)
# Values are drawn three times as often: a statement with a bad value still parses, so it reaches
# the binder and the engine, where most of the mistakes hide.
MUTATIONS = (_delete, _duplicate, _swap, _insert, _nest, _case,
             _replace(NUMBERS + STRINGS + NAMES, lambda t: True), *VALUES * 3)


@st.composite
def statements(draw) -> str:
    tokens = TOKEN.findall(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        tokens = draw(st.sampled_from(MUTATIONS))(draw, list(tokens))
    return draw(st.sampled_from([" ", " ", "\n", "  "])).join(tokens)


def cheap(text: str) -> str:
    """Statements that would run a zoo model are only planned (each runs in well under a second
    on the tiny model; a zoo model's scan takes minutes)."""
    from kryptondb.lang.parser import split_statements

    zoo = re.compile(r"\b(" + "|".join(ZOO_NAMES) + r")\b", re.I)
    parts = []
    for part in split_statements(text):
        if zoo.search(part):
            part = re.sub(r"\bANALYZE\b", "", part, flags=re.I)
            if not re.match(r"\s*(EXPLAIN\s+PLAN|DESCRIBE|SHOW|DROP)\b", part, re.I):
                part = "EXPLAIN PLAN FOR " + part
        parts.append(part)
    return "\n;".join(parts)


# -- the mutator -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("badinput"))


@pytest.fixture(scope="module")
def worker(world):
    w = Worker(world)
    yield w
    w.close()


def _corpus(world: World, worker, examples: int) -> None:
    failures: dict[str, list[str]] = {}
    seen = []

    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(statements())
    def run(template):
        text = cheap(world.fill(template))
        seen.append(text)
        result = worker.run({"statement": text})
        if result not in ("ok", "refused"):
            failures.setdefault(_category(result), []).append(f"{text!r}\n    -> {result}")

    run()
    assert len(seen) >= examples * 0.9, f"only {len(seen)} cases ran"
    assert not failures, _report(failures, len(seen))


def _category(result: str) -> str:
    return result.split(":")[0]


def _report(failures: dict[str, list[str]], total: int) -> str:
    lines = [f"{sum(map(len, failures.values()))} of {total} cases failed"]
    for kind, cases in sorted(failures.items()):
        lines.append(f"== {kind}: {len(cases)}")
        lines += [f"  {c}" for c in cases[:25]]
    return "\n".join(lines)


def test_mutated_statements_raise_only_krypton_errors(world, worker):
    _corpus(world, worker, 800)


@pytest.mark.slow
def test_mutated_statements_many(world, worker):
    _corpus(world, worker, 6000)


def test_seeds_run(world, worker):
    """Every seed is a valid statement (else the mutator would only test the parser's errors)."""
    for template in SEEDS[:-3]:  # the last three are SQL payloads
        text = cheap(world.fill(template))
        assert worker.run({"statement": text}) == "ok", text


# -- hostile files -----------------------------------------------------------------------------


def test_hostile_files_raise_only_krypton_errors(world, worker):
    files = sorted(hostile_files(world))
    failures: dict[str, list[str]] = {}
    cases = [(reader, name) for name in files for reader in readers(name)]
    for reader, name in cases:
        result = worker.run({"read": [reader, name]})
        if result not in ("ok", "refused"):
            failures.setdefault(_category(result), []).append(
                f"{reader} <- {name}\n    -> {result}")
    assert not failures, _report(failures, len(cases))


# -- the worker process ------------------------------------------------------------------------


class Worker:
    """The parent's side of tests/corpus_worker.py: one JSON request, one JSON answer. A case
    that kills the worker (a crash, or the watchdog after a hang in C code) is reported as such
    and a new worker takes the next case."""

    def __init__(self, world: World):
        self.world, self.proc = world, None
        self.err = tempfile.TemporaryFile("w+")

    def run(self, request: dict) -> str:
        if self.proc is None:
            self._start()
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        if select.select([self.proc.stdout], [], [], TIMEOUT_S * 4)[0]:
            line = self.proc.stdout.readline()
            if line:
                return json.loads(line)["outcome"]
        self.close()
        self.err.seek(0)
        tail = self.err.read()[-600:]
        return "hang or crash: the worker process died; its last words: " + tail

    def _start(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent)]))
        code = "import sys, corpus_worker; corpus_worker.serve(sys.argv[1])"
        self.err.seek(0)
        self.err.truncate()
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(self.world.dir)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, cwd=self.world.dir, env=env)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
