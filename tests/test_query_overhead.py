"""What a query no longer redoes on the same inputs (issue 19, per-query overhead): decoding an
unchanged image file, and the planner's static costs of a model; both must never serve stale
results."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from kryptondb.ivm import calibration as C
from kryptondb.ivm.cost import _theoretical, theoretical
from kryptondb.ivm.frontier import centre_cut
from kryptondb.media.images import load_image
from kryptondb.model.model import load_model


def test_an_unchanged_image_is_decoded_once_and_a_changed_one_again(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.full((9, 7, 3), 10, np.uint8)).save(path)
    first = load_image(path)
    first.putpixel((0, 0), (255, 0, 0))  # the caller's copy: the cache keeps its own
    assert np.asarray(load_image(path))[0, 0].tolist() == [10, 10, 10]
    Image.fromarray(np.full((5, 4, 3), 200, np.uint8)).save(path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    again = np.asarray(load_image(path))
    assert again.shape == (5, 4, 3) and (again == 200).all()


def test_static_costs_are_computed_once_per_model_and_equal_fresh_ones():
    g = load_model("resnet18").graph
    assert theoretical(g, 16) is theoretical(g, (16, 16)) == _theoretical(g, (16, 16), None)
    assert theoretical(g, 16, 0.5) != theoretical(g, 16)
    cal = C.default()
    assert centre_cut(g, (16, 16), cal=cal) is centre_cut(g, (16, 16), cal=cal)
    nominal = centre_cut(g, (16, 16), cal=C.nominal())
    assert nominal.seconds != centre_cut(g, (16, 16), cal=cal).seconds
