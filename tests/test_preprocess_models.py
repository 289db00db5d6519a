"""Models under their declared preprocessing, end to end (issue 13, item 3): PREDICT and EXPLAIN
OCCLUSION from image files under NONE, IMAGENET, SCALE 255 and the steps, on 3-channel,
1-channel and non-square models, each against onnxruntime on the file with the input made by
hand (PIL and NumPy, not kryptondb's Preprocess); refusals that point at tensors; and the
double-normalisation regression: a model with its normalisation inside the graph, registered
with PREPROCESS NONE or SCALE 255, explains an image as the zoo model it wraps does.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

import kryptondb
from kryptondb.errors import PlanError, ShapeError
from kryptondb.runtime.onnx_export import to_onnx
from test_preprocess import IMG, create, save

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    img = Image.open(IMG).convert("RGB")
    exact = {}
    for name, (h, w) in {"rgb": (16, 16), "grey": (28, 28), "wide": (24, 40)}.items():
        exact[name] = str(d / f"{name}.png")  # an image of the model's own size
        img.resize((w, h), Image.BILINEAR).save(exact[name])
    return {"rgb": save(d / "rgb.onnx", (3, 16, 16), 1), "exact": exact,
            "grey": save(d / "grey.onnx", (1, 28, 28), 2),
            "wide": save(d / "wide.onnx", (3, 24, 40), 3)}


def by_hand(path, resize=None, crop=None, grey=False, scale=1.0, mean=(), std=()) -> np.ndarray:
    """The model input the declaration describes, made with PIL and NumPy: (C, H, W)."""
    img = geometry(Image.open(path).convert("L" if grey else "RGB"), resize, crop)
    x = np.asarray(img, np.float32) / 255.0 * np.float32(scale)
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
    if mean:
        x = (x - np.float32(mean).reshape(-1, 1, 1)) / np.float32(std).reshape(-1, 1, 1)
    return x.astype(np.float32)


def geometry(img: Image.Image, resize, crop) -> Image.Image:
    """RESIZE (the shorter side, or exactly (h, w)) and CROP (centred), by hand."""
    if isinstance(resize, tuple):
        img = img.resize((resize[1], resize[0]), Image.BILINEAR, reducing_gap=None)
    elif resize is not None:
        w, h = img.size
        k = resize / min(w, h)
        img = img.resize((round(w * k), round(h * k)), Image.BILINEAR, reducing_gap=None)
    if crop is not None:
        ch, cw = crop if isinstance(crop, tuple) else (crop, crop)
        left, top = (img.size[0] - cw) // 2, (img.size[1] - ch) // 2
        img = img.crop((left, top, left + cw, top + ch))
    return img


def run(path: str, x: np.ndarray) -> np.ndarray:
    """onnxruntime on the file itself: the outside oracle."""
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x.astype(np.float32)})[0].reshape(len(x), -1)


def loop(path, x, fill_pixel, pre, patch, stride, cls) -> np.ndarray:
    """The heatmap by definition: the fill, a pixel value, taken to the model's space by hand."""
    scale, mean, std = pre
    fill = np.float32(fill_pixel) * np.float32(scale) * np.ones(x.shape[0], np.float32)
    if mean:
        fill = (fill - np.float32(mean)) / np.float32(std)
    _, h, w = x.shape
    rows, cols = (h - patch) // stride + 1, (w - patch) // stride + 1
    batch = np.repeat(x[None], rows * cols, axis=0)
    for k in range(rows * cols):
        i, j = divmod(k, cols)
        batch[k, :, i * stride:i * stride + patch, j * stride:j * stride + patch] = \
            fill[:, None, None]
    return run(path, batch)[:, cls].reshape(rows, cols)


# (model, declaration, image: 'bundled' or 'exact', by_hand keywords)
CASES = {
    "default": ("rgb", "", "bundled", dict(resize=18, crop=16, mean=MEAN, std=STD)),
    "imagenet": ("rgb", "IMAGENET", "bundled", dict(resize=18, crop=16, mean=MEAN, std=STD)),
    "none": ("rgb", "NONE", "exact", {}),
    "scale": ("rgb", "SCALE 255", "exact", dict(scale=255.0)),
    "steps": ("rgb", "(RESIZE 20 CROP 16 SCALE 2 MEAN (0.1, 0.2, 0.3) STD (0.5, 0.6, 0.7))",
              "bundled", dict(resize=20, crop=16, scale=2.0, mean=(0.1, 0.2, 0.3),
                              std=(0.5, 0.6, 0.7))),
    "grey": ("grey", "(RESIZE 32 CROP 28 MEAN (0.1307) STD (0.3081))", "bundled",
             dict(resize=32, crop=28, grey=True, mean=(0.1307,), std=(0.3081,))),
    "grey-exact": ("grey", "(STD (1))", "exact", dict(grey=True, mean=(0.0,), std=(1.0,))),
    "wide": ("wide", "(RESIZE 24 40)", "bundled", dict(resize=(24, 40))),
    "wide-crop": ("wide", "(RESIZE 40 CROP 24 40 SCALE 255)", "bundled",
                  dict(resize=40, crop=(24, 40), scale=255.0)),
    "wide-none": ("wide", "", "exact", {}),
}


def _setup(files, case):
    model, declared, image, hand = CASES[case]
    path = files["exact"][model] if image == "exact" else IMG
    con = kryptondb.connect()
    con.execute(create(files[model], declared))
    return con, files[model], path, by_hand(path, **hand), hand


@pytest.mark.parametrize("case", CASES)
def test_predict_runs_the_declared_preprocessing(files, case):
    con, onnx_path, image, x, _ = _setup(files, case)
    t = con.execute(f"PREDICT IMAGE '{image}' USING MODEL m TOP 10").to_arrow()
    got = np.zeros(10, np.float32)
    got[np.asarray(t.column("class"))] = np.asarray(t.column("probability"))
    np.testing.assert_allclose(got, run(onnx_path, x[None])[0], atol=1e-5)


@pytest.mark.parametrize("mode", ["NAIVE", "INCREMENTAL"])
@pytest.mark.parametrize("case", CASES)
def test_explain_occlusion_fills_in_the_declared_space(files, case, mode):
    con, onnx_path, image, x, hand = _setup(files, case)
    patch, stride = 8, 4
    r = con.execute(f"EXPLAIN OCCLUSION OF IMAGE '{image}' USING MODEL m PATCH {patch} "
                    f"STRIDE {stride} FILL 0.25 {mode}")
    cls = int(np.argmax(run(onnx_path, x[None])[0]))
    pre = (hand.get("scale", 1.0), hand.get("mean", ()), hand.get("std", ()))
    want = loop(onnx_path, x, 0.25, pre, patch, stride, cls)
    assert r.heatmap.class_id == cls
    np.testing.assert_allclose(r.heatmap.probability, want, atol=1e-5)
    picture = r.heatmap.image  # the input back in pixels: what the user gave, resized
    assert picture.shape == x.shape[1:] + (3,)
    assert picture.min() >= 0 and picture.max() <= 1


@pytest.mark.parametrize("model, declared, image, says", [
    ("grey", "NONE", "bundled", "takes 1-channel inputs and its preprocessing NONE reads images as"
                                " RGB (3 channels): pass a 1x28x28 tensor instead, or declare "
                                "PREPROCESS (MEAN (0) STD (1)) to read images as grey"),
    ("grey", "SCALE 255", "bundled", "pass a 1x28x28 tensor instead"),
    ("rgb", "(MEAN (0.5) STD (0.5)) ", "bundled", None),  # refused when declared: 1 != 3
    ("rgb", "NONE", "bundled", "takes 16x16 inputs (height x width); image 0 is 300x451 and the "
                               "model's preprocessing NONE does not resize it: declare PREPROCESS "
                               "(RESIZE 16 16 ...), or pass a tensor"),
    ("wide", "", "bundled", "preprocessing NONE does not resize it"),
    ("grey", "(STD (1))", "bundled", "image 0 is 300x451"),
])
def test_images_a_preprocessing_cannot_take_are_refused_pointing_at_tensors(files, model,
                                                                            declared, image, says):
    con = kryptondb.connect()
    if says is None:
        with pytest.raises(kryptondb.KryptonError, match="has 1 value, but"):
            con.execute(create(files[model], declared))
        return
    con.execute(create(files[model], declared))
    for statement in ("PREDICT IMAGE '{}' USING MODEL m",
                      "EXPLAIN OCCLUSION OF IMAGE '{}' USING MODEL m PATCH 4"):
        with pytest.raises((PlanError, ShapeError)) as info:  # bound: a caret; else at run
            con.execute(statement.format(IMG))
        assert says in str(info.value)


def test_tensors_go_in_as_they_are_under_none(files):
    con = kryptondb.connect()
    con.execute(create(files["grey"], "NONE"))
    model = con.plan(kryptondb.lang.parser.parse("DESCRIBE m")).logical.arg("model").model
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32) * 3
    np.testing.assert_allclose(model.predict(x), run(files["grey"], x), atol=1e-6)


# -- double normalisation ----------------------------------------------------------------------


def _wrapped(zoo: str, path, scale: float) -> str:
    """The zoo model as an ONNX file that normalises inside its graph: input x (pixels in [0, 1]
    times ``scale``) -> x / scale -> (x - mean) / std -> the zoo model's graph."""
    from onnx import helper, numpy_helper

    model = kryptondb.load_model(zoo)
    pre = model.preprocess
    proto = to_onnx(model.graph)
    g, name = proto.graph, proto.graph.input[0].name
    for n in g.node:
        n.input[:] = ["normalised" if i == name else i for i in n.input]
    consts = {"k": np.float32(scale), "mean": np.float32(pre.mean).reshape(1, 3, 1, 1),
              "std": np.float32(pre.std).reshape(1, 3, 1, 1)}
    g.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items())
    steps = [helper.make_node("Div", [name, "k"], ["unit"]),
             helper.make_node("Sub", ["unit", "mean"], ["centred"]),
             helper.make_node("Div", ["centred", "std"], ["normalised"])]
    for k, node in enumerate(steps):
        g.node.insert(k, node)
    path.write_bytes(proto.SerializeToString())
    return str(path)


@pytest.fixture(scope="module")
def cropped(tmp_path_factory):
    """The zoo's resize and crop of the bundled image, as a lossless 224x224 file: the pixels
    the zoo model sees."""
    path = tmp_path_factory.mktemp("crop") / "crop.png"
    geometry(Image.open(IMG).convert("RGB"), 256, 224).save(path)
    return str(path)


QUERY = "EXPLAIN OCCLUSION OF IMAGE '{}' USING MODEL {} PATCH 56 STRIDE 56 FILL {}"


@pytest.mark.parametrize("fill", ["GRAY", "0.9", "MEAN", "BLUR"])
@pytest.mark.parametrize("declared, scale", [("NONE", 1.0), ("SCALE 255", 255.0)])
def test_normalisation_inside_the_graph_is_not_done_twice(tmp_path, cropped, declared, scale,
                                                          fill):
    con = kryptondb.connect()
    path = _wrapped("mobilenet_v2", tmp_path / "wrapped.onnx", scale)
    zoo = con.execute(QUERY.format(IMG, "mobilenet_v2", fill))
    con.execute(create(path, declared, "wrapped"))
    mine = con.execute(QUERY.format(cropped, "wrapped", fill))
    np.testing.assert_allclose(mine.heatmap.probability, zoo.heatmap.probability, atol=2e-5)
    assert mine.heatmap.class_id == zoo.heatmap.class_id
    assert mine.heatmap.base_probability == pytest.approx(zoo.heatmap.base_probability,
                                                          abs=2e-5)
    steps = "(RESIZE 256 CROP 224" + (" SCALE 255)" if scale != 1 else ")")
    con.execute(create(path, steps, "resizing"))  # the zoo's geometry, declared
    same = con.execute(QUERY.format(IMG, "resizing", fill))
    np.testing.assert_allclose(same.heatmap.probability, zoo.heatmap.probability, atol=2e-5)


def test_the_assumed_imagenet_transform_normalised_such_models_twice(tmp_path, cropped):
    """What the declaration fixes: undeclared, the wrapped model is normalised twice."""
    con = kryptondb.connect()
    con.execute(create(_wrapped("mobilenet_v2", tmp_path / "w.onnx", 1.0), "", "wrapped"))
    zoo = con.execute(QUERY.format(IMG, "mobilenet_v2", "GRAY"))
    twice = con.execute(QUERY.format(IMG, "wrapped", "GRAY"))
    assert np.abs(twice.heatmap.probability - zoo.heatmap.probability).max() > 1e-3
