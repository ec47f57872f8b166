"""QEMU command lines and the guest's kernel command line, without booting anything."""

from __future__ import annotations

import base64
import re
import sys

import pytest

from pymacvlan.vm.guest import cmdline
from pymacvlan.vm.qemu import GuestRun, netdev_args

MAC = "52:54:00:12:34:56"


def test_netdev_args_per_endpoint_kind() -> None:
    assert netdev_args("stream", MAC, path="/run/p/vm0.sock") == [
        "-netdev", "stream,id=net0,server=off,addr.type=unix,addr.path=/run/p/vm0.sock",
        "-device", f"virtio-net-pci,netdev=net0,mac={MAC},romfile="]
    assert "reconnect=2" in netdev_args("stream", MAC, path="/p", reconnect=2)[1]
    assert netdev_args("dgram", MAC, path="/p/d.sock")[1] == \
        "dgram,id=net0,local.type=unix,local.path=/p/d.sock.qemu,remote.type=unix,remote.path=/p/d.sock"
    assert netdev_args("tapfd", MAC, fd=7)[1] == "tap,id=net0,fd=7,vhost=off"
    assert netdev_args("tap", MAC, fd=3)[3].endswith(f"mac={MAC},romfile=")
    with pytest.raises(ValueError, match="unknown endpoint kind"):
        netdev_args("vde", MAC)


def test_cmdline_carries_the_script_and_refuses_an_overlong_one() -> None:
    line = cmdline("pmv_dhcp\necho hi")
    m = re.search(r"pmv.script=(\S+)", line)
    assert m and base64.b64decode(m.group(1)).decode() == "pmv_dhcp\necho hi"
    assert "panic=-1" in line and "console=ttyS0" in line
    with pytest.raises(ValueError, match="too long"):
        cmdline("x" * 1600)


def test_guest_run_expect_reports_failures_with_the_console() -> None:
    prog = "print('boot'); print('PMV-OK a'); print('PMV-FAIL b'); print('PMV-OK c')"
    with GuestRun([sys.executable, "-c", prog]) as run:
        assert run.expect("PMV-OK (a)", 10).group(1) == "a"
        with pytest.raises(AssertionError, match="PMV-FAIL b"):
            run.expect("PMV-OK c", 10)
    with GuestRun([sys.executable, "-c", "print('x')"]) as run:
        with pytest.raises(AssertionError, match="QEMU exited"):
            run.expect("never", 10)


def test_link_add_endpoint_words_and_who_takes_them() -> None:
    from pymacvlan.cli.link import UsageError, parse_add
    from pymacvlan.model import KernelError
    from pymacvlan.model.link import check_endpoint

    req = parse_add("link eth0 name vm0 type macvtap mode bridge endpoint dgram endpoint-user 0 "
                    "endpoint-group kvm endpoint-mode 0660".split()).req
    assert (req.endpoint, req.endpoint_user, req.endpoint_group, req.endpoint_mode) == ("dgram", "0", "kvm", 0o660)
    check_endpoint(req, "userspace", sockets=True)
    with pytest.raises(KernelError, match="/dev/tapN") as e:
        check_endpoint(req, "kernel")
    assert e.value.errno_name == "EOPNOTSUPP"
    check_endpoint(parse_add("link eth0 name vm0 type macvtap endpoint tapfd".split()).req, "kernel")
    with pytest.raises(UsageError, match='"endpoint" must be'):
        parse_add("link eth0 name vm0 type macvtap endpoint vde".split())
    with pytest.raises(UsageError, match="octal"):
        parse_add("link eth0 name vm0 type macvtap endpoint-mode rw".split())
    with pytest.raises(UsageError, match='unknown option "endpoint"'):
        parse_add("link eth0 name m0 type macvlan endpoint stream".split())


def test_libvirt_commandline_quotes_every_argument() -> None:
    from xml.etree import ElementTree

    from pymacvlan.cli.vm import libvirt_xml

    argv = netdev_args("stream", MAC, path="/run/p/a&b.sock")
    xml = libvirt_xml(argv).replace("qemu:", "")
    assert [a.get("value") for a in ElementTree.fromstring(xml)] == argv


def test_vm_args_takes_the_global_backend_and_state(tmp_path, capsys) -> None:
    """vm-args reads --backend/--state/-n itself (as link does): the global options reach it
    instead of being refused, and the options it cannot honour are still refused in one line."""
    from pymacvlan.cli.main import main

    state = str(tmp_path / "sim.json")
    assert main(["--state", state, "link", "add", "link", "eth0", "name", "vt0", "type", "macvtap",
                 "mode", "bridge", "address", "02:00:00:00:0a:01"]) == 0
    capsys.readouterr()
    assert main(["--backend", "sim", "--state", state, "vm-args", "vt0"]) == 0
    out = capsys.readouterr().out
    assert "mac=02:00:00:00:0a:01" in out and "-netdev tap," in out
    with pytest.raises(SystemExit) as e:
        main(["-j", "--state", state, "vm-args", "vt0"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == ("pymacvlan vm-args: EINVAL: -j does not apply to this command "
                                               "(it takes --backend, --socket, --state, -n)")


def _qemu_opts(text: str) -> list[str]:
    """QEMU's option splitting: ``,`` separates, ``,,`` is a literal comma."""
    out, cur, i = [], "", 0
    while i < len(text):
        if text[i] == ",":
            if text[i + 1:i + 2] == ",":
                cur += ","
                i += 2
                continue
            out.append(cur)
            cur = ""
        else:
            cur += text[i]
        i += 1
    return out + [cur]


@pytest.mark.parametrize("kind", ["stream", "dgram"])
def test_a_name_with_commas_never_becomes_a_second_qemu_option(kind: str) -> None:
    """Issue 19: a macvtap named ``a,fd=3`` put ``fd=3`` into -netdev."""
    args = netdev_args(kind, "02:00:00:00:00:0a", path="/run/pymacvlan/a,fd=3,script=/x.sock")
    opts = _qemu_opts(args[1])
    assert not any(o.startswith(("fd=", "script=")) for o in opts), opts
    assert any(o.endswith("path=/run/pymacvlan/a,fd=3,script=/x.sock") for o in opts), opts


@pytest.mark.parametrize("kw", [{"netdev_id": "n,fd=3"}, {"netdev_id": "1x"}, {"mac": "02:00:00:00:00:0a,x=1"},
                                {"path": "/run/a\nb"}])
def test_ids_macs_and_paths_that_cannot_be_written_are_refused(kw: dict) -> None:
    args = {"mac": "02:00:00:00:00:0a", "path": "/run/x.sock", **kw}
    with pytest.raises(ValueError):
        netdev_args("stream", **args)
