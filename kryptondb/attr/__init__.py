"""Attribution with Captum's API on KryptonDB's engine: ``Occlusion`` (occlusion.py) takes
``captum.attr.Occlusion``'s arguments (checked in arguments.py) and returns its attribution;
what forward_func is becomes a Model in forward.py, how the scan runs is decided in
planning.py, tensors go in and out in tensors.py, and calls the engine refuses can go to
Captum (fallback.py). See docs/captum.md.
"""

from kryptondb.attr.arguments import CaptumArgumentError, UnsupportedArgumentError
from kryptondb.attr.occlusion import Occlusion

__all__ = ["CaptumArgumentError", "Occlusion", "UnsupportedArgumentError"]
