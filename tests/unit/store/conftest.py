"""Fixtures for store tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from store_factories import Node, make_node


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """``nodes("leader")`` builds an open node in its own directory; all are closed afterwards."""
    made: list[Node] = []

    def factory(name: str, **kwargs) -> Node:
        node = make_node(tmp_path / name, **kwargs)
        made.append(node)
        return node

    yield factory
    for node in made:
        node.db.close()
