"""``python -m services.cli``: the ``isa-broker`` command."""

import sys

from . import main

sys.exit(main())
