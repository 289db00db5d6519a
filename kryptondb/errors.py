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


class KryptonWarning(UserWarning):
    """Base of every warning KryptonDB issues: the work went on, but the user should know.
    ``Connection.execute`` also adds each one to its result's message."""


class TruncatedVideoWarning(KryptonWarning):
    """A video whose decoding ended before the frame count its header gives, without an error:
    the results cover only the frames decoded (the message says which)."""


class CacheWarning(KryptonWarning):
    """A cache (materialized views) that could not be stored after the statement succeeded:
    the result is complete; a later query recomputes what was not kept."""


class ShapeError(KryptonError):
    """A tensor whose shape does not fit where it is used."""


def render_caret(text: str, line: int, column: int, length: int = 1) -> str:
    """The query line at ``line`` with a caret under columns [column, column + length)."""
    lines = text.split("\n") or [""]
    src = lines[min(max(line, 1), len(lines)) - 1]
    return f"  {src}\n  {' ' * (column - 1)}{'^' * max(1, length)}"


class QueryError(KryptonError):
    """An error at a place in a query: the message shows the line with a caret under it."""

    def __init__(self, message: str, text: str = "", line: int = 1, column: int = 1,
                 length: int = 1, expected: tuple[str, ...] = ()):
        self.message, self.text, self.line, self.column = message, text, line, column
        self.length, self.expected = length, tuple(expected)
        super().__init__(self.render())

    def render(self) -> str:
        out = f"{self.message} at line {self.line}, column {self.column}"
        if self.text:
            out += "\n" + render_caret(self.text, self.line, self.column, self.length)
        if self.expected:
            out += "\nexpected: " + ", ".join(self.expected)
        return out


class QuerySyntaxError(QueryError):
    """A query that does not parse."""


class PlanError(QueryError):
    """A query that parses but cannot be planned (bad option value, unsupported combination)."""


class SqlError(QueryError):
    """A SQL statement that DuckDB rejected or could not finish (unknown column, type error,
    division by zero, a sandbox rule, the row/time/memory limit); the message is DuckDB's."""


class UnknownNameError(KryptonError):
    """A name (model, layer, table) that is not known; the message lists the known ones."""

    def __init__(self, kind: str, name: str, known: list[str] | tuple[str, ...],
                 text: str = "", span=None):
        self.kind, self.name, self.known = kind, name, tuple(known)
        shown = ", ".join(sorted(self.known)) or "(none)"
        msg = f"no {kind} {name!r}; known: {shown}"
        if text and span is not None:
            msg += f" (line {span.line}, column {span.column})\n"
            msg += render_caret(text, span.line, span.column, span.length)
        super().__init__(msg)


class BackendError(KryptonError):
    """A backend that is unknown or cannot run here (e.g. no GPU)."""


class DeviceMissingError(BackendError, PlanError):
    """``ON GPU`` where CuPy is not importable or no CUDA device is present: found when the
    query is planned, shown with a caret under ON GPU."""


class StorageError(FileError):
    """A database file (catalog.json, a table's Arrow file, the directory itself) that is missing,
    corrupt or not KryptonDB's; the message names the path and says what was left unchanged."""


class CatalogError(KryptonError):
    """A catalog change that breaks a rule (bad or reserved name, name already taken, unknown
    kind); the message names the rule."""


class ClusterError(KryptonError):
    """A Dask cluster that cannot be reached or used (the address, the scheduler, a worker lost
    too often); the message names the address."""
