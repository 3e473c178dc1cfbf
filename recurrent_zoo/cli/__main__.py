"""``python -m recurrent_zoo.cli``: the same as the ``recurrent-zoo`` command."""

import sys

from recurrent_zoo.cli import main

sys.exit(main())
