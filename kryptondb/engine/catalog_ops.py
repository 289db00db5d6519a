"""Operators of catalog statements and of plain SQL over result tables."""

from __future__ import annotations

import os

import pyarrow as pa

from kryptondb.errors import UnknownNameError
from kryptondb.result import Result

RELATIONS = ("models", "images", "videos", "tables", "views")


def create_model(node, inputs, ctx) -> Result:
    from kryptondb.model.model import load_model

    path = os.path.abspath(os.path.expanduser(node.arg("path")))
    model = load_model(path)  # validates: missing, corrupt or unsupported files fail here
    ctx.db.register_model(node.arg("name"), path, "onnx")
    return Result("message", message=f"created model {node.arg('name')} "
                  f"({len(model.graph.nodes)} layers, input {model.input_shape}, {model.weights})")


def load_media(node, inputs, ctx) -> Result:
    kind, name = node.arg("kind"), node.arg("name")
    path = os.path.abspath(os.path.expanduser(node.arg("path")))
    if kind == "image":
        from kryptondb.images import load_image

        img = load_image(path)
        info = {"width": img.size[0], "height": img.size[1]}
    else:
        from kryptondb.media.video import probe

        info = probe(path)
    ctx.db.add_media(name, kind, path, info)
    size = f"{info['width']}x{info['height']}"
    return Result("message", message=f"loaded {kind} {name} ({size}) from {path}")


def tune(node, inputs, ctx) -> Result:
    """Tune approximate occlusion for a model on sample images; the result is a catalog table."""
    from kryptondb.approx.tuning import table_name, tune as run_tuning

    images = node.arg("images").split("\n")
    t = run_tuning(ctx.db, node.arg("model"), images, node.arg("patch"), node.arg("stride"),
                   node.arg("fill"), progress=ctx.progress)
    name = table_name(t.model, t.patch, t.stride)
    lines = [f"tuned {t.model} at patch {t.patch}, stride {t.stride} on {len(images)} image(s); "
             f"stored as table {name}"]
    for q in (0.95, 0.9, 0.8):
        c = t.for_ssim(q)
        lines.append(f"  SSIM >= {q:g}: {c.why}")
    node.stats.update(rows=len(images))
    return Result("message", message="\n".join(lines))


def show_catalog(node, inputs, ctx) -> Result:
    return Result("table", table=catalog_relation(ctx.db, node.arg("what")))


def catalog_relation(db, what: str) -> pa.Table:
    """A catalog relation; ``models`` also lists the zoo, usable without registration."""
    table = db.relation(what)
    if what != "models":
        return table
    from kryptondb.model.zoo import ZOO

    registered = set(table.column("name").to_pylist())
    zoo = [{"name": n, "kind": "zoo", "source": n} for n in ZOO if n not in registered]
    return pa.concat_tables([table, pa.Table.from_pylist(zoo, schema=table.schema)])


def describe_model(node, inputs, ctx) -> Result:
    model = ctx.model(node.arg("model"))
    d = model.describe()
    table = pa.table({
        "layer": [r.layer for r in d.rows], "op": [r.op for r in d.rows],
        "shape": ["x".join(map(str, r.shape)) for r in d.rows],
        "params": pa.array([r.params for r in d.rows], pa.int64()),
        "flops": pa.array([r.flops for r in d.rows], pa.int64()),
    })
    msg = (f"model {model.name}: {d.total_params:,} parameters, {d.total_flops / 1e9:.2f} GFLOPs "
           f"per image, input {'x'.join(map(str, model.input_shape))}; weights: {model.weights}")
    return Result("table", table=table, message=msg)


def drop(node, inputs, ctx) -> Result:
    kind, name = node.arg("kind"), node.arg("name")
    existed = name in ctx.db.names(kind)
    ctx.db.drop(kind, name, if_exists=node.arg("if_exists"))
    return Result("message", message=f"dropped {kind} {name}" if existed else
                  f"no {kind} {name}; nothing dropped")


# -- SQL ------------------------------------------------------------------------------------------


def relation_names(db) -> list[str]:
    return list(RELATIONS) + db.names("table") + db.names("view")


def sql(node, inputs, ctx) -> Result:
    """A SELECT over the relations the binder found in it, run by the connection's DuckDB."""
    from kryptondb.sql import default_sandbox

    tables = {name: _relation(ctx, name) for name in node.arg("tables").split()}
    sandbox = getattr(ctx, "sql", None) or default_sandbox()
    table = sandbox.run(node.arg("sql"), tables, ctx.text)
    node.stats.update(rows=table.num_rows)
    return Result("table", table=table)


def _relation(ctx, name: str) -> pa.Table:
    if name.lower() in RELATIONS:
        return catalog_relation(ctx.db, name.lower())
    for kind in ("table", "view"):
        if name in ctx.db.names(kind):
            return ctx.db.get_table(name, kind)
    raise UnknownNameError("table", name, relation_names(ctx.db))
