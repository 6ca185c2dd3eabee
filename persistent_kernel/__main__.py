"""``python -m persistent_kernel``: the command line (the kernel itself starts from ``persistent_kernel.launcher``)."""

import sys

from .cli import main

sys.exit(main())
