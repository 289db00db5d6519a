"""The projective field of one patch position, layer by layer: each map drawn as a box scaled
to a common size, the region the layer recomputes filled to scale, the context it reads dashed
around it. Reads one scan of the profile document (kryptondb.plan/1); the patch sits at the
centre of the input, as the cost model prices it, so every region is drawn centred.

>>> scan = {"input": [3, 32, 32], "patch": [8, 8], "layers": [{"name": "conv1", "op": "Conv",
...         "map": [4, 16, 16], "region": [5, 5], "share": 25 / 256, "context": [11, 11]}],
...         "suffix": {"layers": 4, "flops": 1000}}
>>> svg = field_svg(scan)
>>> svg.count('class="pf-tile"'), 'data-layer="conv1"' in svg
(3, True)
"""

from __future__ import annotations

from html import escape

from kryptondb.format import fmt_percent, shorten

TILE_W, TILE_H, BOX = 112, 118, 72  # a tile; the largest side of a map drawn in it
COLUMNS = 11
REGION, CONTEXT, CAPPED, MAP, SUFFIX = "#e8743b", "#3b6fb6", "#c0282d", "#f4f4f4", "#bdbdbd"


def field_svg(scan: dict) -> str:
    """Input with its patch, one tile per layer up to the frontier, then the suffix run in full."""
    tiles = [_input_tile(scan)] + [_layer_tile(row) for row in scan.get("layers") or ()]
    suffix = scan.get("suffix") or {}
    if suffix.get("layers"):
        tiles.append(_suffix_tile(suffix["layers"]))
    cols = min(COLUMNS, len(tiles))
    rows = -(-len(tiles) // cols)
    width, height = cols * TILE_W, rows * TILE_H
    out = [f'<svg class="field" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} '
           f'{height}" width="{width}" height="{height}" font-size="10" '
           f'font-family="system-ui, sans-serif" role="img" aria-label="projective field">']
    for k, tile in enumerate(tiles):
        x, y = (k % cols) * TILE_W, (k // cols) * TILE_H
        out.append(f'<g transform="translate({x},{y})">{tile}</g>')
    out.append("</svg>")
    return "\n".join(out)


def _input_tile(scan: dict) -> str:
    shape = scan.get("input") or [3, 1, 1]
    patch = scan.get("patch") or [1, 1]
    share = patch[0] * patch[1] / max(1, shape[-2] * shape[-1])
    body = _map(shape[-2:], patch, None, REGION)
    caption = f"{patch[0]}×{patch[1]} patch · {fmt_percent(share)}"
    return _tile("input", body, "input", dims(shape), caption)


def _layer_tile(row: dict) -> str:
    shape = row.get("map") or [1, 1, 1]
    region = row.get("region") or [0, 0]
    colour = CAPPED if row.get("capped") else REGION
    body = _map(shape[-2:], region, row.get("context"), colour)
    share = row.get("share")
    caption = f"{region[0]}×{region[1]}" + (f" · {fmt_percent(share)}" if share is not None
                                            else "")
    label = f"{row.get('op', '')} {dims(shape)}"
    return _tile(row.get("name", "?"), body, row.get("name", ""), label, caption)


def _suffix_tile(layers: int) -> str:
    body = _map((1, 1), (1, 1), None, SUFFIX)
    return _tile("suffix", body, "", f"{layers} layers", "run in full")


def _tile(title: str, body: str, layer: str, label: str, caption: str) -> str:
    return (f'<g class="pf-tile" data-layer="{escape(layer)}"><title>{escape(title)}</title>'
            f'{body}<text x="{TILE_W / 2}" y="{BOX + 16}" text-anchor="middle" '
            f'font-weight="600">{escape(shorten(title, 18))}</text>'
            f'<text x="{TILE_W / 2}" y="{BOX + 28}" text-anchor="middle" fill="#555">'
            f'{escape(shorten(label, 20))}</text><text x="{TILE_W / 2}" y="{BOX + 40}" '
            f'text-anchor="middle" fill="#555">{escape(caption)}</text></g>')


def _map(hw, region, context, colour: str) -> str:
    """The map scaled so its larger side is BOX pixels, centred in the tile; the region (and
    context, clipped to the map) centred in it, to scale, at least a pixel wide."""
    h, w = max(1, hw[0]), max(1, hw[1])
    scale = BOX / max(h, w)
    mw, mh = w * scale, h * scale
    x0, y0 = (TILE_W - mw) / 2, 4 + (BOX - mh) / 2
    out = [f'<rect class="pf-map" x="{x0:.1f}" y="{y0:.1f}" width="{mw:.1f}" height="{mh:.1f}" '
           f'fill="{MAP}" stroke="#444" stroke-width="1"/>']
    if context:
        out.append(_inner(x0, y0, mw, mh, scale, context, 'fill="none" stroke="' + CONTEXT +
                          '" stroke-dasharray="3 2" class="pf-context"'))
    out.append(_inner(x0, y0, mw, mh, scale, region, f'fill="{colour}" class="pf-region"'))
    return "".join(out)


def _inner(x0, y0, mw, mh, scale, size, attrs: str) -> str:
    rw, rh = min(mw, max(1.0, size[1] * scale)), min(mh, max(1.0, size[0] * scale))
    return (f'<rect x="{x0 + (mw - rw) / 2:.1f}" y="{y0 + (mh - rh) / 2:.1f}" '
            f'width="{rw:.1f}" height="{rh:.1f}" {attrs}/>')


def dims(shape) -> str:
    """A shape or a (h, w) pair as people write it: 64×112×112; a dash when there is none."""
    return "–" if not shape else "×".join(str(int(d)) for d in shape)
