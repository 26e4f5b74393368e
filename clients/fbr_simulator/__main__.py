"""``python -m clients.fbr_simulator``: see :mod:`clients.fbr_simulator.cli`."""

from __future__ import annotations

import sys

from clients.fbr_simulator.cli import main

sys.exit(main())
