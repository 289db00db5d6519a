"""ONNX tensor names that meet the ones KryptonDB derives with ``::`` (kryptondb/model/onnx_names.py):
renamed on import, so such a graph imports, runs like onnxruntime on the original file, and plans
incrementally (before: two nodes named ``c::in0`` in a per-layer graph, a ShapeError)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

import kryptondb
from kryptondb.model.onnx_import import import_onnx, load_onnx_proto, with_seeded_weights
from kryptondb.model.onnx_names import rename_reserved, reserved
from kryptondb.runtime.backends import get_backend

# (conv input, conv output, relu output): every relu's name is one KryptonDB derives from the
# conv before it or another node (a segment input, a channels-last output, a flatten), or ends in
# ':' (a weight key's shape separator); one keeps TensorFlow's single colon
LAYERS = [("x", "c", "c::in0"), ("c::in0", "d", "d::nhwc"), ("d::nhwc", "e", "e:"),
          ("e:", "dense/BiasAdd:0", "c::flat")]


def _colons_model(path, placeholder: bool = False) -> None:
    """Four 3x3 convolutions with ReLUs named as in LAYERS, a global pool and a classifier;
    with ``placeholder``, the first convolution's weight ``w::0`` is a ConstantOfShape the
    importer seeds instead of an initializer."""
    rng = np.random.default_rng(0)
    nodes, inits, cin = [], [], 3
    for k, (x, y, r) in enumerate(LAYERS):
        w = numpy_helper.from_array(rng.standard_normal((6, cin, 3, 3)).astype(np.float32)
                                    * 0.3, f"w::{k}")
        nodes += [helper.make_node("Conv", [x, w.name], [y], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [y], [r])]
        inits.append(w)
        cin = 6
    fc = numpy_helper.from_array(rng.standard_normal((5, 6)).astype(np.float32), "fc::w")
    nodes += [helper.make_node("GlobalAveragePool", ["c::flat"], ["g"]),
              helper.make_node("Flatten", ["g"], ["g::flat"]),
              helper.make_node("Gemm", ["g::flat", "fc::w"], ["y"], transB=1)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 20, 20])]
    if placeholder:  # as the onnx wheel's light models leave their weights
        shape = numpy_helper.from_array(np.array([6, 3, 3, 3], np.int64), "w::0::shape")
        nodes.insert(0, helper.make_node("ConstantOfShape", [shape.name], ["w::0"]))
        inits[0] = shape
    graph = helper.make_graph(nodes, "colons", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
                              inits + [fc])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _onnxruntime(proto, x):
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("placeholder", [False, True], ids=["initializers", "placeholder"])
def test_reserved_names_import_renamed_and_run_as_onnxruntime_does(tmp_path, placeholder):
    path = str(tmp_path / "colons.onnx")
    _colons_model(path, placeholder)
    imported = import_onnx(path)
    graph = imported.graph
    names = [n.name for n in graph.nodes] + list(graph.weights)
    assert not [n for n in names if reserved(n)], names
    assert {"c__in0", "d__nhwc", "e_", "c__flat", "dense/BiasAdd:0"} <= set(names)
    # placeholders keep the file's names: with_seeded_weights fills the original graph with them
    assert imported.placeholders == (("w::0",) if placeholder else ())
    proto = with_seeded_weights(load_onnx_proto(path), imported.seeded)
    x = np.random.default_rng(1).standard_normal((1, 3, 20, 20)).astype(np.float32)
    ref = _onnxruntime(proto, x)
    for backend in ("numpy", "onnxruntime"):
        ours = get_backend(backend).run(graph, {graph.inputs[0]: x})[graph.output]
        np.testing.assert_allclose(ours.reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)


def test_a_model_with_reserved_names_plans_incrementally_and_exactly(tmp_path, monkeypatch):
    monkeypatch.setenv("KRYPTONDB_CALIBRATION", "nominal")  # every layer maintained
    _colons_model(str(tmp_path / "colons.onnx"))
    con = kryptondb.connect()
    con.execute(f"CREATE MODEL colons FROM '{tmp_path / 'colons.onnx'}'")
    pixels = (np.random.default_rng(2).random((20, 20, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "i.png")
    con.execute(f"LOAD IMAGE '{tmp_path / 'i.png'}' AS i")
    q = "EXPLAIN OCCLUSION OF IMAGE i USING MODEL colons PATCH 4 STRIDE 2 "
    naive = con.execute(q + "NAIVE").heatmap.probability
    incremental = con.execute(q + "INCREMENTAL")
    scan = next(n for n in incremental.plan.rewritten.walk() if n.op == "OcclusionScan")
    assert dict(scan.args)["mode"] == "incremental"
    np.testing.assert_allclose(incremental.heatmap.probability, naive, atol=1e-6)


def test_renamed_names_stay_unique():
    """``c::in0`` becomes ``c__in0``; where the file has that name already, ``c__in0_``."""
    nodes = [helper.make_node("Relu", ["x"], ["c::in0"]), helper.make_node("Relu", ["c::in0"],
                                                                           ["c__in0"]),
             helper.make_node("Relu", ["c__in0"], ["y:"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [1])],
                              [helper.make_tensor_value_info("y:", 1, [1])])
    assert rename_reserved(graph) == {"c__in0_": "c::in0", "y_": "y:"}
    assert [list(n.output) for n in graph.node] == [["c__in0_"], ["c__in0"], ["y_"]]
    assert graph.node[1].input[0] == "c__in0_" and graph.output[0].name == "y_"
    assert rename_reserved(graph) == {}  # nothing left to rename
