"""``python -m aiobpf``: the same as the ``aiobpf`` command."""

import sys

from .cli import main

sys.exit(main())
