"""Declared preprocessing (issue 13, item 3): ``CREATE MODEL m FROM 'm.onnx' PREPROCESS NONE |
IMAGENET | SCALE k | (RESIZE .. CROP .. SCALE .. MEAN (..) STD (..))`` parsed with spans, checked
by the binder with carets, stored in catalog.json (absent: the default, also in catalogs written
before declarations existed), bound into the ModelRef, and shown by DESCRIBE.

End-to-end PREDICT and EXPLAIN OCCLUSION under each preprocessing: tests/test_preprocess_models.py.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kryptondb
from kryptondb.errors import KryptonError, PlanError, QuerySyntaxError, StorageError
from kryptondb.graph.builder import Builder
from kryptondb.lang import ast
from kryptondb.lang.parser import parse
from kryptondb.media.images import (IMAGENET_MEAN, IMAGENET_STD, Preprocess,
                                    preprocess_from_json, preprocess_to_json)
from kryptondb.plan.binder import bind
from kryptondb.runtime.onnx_export import to_onnx

IMG = kryptondb.bundled_image()


def cnn(shape: tuple[int, int, int], seed: int = 0, classes: int = 10):
    """A small CNN taking ``shape`` inputs, ending in a softmax."""
    b = Builder("cnn", shape, seed=seed)
    x = b.conv_bn("input", "c1", "b1", 8, 3, 1, 1)
    x = b.pool(x, "max", 2, 2, 0, name="pool")
    x = b.conv_bn(x, "c2", "b2", 8, 3, 1, 1)
    return b.build(b.softmax(b.linear(b.flatten(b.global_pool(x)), "fc", classes)))


def save(path, shape, seed: int = 0) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(to_onnx(cnn(shape, seed)).SerializeToString())
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pre")
    return {"rgb": save(d / "rgb.onnx", (3, 16, 16)), "grey": save(d / "grey.onnx", (1, 28, 28)),
            "wide": save(d / "wide.onnx", (3, 24, 40))}


def create(path: str, declared: str = "", name: str = "m") -> str:
    return f"CREATE MODEL {name} FROM '{path}'" + (f" PREPROCESS {declared}" if declared else "")


def bound(path: str, declared: str):
    """The Preprocess the binder makes of a declaration, for the model file at ``path``."""
    text = create(path, declared)
    plan, _ = bind(kryptondb.connect().db, parse(text), text)
    return plan.arg("preprocess")


# -- the Preprocess value ----------------------------------------------------------------------


@pytest.mark.parametrize("pre, text", [
    (Preprocess(), "IMAGENET"),
    (Preprocess.imagenet(32), "IMAGENET"),
    (Preprocess(resize=342, crop=299), "(RESIZE 342 CROP 299 MEAN (0.485, 0.456, 0.406) "
                                       "STD (0.229, 0.224, 0.225))"),
    (Preprocess.none(), "NONE"),
    (Preprocess.scaled(255), "SCALE 255"),
    (Preprocess.scaled(0.5), "SCALE 0.5"),
    (Preprocess.scaled(1e6), "SCALE 1000000"),
    (Preprocess(None, None, (1e-4, 0.1, -2.5), (1e-5, 1, 3)),
     "(MEAN (0.0001, 0.1, -2.5) STD (0.00001, 1, 3))"),
    (Preprocess((24, 40), None, (), ()), "(RESIZE 24 40)"),
    (Preprocess(32, (28, 20), (0.5,), (0.25,), 2.0), "(RESIZE 32 CROP 28 20 SCALE 2 MEAN (0.5) "
                                                     "STD (0.25))"),
])
def test_each_preprocessing_reads_as_the_kql_that_declares_it(pre, text):
    assert str(pre) == text
    assert preprocess_from_json(json.loads(json.dumps(preprocess_to_json(pre)))) == pre


@pytest.mark.parametrize("kwargs, says", [
    ({"resize": 256, "crop": 300}, "crop 300 is larger than its resize 256"),
    ({"resize": (20, 30), "crop": (21, 10)}, "larger than its resize"),
    ({"std": (0.2, 0.0, 0.2)}, "std must be"),
    ({"std": (0.2, -1.0, 0.2)}, "all positive"),
    ({"mean": (0.5,)}, "one value per channel each"),
    ({"scale": 0}, "scale must be a positive number"),
    ({"scale": float("nan")}, "scale must be a positive number"),
    ({"resize": (1, 2, 3)}, "resize must be a positive integer"),
    ({"crop": 0}, "crop must be a positive integer"),
])
def test_a_preprocessing_that_cannot_work_is_refused(kwargs, says):
    with pytest.raises(KryptonError, match=re.escape(says)):
        Preprocess(**kwargs)


preprocessings = st.builds(
    lambda n, scale, mean, std: Preprocess(None, None, tuple(mean[:n]), tuple(std[:n]), scale),
    st.sampled_from([0, 1, 3]), st.floats(0.01, 300),
    st.lists(st.floats(-2, 2), min_size=3, max_size=3),
    st.lists(st.floats(0.01, 3), min_size=3, max_size=3))


@settings(max_examples=60, deadline=None)
@given(preprocessings, st.integers(0, 2**31))
def test_to_pixels_undoes_from_pixels(pre, seed):
    c = len(pre.mean) or 3
    x = np.random.default_rng(seed).random((c, 4, 5), dtype=np.float32)
    np.testing.assert_allclose(pre.to_pixels(pre.from_pixels(x)), x, atol=1e-4)


# -- parsing -----------------------------------------------------------------------------------


def test_the_forms_parse_with_spans():
    text = create("m.onnx", "(RESIZE 256 CROP 224 SCALE 255 MEAN (0.5, 0.4, -0.3) "
                            "STD (0.2, 0.3, 0.4))")
    d = parse(text).preprocess
    assert (d.kind, d.resize, d.crop, d.scale) == ("steps", (256,), (224,), 255.0)
    assert (d.mean, d.std) == ((0.5, 0.4, -0.3), (0.2, 0.3, 0.4))
    shown = {k: text[s.start:s.start + s.length] for k, s in d.spans.items()}
    assert shown["resize"] == "RESIZE 256" and shown["crop"] == "CROP 224"
    assert shown["mean.2"] == "-0.3" and shown["std"] == "STD (0.2, 0.3, 0.4)"
    assert text[d.span.start:].startswith("PREPROCESS (")
    assert parse(create("m.onnx")).preprocess is None
    assert parse(create("m.onnx", "none")).preprocess == ast.Preprocessing("none")
    assert parse(create("m.onnx", "ImageNet")).preprocess == ast.Preprocessing("imagenet")


def test_parentheses_are_optional():
    for steps in ("SCALE 255", "RESIZE 28 28 MEAN (0.5) STD (0.25)", "CROP 10 12"):
        assert parse(create("m.onnx", steps)) == parse(create("m.onnx", f"({steps})"))


@pytest.mark.parametrize("declared, says, at", [
    ("", "unexpected end of statement", "PREPROCESS"),
    ("(RESIZE 32 RESIZE 32)", "RESIZE is given twice", "RESIZE 32)"),
    ("MEAN 0.5", "unexpected '0.5'", "0.5"),
    ("()", "unexpected ')'", ")"),
    ("(MEAN (0.5 0.4))", "unexpected '0.4'", "0.4"),
    ("NONE SCALE 2", "unexpected 'SCALE'", "SCALE 2"),
])
def test_syntax_errors_point_at_the_step(declared, says, at):
    text = create("m.onnx") + " PREPROCESS " + declared
    with pytest.raises(QuerySyntaxError, match=re.escape(says)) as info:
        parse(text)
    e = info.value
    assert text[e.column - 1:].startswith(at.split()[0]) or says.startswith("unexpected end")
    if not declared:
        assert {"NONE", "IMAGENET", "SCALE", "RESIZE", "'('"} <= set(e.expected)


# -- binding: the checks and what they make ----------------------------------------------------


@pytest.mark.parametrize("model, declared, made", [
    ("rgb", "NONE", Preprocess.none()),
    ("rgb", "IMAGENET", Preprocess(resize=18, crop=16)),
    ("rgb", "SCALE 255", Preprocess.scaled(255)),
    ("rgb", "(RESIZE 20 CROP 16 MEAN (0.5, 0.5, 0.5))", Preprocess(20, 16, (0.5,) * 3, (1.0,) * 3)),
    ("grey", "(RESIZE 28 28 STD (0.3))", Preprocess((28, 28), None, (0.0,), (0.3,))),
    ("grey", "NONE", Preprocess.none()),
    ("wide", "(RESIZE 40 CROP 24 40 SCALE 255)", Preprocess(40, (24, 40), (), (), 255)),
    ("wide", "(RESIZE 24 40)", Preprocess((24, 40), None, (), ())),
])
def test_the_binder_makes_the_declared_preprocessing(files, model, declared, made):
    assert bound(files[model], declared) == made


@pytest.mark.parametrize("model, declared, says, at", [
    ("rgb", "(MEAN (0.5, 0.5, 0.5) STD (0.2, 0, 0.2))", "STD values must be positive", "0,"),
    ("rgb", "(STD (-0.2, 0.2, 0.2))", "STD values must be positive", "-0.2"),
    ("rgb", "SCALE 0", "SCALE must be positive", "0"),
    ("rgb", "SCALE -255", "SCALE must be positive", "-255"),
    ("rgb", "SCALE 1000000000000000000", "at most 1e+06", "1000"),
    ("rgb", "(STD (1, 0.0000001, 1))", "from 1e-06 to 1e+06", "0.0000001"),
    ("rgb", "(MEAN (1, -9999999, 1))", "MEAN values must be from -1e+06 to 1e+06", "-9999999"),
    ("rgb", "(MEAN (0.5) STD (1, 1, 1))", "MEAN has 1 values and STD 3", "STD (1, 1, 1)"),
    ("grey", "(MEAN (0.5, 0.5, 0.5))", "input has 1 channel: give one per channel", "MEAN ("),
    ("rgb", "(STD (0.5))", "STD has 1 value, but the model's 3x16x16 input has 3", "STD"),
    ("rgb", "(RESIZE 256 CROP 300)", "CROP 300 is larger than RESIZE 256", "CROP 300"),
    ("wide", "(RESIZE 30 40 CROP 24 41)", "CROP 24 41 is larger than RESIZE 30 40", "CROP 24"),
    ("rgb", "(RESIZE 0 CROP 16)", "RESIZE 0 is out of range", "RESIZE 0"),
    ("rgb", "(RESIZE 99999999 CROP 16)", "sides are 1 to 65536", "RESIZE 9"),
    ("rgb", "(RESIZE 20)", "RESIZE 20 sets the shorter side only", "RESIZE 20"),
    ("rgb", "(RESIZE 24 CROP 20)", "CROP 20 makes 20x20 inputs; the model takes 16x16", "CROP"),
    ("wide", "(RESIZE 40 40)", "RESIZE 40 40 makes 40x40 inputs; the model takes 24x40",
     "RESIZE 40"),
    ("grey", "IMAGENET", "IMAGENET is for square 3-channel inputs", "PREPROCESS IMAGENET"),
    ("wide", "IMAGENET", "takes 3x24x40 inputs: declare NONE, or the steps", "PREPROCESS"),
])
def test_bad_declarations_are_plan_errors_with_a_caret(files, model, declared, says, at):
    text = create(files[model], declared)
    with pytest.raises(PlanError, match=re.escape(says)) as info:
        kryptondb.connect().execute(text)
    e = info.value
    assert text[e.column - 1:].startswith(at), (text[e.column - 1:], at)
    assert "^" in str(e)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([None, 16, 17, 40]), st.sampled_from([None, 0.5, 255.0, 1e6, 1e-6]),
       st.lists(st.floats(-1e6, 1e6, width=32), min_size=3, max_size=3),
       st.lists(st.floats(0.0625, 2, width=32), min_size=3, max_size=3), st.booleans())
def test_what_describe_shows_declares_the_same_preprocessing(files, resize, scale, mean, std,
                                                              norm):
    """str(Preprocess) is KQL: declared again, it binds to the same Preprocess."""
    path = files["rgb"]
    crop = None if resize is None else 16
    pre = Preprocess(resize if resize else (16, 16), crop, tuple(mean) if norm else (),
                     tuple(std) if norm else (), scale or 1.0)
    assert bound(path, str(pre)) == pre



# -- the catalog -------------------------------------------------------------------------------


def test_declarations_survive_a_reopen_and_undeclared_entries_stay_without(tmp_path, files):
    db = tmp_path / "db"
    con = kryptondb.connect(db)
    con.execute(create(files["rgb"], "SCALE 255", "scaled"))
    con.execute(create(files["grey"], "(RESIZE 28 28 MEAN (0.5) STD (0.25))", "grey"))
    con.execute(create(files["rgb"], "", "plain"))
    doc = json.loads((db / "catalog.json").read_text())["models"]
    assert "preprocess" not in doc["plain"]  # the default is not written down
    assert doc["scaled"]["preprocess"] == {"resize": None, "crop": None, "scale": 255.0,
                                           "mean": [], "std": []}
    again = kryptondb.connect(db).db.models()
    assert again["scaled"].preprocess == Preprocess.scaled(255)
    assert again["grey"].preprocess == Preprocess((28, 28), None, (0.5,), (0.25,))
    assert again["plain"].preprocess is None


def test_a_catalog_written_before_declarations_loads_with_the_default(tmp_path, files):
    db = tmp_path / "db"
    kryptondb.connect(db).execute(create(files["rgb"], "NONE"))
    path = db / "catalog.json"
    doc = json.loads(path.read_text())
    del doc["models"]["m"]["preprocess"]  # as an older release wrote it
    path.write_text(json.dumps(doc))
    con = kryptondb.connect(db)
    assert con.db.models()["m"].preprocess is None
    assert "IMAGENET = (RESIZE 18 CROP 16" in con.execute("DESCRIBE MODEL m").message


def test_a_damaged_preprocess_record_names_the_entry(tmp_path, files):
    db = tmp_path / "db"
    kryptondb.connect(db).execute(create(files["rgb"], "SCALE 2"))
    path = db / "catalog.json"
    doc = json.loads(path.read_text())
    doc["models"]["m"]["preprocess"]["std"] = [0, 1, 1]
    doc["models"]["m"]["preprocess"]["mean"] = [0, 1, 1]
    path.write_text(json.dumps(doc))
    with pytest.raises(StorageError, match=r"bad entry models\['m'\].*bad preprocess.*std"):
        kryptondb.connect(db)


def test_the_declaration_is_part_of_the_binding(files):
    con = kryptondb.connect()
    con.execute(create(files["rgb"], "", "plain"))
    con.execute(create(files["rgb"], "SCALE 255", "scaled"))
    plain, scaled = (con.plan(parse(f"DESCRIBE {n}")).logical.arg("model")
                     for n in ("plain", "scaled"))
    assert plain.model.graph is scaled.model.graph  # one cached import of the weights
    assert plain.model.preprocess == Preprocess.imagenet(16)  # the shared Model is unchanged
    assert scaled.model.preprocess == Preprocess.scaled(255) == scaled.declared
    assert plain.digest != scaled.digest and plain.declared is None


# -- what DESCRIBE and CREATE say --------------------------------------------------------------


@pytest.mark.parametrize("model, declared, says", [
    ("rgb", "", "preprocessing IMAGENET = (RESIZE 18 CROP 16 MEAN (0.485, 0.456, 0.406) STD "
                "(0.229, 0.224, 0.225)) (the default for its input; CREATE MODEL ... PREPROCESS "
                "declares another)"),
    ("grey", "", "preprocessing NONE (the default for its input"),
    ("wide", "", "preprocessing NONE (the default for its input"),
    ("rgb", "IMAGENET", "preprocessing IMAGENET = (RESIZE 18 CROP 16 MEAN (0.485, 0.456, 0.406) "
                        "STD (0.229, 0.224, 0.225)) (declared)"),
    ("rgb", "scale 255", "preprocessing SCALE 255 (declared)"),
    ("grey", "(RESIZE 32 CROP 28 MEAN (0.1307) STD (0.3081))",
     "preprocessing (RESIZE 32 CROP 28 MEAN (0.1307) STD (0.3081)) (declared)"),
])
def test_describe_and_create_say_the_preprocessing(files, model, declared, says):
    con = kryptondb.connect()
    assert says in con.execute(create(files[model], declared)).message
    assert says in con.execute("DESCRIBE MODEL m").message


def test_describe_says_a_zoo_models_own_preprocessing():
    con = kryptondb.connect()
    assert con.execute("DESCRIBE efficientnet_lite0").message.endswith(
        "preprocessing (RESIZE 256 CROP 224 MEAN (0.5, 0.5, 0.5) STD (0.5, 0.5, 0.5)) (the zoo "
        "model's; CREATE MODEL ... PREPROCESS declares another)")
    assert "preprocessing IMAGENET = (RESIZE 256 CROP 224" in con.execute(
        "DESCRIBE resnet18").message


def test_explain_plan_shows_the_declaration(files):
    text = "EXPLAIN PLAN FOR " + create(files["rgb"], "(RESIZE 20 CROP 16 STD (.5, .5, .5))")
    plan = kryptondb.connect().execute(text).message
    assert "preprocess=(RESIZE 20 CROP 16 MEAN (0, 0, 0) STD (0.5, 0.5, 0.5))" in plan


def test_tune_runs_a_declared_model_under_its_preprocessing(files):
    """TUNE's scratch database binds the model with its declaration (else the digests differ)."""
    con = kryptondb.connect()
    con.execute(create(files["rgb"], "(RESIZE 20 CROP 16 SCALE 255)"))
    assert "stored as table" in con.execute(f"TUNE MODEL m PATCH 8 STRIDE 8 ON IMAGES "
                                            f"'{IMG}'").message


def test_imagenet_constants_are_torchvisions():
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
