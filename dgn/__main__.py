"""``python -m dgn`` (also how torchrun launches it)."""

import sys

from dgn.cli import main

sys.exit(main())
