"""A query runs the model it names (issue 11, section 2): the binder binds a model name once to a
catalog identity (name + content digest) and every later stage uses that binding; caches key on
the digest; a registered model named like a zoo model shadows it visibly.

Every model here is a small seeded CNN saved to ONNX with weights no other test uses (its own
seed), so cache counters and the planner's cold/warm choice do not depend on test order.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import pytest

import kryptondb
from kryptondb.errors import CatalogError, FileError, KryptonError
from kryptondb.graph.builder import Builder
from kryptondb.runtime.onnx_export import to_onnx

IMG = kryptondb.bundled_image()


def _net(seed: int):
    """A 224x224 ImageNet-shaped CNN, like the zoo's resnet18 from the outside."""
    b = Builder("net", (3, 224, 224), seed=seed)
    x = b.conv_bn("input", "c1", "b1", 8, 7, 4, 3)
    x = b.pool(x, "max", 3, 2, 1, name="pool")
    x = b.conv_bn(x, "c2", "b2", 16, 3, 1, 1)
    x = b.flatten(b.global_pool(x))
    return b.build(b.softmax(b.linear(x, "fc", 1000)))


def _save(path, seed: int) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(to_onnx(_net(seed)).SerializeToString())
    return str(path)


def _onnxruntime(path) -> np.ndarray:
    """The outside oracle: onnxruntime on the file itself, on the same preprocessed image."""
    x = kryptondb.load_model(path).inputs(IMG)
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0][0]


def _probs(con, model: str) -> np.ndarray:
    t = con.execute(f"PREDICT IMAGE '{IMG}' USING MODEL {model} TOP 1000").to_arrow()
    out = np.zeros(1000, np.float32)
    out[np.asarray(t.column("class"))] = np.asarray(t.column("probability"))
    return out


def _scan(result):
    return next(n for n in result.plan.rewritten.walk() if n.op == "OcclusionScan")


# -- the model a name runs -----------------------------------------------------------------------


def test_a_file_whose_stem_is_a_zoo_name_runs_the_file(tmp_path):
    path = _save(tmp_path / "dir" / "resnet18.onnx", seed=11)
    con = kryptondb.connect()
    con.execute(f"CREATE MODEL mine FROM '{path}'")
    np.testing.assert_allclose(_probs(con, "mine"), _onnxruntime(path), atol=1e-5)
    plan = con.execute(f"EXPLAIN PLAN FOR PREDICT IMAGE '{IMG}' USING MODEL mine").message
    assert "model=mine" in plan and "resnet18" not in plan  # the name the query wrote


def test_any_file_stem_works(tmp_path):
    path = _save(tmp_path / "tiny10.onnx", seed=12)
    con = kryptondb.connect()
    con.execute(f"CREATE MODEL tiny FROM '{path}'")
    np.testing.assert_allclose(_probs(con, "tiny"), _onnxruntime(path), atol=1e-5)
    r = con.execute(f"EXPLAIN OCCLUSION OF IMAGE '{IMG}' USING MODEL tiny PATCH 56 STRIDE 56")
    assert r.heatmap.model == "tiny"
    assert "tiny10" not in con.execute("DESCRIBE MODEL tiny").message.split(";")[0]


@pytest.mark.parametrize("same_path", [False, True], ids=["new-file", "overwritten-file"])
@pytest.mark.parametrize("on_disk", [False, True], ids=["memory", "disk"])
def test_replaced_weights_change_results(tmp_path, on_disk, same_path):
    first = _save(tmp_path / "v1" / "m.onnx", seed=13)
    con = kryptondb.connect(tmp_path / "db" if on_disk else None)
    con.execute(f"CREATE MODEL m FROM '{first}'")
    before = _probs(con, "m")
    second = _save(tmp_path / ("v1" if same_path else "v2") / "m.onnx", seed=14)
    con.execute(f"CREATE MODEL m FROM '{second}'")
    after = _probs(con, "m")
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, _onnxruntime(second), atol=1e-5)
    if on_disk:  # and after reopening, in a new connection
        np.testing.assert_allclose(_probs(kryptondb.connect(tmp_path / "db"), "m"), after)


def test_views_of_replaced_weights_are_never_reused(tmp_path):
    db = tmp_path / "db"
    query = f"EXPLAIN OCCLUSION OF IMAGE '{IMG}' USING MODEL m PATCH 56 STRIDE 56"
    con = kryptondb.connect(db)
    con.execute(f"CREATE MODEL m FROM '{_save(tmp_path / 'v1' / 'm.onnx', seed=15)}'")
    con.execute(query + " INCREMENTAL")
    old_views = set(con.db.names("view"))
    con.execute(f"CREATE MODEL m FROM '{_save(tmp_path / 'v2' / 'm.onnx', seed=16)}'")
    con = kryptondb.connect(db)
    incremental, naive = con.execute(query + " INCREMENTAL"), con.execute(query + " NAIVE")
    views = next(n for n in incremental.plan.dag.nodes if n.op == "MaterializeViews")
    assert not incremental.profile.of(views).get("reused")
    np.testing.assert_allclose(incremental.heatmap.probability, naive.heatmap.probability,
                               atol=1e-5)
    assert not old_views & set(con.db.names("view"))  # the old weights' views were dropped


# -- zoo names -----------------------------------------------------------------------------------


def test_a_registered_zoo_name_shadows_the_zoo_model_visibly(tmp_path):
    path = _save(tmp_path / "other.onnx", seed=17)
    con = kryptondb.connect()
    msg = con.execute(f"CREATE MODEL resnet18 FROM '{path}'").message
    assert "shadows the zoo model resnet18" in msg
    for spelling in ("resnet18", "RESNET18", "ResNet18"):  # every spelling: the registered one
        np.testing.assert_allclose(_probs(con, spelling), _onnxruntime(path), atol=1e-5)
    plan = con.execute(f"EXPLAIN PLAN FOR PREDICT IMAGE '{IMG}' USING MODEL resnet18").message
    assert "model='resnet18 (registered; shadows the zoo model)'" in plan
    assert "shadows the zoo model" in con.execute("DESCRIBE MODEL resnet18").message
    models = con.execute("SHOW MODELS").to_arrow().to_pylist()
    assert [m for m in models if m["name"] == "resnet18"] == \
        [{"name": "resnet18", "kind": "onnx", "source": path}]
    con.execute("DROP MODEL resnet18")
    plan = con.execute(f"EXPLAIN PLAN FOR PREDICT IMAGE '{IMG}' USING MODEL resnet18").message
    assert "shadows" not in plan
    assert "zoo model" in con.execute("DESCRIBE MODEL resnet18").message


def test_another_spelling_of_a_zoo_name_is_refused(tmp_path):
    path = _save(tmp_path / "other.onnx", seed=17)
    with pytest.raises(CatalogError, match="differs from the zoo model 'resnet18' only in case"):
        kryptondb.connect().execute(f"CREATE MODEL ResNet18 FROM '{path}'")


def test_later_stages_never_take_a_name():
    from kryptondb.exec.executor import ExecContext
    from kryptondb.rewrite import RuleContext

    for resolve in (ExecContext.model, RuleContext.model):
        with pytest.raises(TypeError, match="bound models"):
            resolve("resnet18")


def test_a_special_file_is_refused_before_it_is_read(tmp_path):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    with pytest.raises(FileError, match="not a regular file"):
        kryptondb.connect().execute(f"CREATE MODEL m FROM '{fifo}'")


# -- caches keyed on the digest -----------------------------------------------------------------


def test_a_fresh_connection_reuses_the_imported_graph_and_its_segments(tmp_path):
    from kryptondb.ivm.incremental import segments_built
    from kryptondb.model.model import CACHE

    path = _save(tmp_path / "m.onnx", seed=18)
    query = f"EXPLAIN OCCLUSION OF IMAGE '{IMG}' USING MODEL m PATCH 56 STRIDE 56 INCREMENTAL"
    graphs, misses = [], []
    for _ in range(2):
        con = kryptondb.connect()
        con.execute(f"CREATE MODEL m FROM '{path}'")
        r = con.execute(query)
        graphs.append(_scan(r).arg("model").graph)
        misses.append(CACHE.misses)
        con.close()
    assert graphs[0] is graphs[1] and misses[0] == misses[1]  # imported once
    assert segments_built(graphs[1]) > 0
    assert kryptondb.load_model(path).graph is graphs[0]
    _save(tmp_path / "m.onnx", seed=19)  # new weights: a new digest, read anew
    con = kryptondb.connect()
    con.execute(f"CREATE MODEL m FROM '{path}'")
    assert _scan(con.execute(query)).arg("model").graph is not graphs[0]


def test_a_tuning_of_replaced_weights_is_not_used(tmp_path):
    import pyarrow as pa

    from kryptondb.obe.tuning import lookup, table_name
    from kryptondb.model.binding import resolve

    con = kryptondb.connect()
    con.execute(f"CREATE MODEL m FROM '{_save(tmp_path / 'm.onnx', seed=20)}'")
    ref = resolve(con.db, "m")
    table = pa.table({"image": ["a"], "tau": [1.0], "drilldown": [False], "ssim": [1.0],
                      "seconds": [1.0]})
    info = {"kind": "tuning", "model": "m", "patch": 8, "stride": 4, "exact_seconds": 1.0}
    con.db.put_table(table_name("m", 8, 4), table, info=info | {"digest": ref.digest})
    assert lookup(con.db, ref, 8, 4) is not None
    con.db.put_table(table_name("m", 8, 4), table, info=info | {"digest": "0" * 64})
    assert lookup(con.db, ref, 8, 4) is None and lookup(con.db, "m", 8, 4) is not None


# -- the planner counts setup cost ----------------------------------------------------------------


def test_few_positions_keep_naive_until_the_incremental_setup_is_cached(tmp_path):
    con = kryptondb.connect()
    con.execute(f"CREATE MODEL m FROM '{_save(tmp_path / 'm.onnx', seed=21)}'")
    query = f"EXPLAIN PLAN FOR EXPLAIN OCCLUSION OF IMAGE '{IMG}' USING MODEL m PATCH 56 STRIDE 56"
    cold = _scan(con.execute(query))
    assert cold.arg("mode") == "naive" and cold.arg("theoretical_speedup") >= 1.25
    assert "setup" in cold.arg("why") and "sessions to build" in cold.arg("why")
    assert "why=" in con.execute(query).message  # EXPLAIN says why
    con.execute(query.replace("EXPLAIN PLAN FOR ", "") + " INCREMENTAL")  # builds the sessions
    fresh = kryptondb.connect()  # another connection finds them: the Graph is shared
    fresh.execute(f"CREATE MODEL m FROM '{tmp_path / 'm.onnx'}'")
    assert _scan(fresh.execute(query)).arg("mode") == "incremental"
    assert _scan(fresh.execute(query + " INCREMENTAL")).arg("why") == \
        "INCREMENTAL forced by the query"  # no setup reason: the query decided


def test_the_numpy_backend_builds_no_sessions(tmp_path):
    con = kryptondb.connect()
    con.execute(f"CREATE MODEL m FROM '{_save(tmp_path / 'm.onnx', seed=22)}'")
    scan = _scan(con.execute(f"EXPLAIN PLAN FOR EXPLAIN OCCLUSION OF IMAGE '{IMG}' USING MODEL "
                             "m PATCH 56 STRIDE 56 ON NUMPY"))
    assert scan.arg("mode") == "incremental"


def test_unknown_model_names_list_the_known_ones_with_a_caret():
    with pytest.raises(KryptonError, match=r"no model 'resnt18'; known: .*resnet18") as e:
        kryptondb.connect().execute(f"PREDICT IMAGE '{IMG}' USING MODEL resnt18")
    assert "^" in str(e.value)


def test_a_file_replaced_while_it_is_imported_is_never_cached_under_its_old_digest(
        tmp_path, monkeypatch):
    """The digest is taken, then the file is read again to import it: a file replaced in
    between was cached under the old content's digest, so that content later ran the other
    weights."""
    from kryptondb.model import model as models

    path, other = _save(tmp_path / "m.onnx", seed=71), _save(tmp_path / "o.onnx", seed=72)
    old_bytes, real = open(path, "rb").read(), models._onnx_model

    def swapped(source, seed):  # another process replaces the file right now
        os.replace(other, source)
        return real(source, seed)

    monkeypatch.setattr(models, "_onnx_model", swapped)
    with pytest.raises(FileError, match="changed while it was being read"):
        kryptondb.load_model(path)
    monkeypatch.undo()
    with open(path, "wb") as f:  # the first content again: it must run its own weights
        f.write(old_bytes)
    con = kryptondb.connect()
    con.execute(f"CREATE MODEL m FROM '{path}'")
    np.testing.assert_allclose(_probs(con, "m"), _onnxruntime(path), atol=1e-5)
