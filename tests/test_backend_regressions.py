"""Backend bugs found by the property tests, pinned."""

import numpy as np

from kryptondb.runtime.backends import get_backend
from kryptondb.graph.ir import Graph, Op, input_node, make_node


def test_pad_before_ceil_mode_maxpool_is_not_folded_by_onnxruntime():
    # onnxruntime's optimizer folds Pad into MaxPool: -inf padding instead of the Pad's zeros,
    # and a ceil-mode output one row short. Our backend must keep the graph as written.
    nodes = [input_node("x", (1, 10, 9)),
             make_node("p", Op.PAD, ["x"], pads=(0, 0, 2, 1), value=0.0),
             make_node("m", Op.MAXPOOL, ["p"], kernel=(3, 3), stride=(2, 2), pads=(0, 0, 0, 0),
                       dilation=(1, 1), ceil_mode=1)]
    g = Graph.build("t", nodes, "m", {})
    x = -np.abs(np.random.default_rng(0).standard_normal((2, 1, 10, 9))).astype(np.float32)
    ref = get_backend("numpy").run(g, {"x": x})["m"]
    out = get_backend("onnxruntime").run(g, {"x": x})["m"]
    assert ref.shape == out.shape == (2, 1, 6, 5)
    np.testing.assert_array_equal(out, ref)
    assert (ref[:, :, -1, :] == 0).all()  # the padded zeros are the maxima of the last row
