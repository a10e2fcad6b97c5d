"""``python -m tre`` is the ``tre`` command."""

import sys

from ._cli import main

sys.exit(main())
