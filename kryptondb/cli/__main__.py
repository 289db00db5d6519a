"""``python -m kryptondb.cli``: the same as the ``kryptondb`` command."""

import sys

from kryptondb.cli import main

sys.exit(main())
