"""The ``fbrhub`` command line.

:mod:`server.commands.main` builds the parser from one module per command group (``serve``,
``status``, ``refdata``, ``tenants``, ``keys``, ``accounts``, ``retention``, ``secrets``)
and runs the chosen command.
"""
