"""Typed values of occlusion plans that are more than a number or a name: a tensor (an input or
a baseline), a set of images, a list of classes. Each prints in one short, stable piece for
EXPLAIN (a tensor by its origin, shape and digest, never its numbers) and carries what the
executor needs (the array, the resolved paths).

>>> import numpy as np
>>> str(Tensor(np.zeros((2, 3, 4, 4)), "?1"))
'?1[2x3x4x4#33ca807d]'
>>> str(Classes((3, 7))), str(ImageSet("'d/*.png'", ("/d/a.png",), ("d/a.png",)))
('[3,7]', "'d/*.png'[1]")
>>> str(VideoSet("(clip,'b.mp4')", ("/v/clip.mp4", "/d/b.mp4"), ("clip", "b.mp4")))
"(clip,'b.mp4')[2]"
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Tensor:
    """An array given to a statement (a ``?`` value, a ``.npy`` file): float32, read-only, and
    equal to another tensor when their shapes and contents are (its digest)."""

    array: np.ndarray
    origin: str  # how the statement named it: '?1' (the first parameter), "'x.npy'"
    digest: str = field(init=False)

    def __post_init__(self):
        a = np.ascontiguousarray(self.array, np.float32)
        if a is self.array or np.shares_memory(a, self.array):
            a = a.copy()  # the caller's array may change after the statement was bound
        a.flags.writeable = False
        object.__setattr__(self, "array", a)
        shape = ",".join(map(str, a.shape)).encode()
        object.__setattr__(self, "digest", hashlib.sha1(shape + b":" + a.tobytes()).hexdigest())

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    def __eq__(self, other) -> bool:
        return isinstance(other, Tensor) and (self.origin, self.digest) == (other.origin,
                                                                             other.digest)

    def __hash__(self) -> int:
        return hash((self.origin, self.digest))

    def __str__(self) -> str:
        return f"{self.origin}[{'x'.join(map(str, self.shape)) or 'scalar'}#{self.digest[:8]}]"

    __repr__ = __str__  # never the numbers: plans and errors print tensors by their digest


@dataclass(frozen=True)
class MediaSet:
    """Several media files, resolved once by the binder: ``paths`` to read, ``names`` for the
    result's key column (a path as written or matched, or a catalog name), and how the
    statement ``written`` them, without spaces (what EXPLAIN shows, with the count)."""

    written: str
    paths: tuple[str, ...]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def __str__(self) -> str:
        return f"{self.written}[{len(self.paths)}]"


class ImageSet(MediaSet):
    """Images: OF IMAGES, PREDICT IMAGES (the ``image`` column)."""


class VideoSet(MediaSet):
    """Videos: RECOGNIZE ... IN VIDEOS (the ``video`` column)."""


@dataclass(frozen=True)
class Classes:
    """Several classes to explain, in the order the statement gave them."""

    ids: tuple[int, ...]

    def __str__(self) -> str:
        return "[" + ",".join(map(str, self.ids)) + "]"
