"""``python -m demo`` (from the repository root): the one-command demo."""

import sys

from demo.run import main

sys.exit(main())
