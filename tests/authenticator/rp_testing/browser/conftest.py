"""Fixtures of the browser suites: one demo RP per module."""

from __future__ import annotations

import pytest
from browser_support import load_rp_demo


@pytest.fixture(scope="module")
def rp_server():
    """(url, stop) of a demo RP for the module; ``stop.rp`` is its DemoRP."""
    url, stop = load_rp_demo().start(port=0)
    yield url, stop
    stop()


@pytest.fixture
def rp_url(rp_server) -> str:
    return rp_server[0]


@pytest.fixture
def rp(rp_server):
    return rp_server[1].rp
