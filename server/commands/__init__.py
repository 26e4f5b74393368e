"""The ``fbrhub`` command line."""
