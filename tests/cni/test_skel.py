"""The CNI protocol without a kernel: environment, versions, errors, results, config keys."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from pymacvlan.cni import SUPPORTED_VERSIONS, conf, result, skel

from .conftest import SRC

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0",
       "CNI_PATH": "/usr/lib/cni"}
CONF = {"cniVersion": "1.0.0", "name": "n", "type": "macvlan", "master": "m"}


def run(env=None, stdin=None, commands=None):
    out, err = io.StringIO(), io.StringIO()
    data = json.dumps(CONF if stdin is None else stdin).encode() if not isinstance(stdin, bytes) else stdin
    rc = skel.run(ENV if env is None else env, data, out, err, commands or (lambda c: lambda a: {"cmd": c}))
    return rc, (json.loads(out.getvalue()) if out.getvalue() else None), err.getvalue()


def test_missing_env_names_every_variable_in_order():
    rc, out, _ = run({"CNI_COMMAND": "ADD"})
    assert rc == 1
    assert out == {"code": 4, "msg": "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"}
    rc, out, _ = run({"CNI_COMMAND": "DEL", "CNI_PATH": "/x"})
    assert out["msg"] == "required env variables [CNI_CONTAINERID,CNI_IFNAME] missing"


def test_no_command_prints_about_and_succeeds():
    rc, out, err = run({})
    assert (rc, out) == (0, None)
    assert "CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0" in err


def test_version_ignores_stdin():
    rc, out, _ = run({"CNI_COMMAND": "VERSION"}, b"not json")
    assert rc == 0 and out == {"cniVersion": "1.1.0", "supportedVersions": list(SUPPORTED_VERSIONS)}


@pytest.mark.parametrize("stdin,code,msg", [
    (b"{", 6, "error unmarshall network config"),
    ({"cniVersion": "1.0.0"}, 7, "missing network name"),
    (dict(CONF, name="a/b"), 7, "invalid characters found in network name"),
    (dict(CONF, cniVersion="0.2.0"), 1, "incompatible CNI versions"),
    (dict(CONF, cniVersion="x"), 1, "incompatible CNI versions"),
])
def test_config_errors(stdin, code, msg):
    rc, out, _ = run(stdin=stdin)
    assert rc == 1 and out["code"] == code and out["msg"].startswith(msg), out


def test_check_gc_status_need_their_spec_versions():
    for cmd, old in (("CHECK", "0.3.1"), ("GC", "1.0.0"), ("STATUS", "1.0.0")):
        rc, out, _ = run(dict(ENV, CNI_COMMAND=cmd), dict(CONF, cniVersion=old))
        assert rc == 1 and out["code"] == 1 and cmd in out["msg"], (cmd, out)
    rc, out, _ = run({"CNI_COMMAND": "STATUS", "CNI_PATH": "/x"}, dict(CONF, cniVersion="1.1.0"))
    assert (rc, out) == (0, {"cmd": "STATUS"})


def test_container_id_and_ifname_rules():
    assert run(dict(ENV, CNI_CONTAINERID="-bad"))[1]["code"] == 4
    assert run(dict(ENV, CNI_IFNAME="."))[1]["msg"] == "interface name is . or .."
    assert run(dict(ENV, CNI_IFNAME="a b"))[1]["code"] == 4
    assert run(dict(ENV, CNI_IFNAME="x" * 16))[1]["details"] == "interface name should be less than 16 characters"


def test_an_unexpected_exception_is_999_without_traceback():
    def boom(_c):
        def f(_a):
            raise KeyError("x")
        return f
    rc, out, err = run(commands=boom)
    assert rc == 1 and out["code"] == 999 and "Traceback" not in err and err.count("\n") == 1


def test_plugin_errors_keep_their_code():
    def again(_c):
        def f(_a):
            raise skel.CNIError(11, "busy", "later")
        return f
    assert run(commands=again)[1] == {"code": 11, "msg": "busy", "details": "later"}


# -- results -----------------------------------------------------------------------------------------
CUR = {"cniVersion": "1.1.0",
       "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "mtu": 1400, "sandbox": "/run/netns/x"}],
       "ips": [{"interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"},
               {"interface": 0, "address": "fd00::2/64"}],
       "routes": [{"dst": "0.0.0.0/0", "mtu": 1400}], "dns": {"nameservers": ["10.0.0.53"], "domain": ""}}


def test_result_040_has_ip_versions_and_short_interfaces():
    r = result.convert(CUR, "0.4.0")
    assert r["ips"] == [{"version": "4", "interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"},
                        {"version": "6", "interface": 0, "address": "fd00::2/64"}]
    assert r["interfaces"] == [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/run/netns/x"}]
    assert r["routes"] == [{"dst": "0.0.0.0/0"}] and r["dns"] == {"nameservers": ["10.0.0.53"]}


def test_result_110_keeps_new_fields_and_roundtrips():
    r = result.convert(CUR, "1.1.0")
    assert r["interfaces"][0]["mtu"] == 1400 and r["routes"][0]["mtu"] == 1400
    assert "version" not in r["ips"][0]
    assert result.to_current(result.convert(CUR, "0.3.1"))["ips"] == CUR["ips"]


def test_result_without_ips_keeps_dns_key():
    assert result.convert({"interfaces": CUR["interfaces"], "dns": {}}, "1.0.0") == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "mtu": 1400, "sandbox": "/run/netns/x"}],
        "dns": {}}


# -- config keys -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra,key",
    [
        ({"mode": "foo"}, "mode"),
        ({"mtu": "1"}, "mtu"),
        ({"mac": "zz"}, "mac"),
        ({"master": 3}, "master"),
        ({"linkInContainer": "yes"}, "linkInContainer"),
        ({"bcqueuelen": -1}, "bcqueuelen"),
        ({"ipam": {"type": 1}}, "ipam.type"),
        ({"ipam": {"type": "../x"}}, "ipam.type"),
        ({"runtimeConfig": {"mac": "nope"}}, "runtimeConfig.mac"),
        ({"macaddr": ["02:00:00:00:00:01"]}, "macaddr"),
        ({"nodst": True}, "nodst"),
        ({"nopromisc": True}, "nopromisc"),
        ({"bclim": 2**40}, "bclim"),
        ({"backend": "ebpf"}, "backend"),
        ({"socket": "/x"}, "socket"),
        ({"hostAccess": True, "mode": "vepa"}, "hostAccess"),
    ],
)
def test_bad_keys_are_named(extra, key):
    with pytest.raises(skel.CNIError) as e:
        conf.load(dict(CONF, **extra))
    assert e.value.code == 7 and e.value.msg.startswith(key + ":"), e.value.msg


def test_mac_precedence_and_cni_args():
    n = conf.load(dict(CONF, mac="02:00:00:00:00:01"), "IgnoreUnknown=1;MAC=02:00:00:00:00:02")
    assert n.mac == "02:00:00:00:00:02"
    n = conf.load(dict(CONF, runtimeConfig={"mac": "02-00-00-00-00-0A"}), "MAC=02:00:00:00:00:02")
    assert n.mac == "02:00:00:00:00:0a"
    with pytest.raises(skel.CNIError) as e:
        conf.load(CONF, "FOO=1")
    assert e.value.code == 4 and "unknown args" in e.value.msg
    with pytest.raises(skel.CNIError):
        conf.load(CONF, "MAC=02:00:00:00:00:02;")  # an empty pair, as types.LoadArgs refuses it
    assert conf.load(CONF, "IgnoreUnknown=true;K8S_POD_NAME=p").mac == ""


def test_stable_mac_is_stable_local_unicast_and_per_pod():
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web-0"
    a = conf.load(dict(CONF, stableMac=True), args, "ctr1", "eth0").mac
    b = conf.load(dict(CONF, stableMac=True), args, "ctr2", "eth0").mac  # restarted: new container ID
    c = conf.load(
        dict(CONF, stableMac=True), "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web-1", "ctr1", "eth0"
    ).mac
    d = conf.load(dict(CONF, stableMac=True), "", "ctr1", "eth0").mac
    e = conf.load(dict(CONF, stableMac=True, name="other"), args, "ctr1", "eth0").mac
    assert a == b and len({a, c, d, e}) == 4
    first = int(a.split(":")[0], 16)
    assert first & 2 and not first & 1
    assert conf.load(dict(CONF, stableMac=True, mac="02:00:00:00:00:05"), args).mac == "02:00:00:00:00:05"


def test_console_entry_runs_without_root():
    """`python3 -m pymacvlan.cni` (what the console script runs) answers VERSION and env errors."""
    env = {"PYTHONPATH": SRC, "CNI_COMMAND": "VERSION"}
    p = subprocess.run([sys.executable, "-m", "pymacvlan.cni"], env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and json.loads(p.stdout)["cniVersion"] == "1.1.0"
    p = subprocess.run([sys.executable, "-m", "pymacvlan.cni"], env=dict(env, CNI_COMMAND="ADD"), input="{}",
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and json.loads(p.stdout)["code"] == 4 and not p.stderr
