"""A contact sheet: a grid of video frames, each captioned with its top-1 label, to look at what a
RECOGNIZE OBJECTS query found. Frames are decoded again from the video, streamed, and only the
chosen ones are kept."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw, ImageFont

from kryptondb.errors import KryptonError
from kryptondb.files import writable_file
from kryptondb.media.video import frames as decode

VIDEO_KEY = b"kryptondb.video"  # schema metadata of a frame relation: the video it came from


def pick(frames: list[int], count: int) -> list[int]:
    """Up to ``count`` of the (sorted, distinct) frame numbers, evenly spaced, first and last
    included.

    >>> pick(list(range(0, 100, 10)), 4)
    [0, 30, 60, 90]
    """
    if count >= len(frames):
        return list(frames)
    at = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i] for i in dict.fromkeys(at.tolist())]


def contact_sheet(labels: pa.Table, path: str, count: int = 24, columns: int = 6,
                  width: int = 200) -> str:
    """Write a PNG grid of up to ``count`` frames of the relation ``labels`` (evenly spaced),
    each ``width`` pixels wide with a caption: frame number, time, top-1 label, probability and,
    when the relation has it, how the frame was computed (mode). Returns ``path``."""
    path = writable_file(path, "contact sheet PNG")
    video = (labels.schema.metadata or {}).get(VIDEO_KEY)
    if video is None or "frame" not in labels.column_names:
        raise KryptonError("a contact sheet needs the result of RECOGNIZE OBJECTS (a relation "
                           "with frame, label and probability columns and its video)")
    if count < 1 or columns < 1:
        raise KryptonError(f"a contact sheet needs at least one frame and one column, got "
                           f"{count} frames in {columns} columns")
    rows = {r["frame"]: r for r in labels.to_pylist() if r.get("rank", 1) == 1}  # top-1 rows
    chosen = pick(sorted(rows), count)
    if not chosen:
        raise KryptonError("the relation has no frames to draw")
    _draw(rows, chosen, _tiles(video.decode(), chosen, width), min(columns, len(chosen)),
          width).save(path)
    return path


def _tiles(video: str, chosen: list[int], width: int) -> dict[int, Image.Image]:
    """The chosen frames of ``video``, each resized to ``width`` pixels wide."""
    wanted, tiles = set(chosen), {}
    for index, _, img in decode(video, chosen[0], chosen[-1]):
        if index in wanted:
            # at most square-ish tiles: a frame far taller than wide is squeezed, not 100k high
            height = min(max(1, round(img.height * width / img.width)), 2 * width)
            tiles[index] = img.resize((width, height))
    return tiles


def _draw(rows: dict, chosen: list[int], tiles: dict[int, Image.Image], cols: int,
          width: int) -> Image.Image:
    """The sheet: tiles in rows of ``cols``, each captioned from its row of the relation."""
    font = ImageFont.load_default()
    caption_h = 30
    tile_h = max(t.height for t in tiles.values()) + caption_h
    sheet = Image.new("RGB", (cols * width, -(-len(chosen) // cols) * tile_h), "white")
    draw = ImageDraw.Draw(sheet)
    for k, index in enumerate(chosen):
        x, y = (k % cols) * width, (k // cols) * tile_h
        if index in tiles:
            sheet.paste(tiles[index], (x, y))
        r = rows[index]
        mode = f" [{r['mode']}]" if r.get("mode") else ""
        draw.text((x + 3, y + tile_h - caption_h + 2),
                  f"#{index}  {r['timestamp']:.2f} s{mode}", fill="black", font=font)
        draw.text((x + 3, y + tile_h - caption_h + 15),
                  f"{r['label'][:26]}  {r['probability']:.2f}", fill="black", font=font)
    return sheet
