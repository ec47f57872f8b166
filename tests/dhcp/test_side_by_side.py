"""pymacvlan-dhcp next to Debian's reference CNI ``dhcp`` IPAM (with its own daemon on a private
socket), both under the reference ``macvlan`` main plugin, on the same configs, against the same
server: dnsmasq, and ISC dhcpd for a second opinion.

Both get a lease; re-created under the same pod name, pymacvlan's client identifier (RFC 4361,
from stableMac's identity) stays while the reference's (container ID / network / ifname)
changes; both release on DEL, as the server's own lease file shows.
"""

from __future__ import annotations

import re
import time

import pytest

from .conftest import ip_json, live_reason

pytestmark = __import__("tests.ci", fromlist=["live_marks"]).live_marks(live_reason())

POD_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0"


def _conf(ipam: dict) -> dict:
    return {"cniVersion": "1.0.0", "name": "pmvnet", "type": "macvlan", "master": "pmvM", "mode": "bridge",
            "ipam": ipam}


def _dhcpd_blocks(text: str) -> list[tuple[str, str]]:
    """dhcpd.leases' ``lease ADDR {`` ... ``}`` blocks (a closing brace alone on its line: the
    uid string may hold any printable byte, braces included)."""
    return re.findall(r"^lease ([\d.]+) \{\n(.*?)^\}$", text, re.S | re.M)


def _client_ids(srv, mac: str) -> list[str]:
    """The client identifier the server recorded for ``mac`` (dnsmasq: 5th column; dhcpd: uid)."""
    text = srv.leases()
    if srv.kind == "dnsmasq":
        return [ln.split()[4] for ln in text.splitlines() if ln.split()[1:2] == [mac]]
    out = []
    for _addr, block in _dhcpd_blocks(text):
        if f"hardware ethernet {mac};" in block:
            m = re.search(r'uid ("(?:[^"\\]|\\.)*"|[0-9a-f:]+);', block)
            out.append(m.group(1) if m else "")
    return out


def _released(srv, mac: str, addr: str) -> bool:
    text = srv.leases()
    if srv.kind == "dnsmasq":
        return mac not in text
    blocks = [b for a, b in _dhcpd_blocks(text) if a == addr]
    return bool(blocks) and "binding state free" in blocks[-1].split("next binding state")[0]


def _wait(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize("server", ["dnsmasq", "dhcpd"])
def test_both_lease_ours_keeps_its_identity_both_release(lab, server):
    srv = lab.dnsmasq() if server == "dnsmasq" else lab.dhcpd()
    lab.start_daemon()
    ref_sock = lab.ref_dhcp_daemon()
    plugins = {"ours": _conf({"type": "pymacvlan-dhcp", "socket": lab.socket, "timeout": 20}),
               "ref": _conf({"type": "dhcp", "daemonSocketPath": ref_sock})}
    seen: dict[str, list[tuple[str, str, str]]] = {"ours": [], "ref": []}  # (mac, address, client-id)
    for round_ in range(2):  # the pod, then the pod re-created under the same name (a new container)
        for who, conf in plugins.items():
            pod = lab.pod(f"{who[0]}{round_}")
            cid = f"{who}-ctr-{round_}"
            rc, out, err = lab.cni("/usr/lib/cni/macvlan", "ADD", conf, pod, cid, args=POD_ARGS)
            assert rc == 0, (who, out, err, lab.daemon_log()[-1500:])
            addr = out["ips"][0]["address"].split("/")[0]
            mac = out["interfaces"][0]["mac"]
            have = [a["local"] for ln in ip_json("-n", pod, "addr", "show", "dev", "eth0") for a in ln["addr_info"]]
            assert addr in have, (who, have)
            assert _wait(lambda: bool(_client_ids(srv, mac))), (who, srv.leases())  # noqa: B023
            seen[who].append((mac, addr, _client_ids(srv, mac)[-1]))
            rc, out, err = lab.cni("/usr/lib/cni/macvlan", "DEL", conf, pod, cid, args=POD_ARGS)
            assert rc == 0, (who, out, err)
            assert _wait(lambda: _released(srv, mac, addr)), (who, server, srv.leases()[-1500:])  # noqa: B023
            lab.drop_pod(pod)
    (m0, _a0, id0), (m1, _a1, id1) = seen["ours"]
    assert m0 != m1 and id0 == id1 and id0, seen  # a new MAC (macvlan picks one), the same client identifier
    (r0, _b0, rid0), (r1, _b1, rid1) = seen["ref"]
    assert rid0 != rid1, seen  # the reference's identifier names the container: it changes
