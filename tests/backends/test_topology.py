"""backends/kernel/topology.py: teardown deletes only what the run made (issue 19, item 1).

The old teardown deleted ``parent_index`` through whatever socket it had cached: a socket in
another namespace deletes that namespace's device of the same ifindex (ifindex 2 is the first
device in every fresh namespace). Here the cached socket is swapped for one in a namespace of
the test's own holding a veth at ifindex 2: teardown must leave it and say so.
"""

from __future__ import annotations

import secrets
import subprocess
import warnings

import pytest
from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns

from pymacvlan.backends.kernel import unavailable_reason
from pymacvlan.backends.kernel.topology import Topology
from pymacvlan.backends.userspace._sys import in_netns
from tests.ci import live_marks

pytestmark = live_marks(unavailable_reason())


@pytest.fixture
def other():
    """A pmv namespace of the test's own with a veth pair (ifindex 2 and 3)."""
    name = f"pmv{secrets.token_hex(3)}o"
    pr_netns.create(name)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "pmvo1", "type", "veth", "peer", "name", "pmvo2"], check=True)
        yield name
    finally:
        pr_netns.remove(name)


def _links(ns: str) -> list[str]:
    out = subprocess.run(["ip", "-n", ns, "-o", "link", "show"], capture_output=True, text=True).stdout
    return [line.split(": ")[1].split("@")[0] for line in out.splitlines()]


def test_teardown_never_deletes_through_a_socket_of_another_namespace(other) -> None:
    topo = Topology().create()
    try:
        assert topo.parent_index == 2
        with in_netns(other):
            stranger = IPRoute()
        mine = topo._iprs[topo.ns_parent]
        topo._iprs[topo.ns_parent] = stranger
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            topo.teardown()
        assert "pmvo1" in _links(other) and "pmvo2" in _links(other)
        assert any("netns inode" in str(w.message) for w in caught), [str(w.message) for w in caught]
        mine.close()
    finally:
        topo.teardown()


def test_teardown_deletes_what_it_made() -> None:
    topo = Topology().create()
    ns = topo.ns_parent
    topo.teardown()
    assert ns not in pr_netns.listnetns()
