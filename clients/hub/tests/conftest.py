"""Fixtures of the SDK's tests: a real hub process (shared, or one a test may restart)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hubprocess import HubProcess


@pytest.fixture(scope="module")
def shared_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub that the tests of one module share (none of them stops it)."""
    hub = HubProcess(tmp_path_factory.mktemp("hub"))
    try:
        hub.set_up()
        yield hub
    finally:
        hub.tear_down()


@pytest.fixture
def own_hub(tmp_path: Path) -> Iterator[HubProcess]:
    """A hub of the test's own, which it may kill and restart."""
    hub = HubProcess(tmp_path)
    try:
        hub.set_up()
        yield hub
    finally:
        hub.tear_down()
