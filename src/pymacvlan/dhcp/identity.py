"""Who a DHCP client is: the client identifier (RFC 4361) and the hostname (option 12).

Both come from the same identity string that ``stableMac`` hashes (:func:`pymacvlan.cni.conf.
attachment_identity`): ``pod/NAMESPACE/NAME/IFNAME`` when the runtime names the pod (Kubernetes'
``K8S_POD_*`` CNI_ARGS), else ``ctr/CONTAINERID/IFNAME``; with the network's name. A re-created pod
therefore asks with the same client identifier (and, with stableMac, the same MAC), and the
server hands it the same address; the reference ``dhcp`` plugin's identifier contains the
container ID and changes with every re-creation.

The identifier is RFC 4361's: type 255, a 4-byte IAID, then a DUID. The DUID is a DUID-UUID
(RFC 6355, type 4) whose 16 bytes are the first 16 of SHA-256 over the network and the
identity: stable, unique per attachment, and saying nothing about the MAC (which stableMac may
or may not derive from the same identity). The IAID is a CRC-32 of the interface name, so two
interfaces of one pod differ even if their identities were equal.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass

DUID_UUID = 4


@dataclass(frozen=True)
class Identity:
    """The network, the attachment's identity string, its interface name and a hostname."""

    network: str
    identity: str
    ifname: str = "eth0"
    hostname: str = ""

    @property
    def duid(self) -> bytes:
        digest = hashlib.sha256(f"{self.network}\0{self.identity}".encode()).digest()
        return DUID_UUID.to_bytes(2, "big") + digest[:16]

    @property
    def iaid(self) -> bytes:
        return zlib.crc32(self.ifname.encode()).to_bytes(4, "big")

    @property
    def client_id(self) -> bytes:
        """Option 61's value: 0xff, IAID, DUID (RFC 4361 section 6.1)."""
        return b"\xff" + self.iaid + self.duid


_LABEL_BAD = re.compile(r"[^a-z0-9-]+")


def hostname_for(identity: str, explicit: str = "") -> str:
    """An RFC 1123 label (at most 63 characters): the pod's name, or the container ID's first
    12 characters, or ``explicit`` when given; '' when nothing usable is left."""
    if explicit:
        src = explicit
    elif identity.startswith("pod/"):
        parts = identity.split("/")
        src = parts[2] if len(parts) > 2 else ""
    elif identity.startswith("ctr/"):
        src = identity.split("/")[1][:12]
    else:
        src = identity
    label = _LABEL_BAD.sub("-", src.lower()).strip("-")[:63].strip("-")
    return label


def for_attachment(network: str, container_id: str, ifname: str, cni_args: dict[str, str] | None = None,
                   hostname: str = "") -> Identity:
    """The identity of one CNI attachment, as stableMac derives it."""
    from ..cni.conf import attachment_identity

    ident = attachment_identity(cni_args or {}, container_id, ifname)
    return Identity(network, ident, ifname, hostname_for(ident, hostname))
