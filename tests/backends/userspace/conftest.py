"""Fixtures shared by the userspace live tests."""

from __future__ import annotations

import pytest

from .netlab import Lab, leftovers


@pytest.fixture
def lab():
    """A :class:`Lab` removed after the test, also on failure; leftovers fail the test."""
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()
        assert not leftovers(lab.tag), f"leftover namespaces or links: {leftovers(lab.tag)}"
