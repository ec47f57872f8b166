"""model/link.py: the request checks every backend runs first, and do_setlink()'s order."""

from __future__ import annotations

import inspect

import pytest

from pymacvlan.backends.userspace.datapath import Datapath
from pymacvlan.engine import Engine
from pymacvlan.model import KernelError, MacaddrMode, MacvlanFlag, Mode
from pymacvlan.model.link import LinkChange, LinkRequest, SetLink, apply_change, validate_request

M1, M2 = bytes.fromhex("02000000000b"), bytes.fromhex("02000000000c")


class Recorder:
    """A SetLink that records the verbs it is asked for (and can refuse one)."""

    def __init__(self, refuse: str | None = None) -> None:
        self.calls: list[tuple] = []
        self.refuse = refuse

    def _rec(self, verb: str, *args) -> None:
        self.calls.append((verb, *args))
        if verb == self.refuse:
            raise KernelError("EADDRINUSE", "refused")

    def changelink(self, name, mode=None, flags=None, bcqueuelen=None, bclim=None, macaddr_op=None, macaddrs=()):
        self._rec("changelink", mode, flags, macaddr_op, list(macaddrs))

    def set_mac(self, name, mac):
        self._rec("set_mac", mac)

    def set_mtu(self, name, mtu):
        self._rec("set_mtu", mtu)

    def set_up(self, name, up):
        self._rec("set_up", up)

    def set_promisc(self, name, on):
        self._rec("set_promisc", on)

    def set_allmulticast(self, name, on):
        self._rec("set_allmulticast", on)


def test_do_setlink_order_and_one_source_mac_per_changelink() -> None:
    r = Recorder()
    apply_change(r, "m", LinkChange(up=True, address=M1, mtu=1400, mode=Mode.SOURCE, allmulticast=True,
                                    promisc=False, macaddr_mode=MacaddrMode.ADD, macaddrs=[M1, M2]))
    assert [c[0] for c in r.calls] == ["changelink", "changelink", "changelink", "set_mac", "set_mtu",
                                       "set_up", "set_promisc", "set_allmulticast"]
    assert r.calls[1] == ("changelink", None, None, MacaddrMode.ADD, [M1])


def test_a_refused_up_still_applies_promisc_and_allmulti_then_raises() -> None:
    r = Recorder(refuse="set_up")
    with pytest.raises(KernelError):
        apply_change(r, "m", LinkChange(up=True, promisc=True, allmulticast=True))
    assert [c[0] for c in r.calls] == ["set_up", "set_promisc", "set_allmulticast"]


@pytest.mark.parametrize("change, errno_name", [
    (LinkChange(up=True, mtu=67), "EINVAL"),
    (LinkChange(up=True, address=bytes.fromhex("010000000001")), "EADDRNOTAVAIL"),
    (LinkChange(up=True, flags=MacvlanFlag(4)), "EINVAL"),
    (LinkChange(up=True, kind="veth"), "EOPNOTSUPP"),
    (LinkChange(up=True, macaddr_mode=MacaddrMode.ADD), "EINVAL"),
])
def test_a_malformed_change_touches_nothing(change: LinkChange, errno_name: str) -> None:
    r = Recorder()
    with pytest.raises(KernelError) as e:
        apply_change(r, "m", change)
    assert e.value.errno_name == errno_name and r.calls == []


@pytest.mark.parametrize("req, errno_name, words", [
    (LinkRequest("eth0", "a" * 16), "EINVAL", 'Error: argument "aaaaaaaaaaaaaaaa" is wrong: "name" not a valid ifname'),
    (LinkRequest("eth0", "é" * 8), "EINVAL", "not a valid ifname"),  # 16 bytes in UTF-8
    (LinkRequest("eth0", "a b"), "EINVAL", "not a valid ifname"),
    (LinkRequest("eth0", ""), "EINVAL", "not a valid ifname"),
    (LinkRequest("", "m0"), "EINVAL", "needs a parent"),
    (LinkRequest("eth0", "m0", netns="a/b"), "EINVAL", "Invalid netns name"),
    (LinkRequest("eth0", "m0", mtu=70000), "EINVAL", "MTU 70000"),
    (LinkRequest("eth0", "m0", address=b"\0" * 6), "EADDRNOTAVAIL", "not a valid unicast"),
    (LinkRequest("eth0", "m0", macaddr_mode=MacaddrMode.SET, macaddrs=[M1]), "EINVAL", "needs mode source"),
    (LinkRequest("eth0", "m0", mode=Mode.SOURCE, macaddr_mode=MacaddrMode.FLUSH), "EINVAL", "new link"),
])
def test_requests_are_validated_with_iproute2s_words(req: LinkRequest, errno_name: str, words: str) -> None:
    with pytest.raises(KernelError) as e:
        validate_request(req)
    assert e.value.errno_name == errno_name and words in e.value.message


def test_a_15_byte_name_is_fine() -> None:
    validate_request(LinkRequest("eth0", "a" * 15, mode=Mode.SOURCE, macaddr_mode=MacaddrMode.SET, macaddrs=[M1]))


@pytest.mark.parametrize("impl", [Engine, Datapath])
def test_every_implementation_has_the_setlink_verbs_with_their_parameters(impl: type) -> None:
    """The engine and the datapath (the daemon and replay backend go through it) speak the
    same verbs: a renamed or re-ordered parameter fails here, not in production."""
    for verb, fn in inspect.getmembers(SetLink, inspect.isfunction):
        if verb.startswith("_"):
            continue
        want = list(inspect.signature(fn).parameters)
        assert list(inspect.signature(getattr(impl, verb)).parameters) == want, (impl.__name__, verb)
