"""Binding a model name: once per statement, to the model that will run.

The binder resolves the name a query wrote (a registered model first, then the zoo) to a
``ModelRef``: the name as written, the catalog entry or zoo model it found, and the digest of
what runs (kryptondb/model/digest.py: the weights, and a declared preprocessing), with the loaded
Model under the preprocessing that binds (a copy: the cached Model is shared by every name and
preprocessing of the same weights, and never changed). Plans carry the ref; rewrite rules,
operators, EXPLAIN, view and tuning names read it and never resolve the name again, so a later
stage cannot pick a different network than the one the statement was planned for.

Names are case-sensitive, except zoo names, which match in any case. A registered model named
like a zoo model (``CREATE MODEL resnet18 FROM ...``) shadows the zoo model for every spelling of
that name in its database; plans show it (``model='resnet18 (registered; shadows the zoo
model)'``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from kryptondb.errors import UnknownNameError
from kryptondb.media.images import Preprocess
from kryptondb.model.digest import preprocess_digest
from kryptondb.model.model import Model, load_source
from kryptondb.model.zoo import ZOO


@dataclass(frozen=True)
class ModelRef:
    """A model as a statement bound it. Equal refs run the same weights; plans print the name."""

    name: str          # as the statement wrote it
    entry: str         # the catalog entry it resolved to, or the zoo model's name
    kind: str          # what ``source`` is: 'onnx' (a file path) or 'zoo' (a zoo name)
    source: str
    digest: str        # sha256 hex of what runs
    registered: bool   # found in the catalog (else: the zoo, unregistered)
    model: Model = field(compare=False, repr=False)  # with the preprocessing that binds
    declared: Preprocess | None = None  # CREATE MODEL ... PREPROCESS (None: the default)

    @property
    def shadows_zoo(self) -> bool:
        """A registered model under a zoo model's name that is not that zoo model itself."""
        zoo = self.entry.lower()
        return self.registered and zoo in ZOO and (self.kind, self.source) != ("zoo", zoo)

    @property
    def short_digest(self) -> str:
        return self.digest[:12]

    # the Model's parts the planner reads
    @property
    def graph(self):
        return self.model.graph

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.model.input_shape

    @property
    def labels(self):
        return self.model.labels

    def __str__(self) -> str:
        """How plans show it: the name as written, and when it shadows a zoo model, that too."""
        return repr(f"{self.name} (registered; shadows the zoo model)") if self.shadows_zoo \
            else self.name


def bound(ref: ModelRef) -> Model:
    """The Model a plan's ``model`` argument was bound to (never a lookup by name)."""
    if not isinstance(ref, ModelRef):
        raise TypeError(f"plans carry bound models (ModelRef), got {type(ref).__name__} {ref!r}")
    return ref.model


def resolve(db, name: str, seed: int = 0) -> ModelRef:
    """Bind ``name`` in ``db``: a registered model (for a zoo name in any case: the one
    registered under the zoo's spelling), else a zoo model; UnknownNameError lists both.
    A model file that vanished because another process replaced the model meanwhile (its old
    version is removed after the commit) is looked up again (``Database.read_latest``)."""
    return db.read_latest(lambda: _resolve(db, name, seed), f"model {name!r}")


def _resolve(db, name: str, seed: int) -> ModelRef:
    registered = db.models()
    zoo = name.lower() if name.lower() in ZOO else None
    key = name if name in registered else zoo if zoo in registered else None
    if key is not None:
        e = registered[key]
        kind, source = e.kind, (e.source.lower() if e.kind == "zoo" else e.source)
        if kind == "zoo" and source not in ZOO:
            raise UnknownNameError(f"zoo model (for model {key!r})", e.source, list(ZOO))
        digest, model = load_source(kind, source, seed)
        pre = e.preprocess or model.preprocess  # a copy of the cached Model carries it
        return ModelRef(name, key, kind, source, preprocess_digest(digest, e.preprocess), True,
                        replace(model, name=name, preprocess=pre), e.preprocess)
    if zoo is not None:
        digest, model = load_source("zoo", zoo, seed)
        return ModelRef(name, zoo, "zoo", zoo, digest, False, replace(model, name=name))
    raise UnknownNameError("model", name, sorted(set(registered) | set(ZOO)))
