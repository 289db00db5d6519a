"""KryptonDB: a query engine for fast, incremental re-inference of CNNs.

>>> import kryptondb
>>> m = kryptondb.load_model("mobilenet_v2")
>>> [p.label for p in m.top(kryptondb.bundled_image(), k=1)[0]]
['Egyptian cat']
"""

from kryptondb.errors import KryptonError
from kryptondb.images import Preprocess, bundled_image, load_image
from kryptondb.model.model import Model, Prediction, load_model

__all__ = ["KryptonError", "Model", "Prediction", "Preprocess", "bundled_image", "load_image",
           "load_model"]
__version__ = "0.1.0"
