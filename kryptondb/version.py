"""KryptonDB's version, low in the house: model digests are salted with it (model/digest.py)."""

__version__ = "0.1.0"
