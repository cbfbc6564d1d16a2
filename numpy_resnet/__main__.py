"""`python -m numpy_resnet` runs the `numpy-resnet` command."""

import sys

from .cli import main

sys.exit(main())
