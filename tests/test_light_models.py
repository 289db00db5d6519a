"""The nine ``light_*`` ONNX model-zoo graphs shipped in the onnx wheel, imported and run on both
backends against onnxruntime running the ORIGINAL file (with the same seeded placeholder weights),
so the oracle does not go through our exporter.

The light graphs keep their weights as ConstantOfShape placeholders; the importer seeds them and
``with_seeded_weights`` writes the same values into the original proto. Besides the output we
compare the logits (the tensor feeding the final Softmax): several random-weight networks saturate
their softmax to a one-hot vector, which would hide almost any error in the output alone.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from kryptondb.runtime.backends import get_backend
from kryptondb.model.onnx_import import import_onnx, load_onnx_proto, with_seeded_weights

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
NAMES = sorted(f for f in os.listdir(LIGHT_DIR) if f.endswith(".onnx"))
SLOW = {"light_vgg19.onnx"}  # 12-22 s here: 140M seeded weights, three sessions over them
TOLERANCE = 1e-4


def _params():
    return [pytest.param(n, id=n[len("light_"):-len(".onnx")],
                         marks=[pytest.mark.slow] if n in SLOW else []) for n in NAMES]


def test_all_nine_light_models_are_found():
    assert len(NAMES) == 9, NAMES


def _logits_tensor(proto) -> str:
    """The input of the last Softmax, or the output itself for graphs without one (densenet)."""
    softmaxes = [n for n in proto.graph.node if n.op_type == "Softmax"]
    return softmaxes[-1].input[0] if softmaxes else proto.graph.output[0].name


def _ir_name(proto, tensor: str) -> str:
    """Our node name for an ONNX tensor: Identity and Dropout are aliased to their input."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    while tensor in producers and producers[tensor].op_type in ("Identity", "Dropout"):
        tensor = producers[tensor].input[0]
    return tensor


def _reference(proto, outputs, x) -> list[np.ndarray]:
    """onnxruntime on the original proto, with extra graph outputs added for ``outputs``."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    declared = {o.name for o in model.graph.output}
    model.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None)
                              for t in outputs if t not in declared)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return sess.run(list(outputs), {sess.get_inputs()[0].name: x})


@pytest.mark.parametrize("name", _params())
def test_light_model_matches_onnxruntime_on_original_graph(name, measure):
    path = os.path.join(LIGHT_DIR, name)
    imported = import_onnx(path, seed=0)
    assert imported.placeholders, "light graphs hold placeholder weights the import must seed"
    graph = imported.graph
    proto = with_seeded_weights(load_onnx_proto(path), imported.seeded)
    out, logits = proto.graph.output[0].name, _logits_tensor(proto)
    tensors = tuple(dict.fromkeys((out, logits)))  # densenet: the output is the logits
    x = np.random.default_rng(0).standard_normal((1, *graph.input_shape)).astype(np.float32)
    refs = dict(zip(tensors, _reference(proto, tensors, x)))
    wanted = {out: graph.output, logits: _ir_name(proto, logits)}
    errors = {}
    for backend in ("numpy", "onnxruntime"):
        ours = get_backend(backend).run(graph, {graph.inputs[0]: x}, tuple(set(wanted.values())))
        for tensor, node in wanted.items():
            label = f"{name[:-5]} {backend} {'output' if tensor == out else 'logits'}"
            errors[label] = measure(label, ours[node].reshape(refs[tensor].shape), refs[tensor])
    assert max(errors.values()) <= TOLERANCE, errors
