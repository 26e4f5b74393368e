"""``python -m server.commands``: the same as the ``fbrhub`` command."""

from server.commands.main import main

raise SystemExit(main())
