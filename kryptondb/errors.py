"""The KryptonError tree: every error a user can cause is one of these, and its message names
the problem and where it is (file, node, layer or query position)."""

from __future__ import annotations


class KryptonError(Exception):
    """Base of every error KryptonDB raises on purpose."""


class FileError(KryptonError):
    """A file that does not exist, cannot be read, or is not what it claims to be."""


class ModelImportError(KryptonError):
    """A model file (ONNX, checkpoint) that cannot be turned into a KryptonDB graph."""


class UnsupportedOpError(ModelImportError):
    """An operator outside the supported set; the message lists the set."""


class CheckpointError(ModelImportError):
    """A checkpoint that is corrupt or not in a format KryptonDB reads."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose pickle asks for something outside the allow-list. Nothing was run."""


class ImageError(FileError):
    """An image path that does not exist or does not decode as an image."""


class ShapeError(KryptonError):
    """A tensor whose shape does not fit where it is used."""


class UnknownNameError(KryptonError):
    """A name (model, layer, table) that is not known; the message lists the known ones."""

    def __init__(self, kind: str, name: str, known: list[str] | tuple[str, ...]):
        self.kind, self.name, self.known = kind, name, tuple(known)
        shown = ", ".join(sorted(self.known)) or "(none)"
        super().__init__(f"no {kind} {name!r}; known: {shown}")


class BackendError(KryptonError):
    """A backend that is unknown or cannot run here (e.g. no GPU)."""
