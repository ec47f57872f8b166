"""The plugin without Docker: options, the HTTP protocol (400/404/Err), the handler table, the
state file, the MAC rules and the stable_mac candidate pick. Nothing here touches a device."""

from __future__ import annotations

import http.client
import json
import socket
import threading

import pytest

from pymacvlan.docker import dockerapi, options
from pymacvlan.docker.driver import DriverConfig, NetworkDriver, Part, Plugin, mac_from_ip
from pymacvlan.docker.server import Server
from pymacvlan.docker.state import Endpoint, Network, State
from pymacvlan.docker.unit import render


def gen(**kw):
    return {options.GENERIC: kw}


# -- options ------------------------------------------------------------------------------------------
def test_defaults_are_dockers():
    c = options.parse(gen(parent="eth0"))
    assert (c.parent, c.mode, c.internal, c.backend, c.vlan) == ("eth0", "bridge", False, "kernel", None)


def test_vlan_parent_and_internal():
    c = options.parse(gen(parent="eth0.50"))
    assert (c.vlan, c.vlan_base) == (50, "eth0")
    # Docker: an empty parent and --internal are the same, and --internal drops the parent
    assert options.parse(gen()).internal
    c = options.parse({options.INTERNAL: True, options.GENERIC: {"parent": "eth0"}})
    assert c.internal and c.parent == "eth0"  # dockerd 20.10's built-in driver keeps the parent


@pytest.mark.parametrize("opts, words", [
    (gen(parent="eth0", macvlan_mode="foo"), ["requested macvlan mode 'foo' is not valid", "bridge, private"]),
    (gen(parent="eth0", bogus="1"), ["unknown option 'bogus'", "macvlan_mode"]),
    (gen(parent="eth0", mtu="9x"), ["option mtu", "68"]),
    (gen(parent="eth0", mtu="20"), ["option mtu"]),
    (gen(parent="eth0", host_access="maybe"), ["option host_access", "true or false"]),
    (gen(parent="eth0", backend="ebpf"), ["option backend", "userspace"]),
    (gen(parent="eth0.5000"), ["option parent", "1-4094"]),
    (gen(parent="lo"), ["loopback"]),
    (gen(parent="averyveryverylongname"), ["option parent", "15 bytes"]),
    (gen(parent="eth0", nopromisc="true"), ["nopromisc", "passthru"]),
    (gen(parent="eth0", macaddr="02:00:00:00:00:01"), ["macaddr", "source"]),
    (gen(parent="eth0", macvlan_mode="source", macaddr="01:00:00:00:00:01"), ["option macaddr", "unicast"]),
    (gen(host_access="true"), ["host_access", "needs a parent"]),
    ({options.GENERIC: "x"}, ["JSON object"]),
])
def test_bad_options_name_the_option(opts, words):
    with pytest.raises(options.OptionError) as e:
        options.parse(opts)
    for w in words:
        assert w in str(e.value)


def test_extras_parse():
    c = options.parse(gen(parent="eth0", mtu="1400", host_access="true", stable_mac="yes", bclim="-1",
                          bcqueuelen="10"))
    assert (c.mtu, c.host_access, c.stable_mac, c.bclim, c.bcqueuelen) == (1400, True, True, -1, 10)
    c = options.parse(gen(parent="eth0", macvlan_mode="source", macaddr="02:00:00:00:00:01, 02:00:00:00:00:02"))
    assert c.macaddr == ["02:00:00:00:00:01", "02:00:00:00:00:02"]
    assert options.parse({options.GENERIC: {"parent": "eth0", options.DRIVER_MTU: "1280"}}).mtu == 1280


# -- driver calls that refuse before touching anything --------------------------------------------------
@pytest.fixture
def drv(tmp_path):
    return NetworkDriver(DriverConfig(state=str(tmp_path / "s.json")))


def call(d: NetworkDriver, method: str, req: dict) -> dict:
    return Plugin([d.part()]).dispatch(f"NetworkDriver.{method}", req)


def test_create_refusals_leave_nothing(drv, tmp_path):
    base = {"NetworkID": "n1", "IPv4Data": [{"Pool": "10.1.0.0/24", "Gateway": "10.1.0.1/24"}]}
    assert "unknown option" in call(drv, "CreateNetwork", dict(base, Options=gen(parent="eth0", x="1")))["Err"]
    assert call(drv, "CreateNetwork", {"NetworkID": "n1", "Options": gen(parent="eth0")})["Err"] == \
        "ipv4 pool is empty"
    assert "NetworkID missing" in call(drv, "CreateNetwork", {})["Err"]
    assert drv.state.networks == {} and not (tmp_path / "s.json").exists()


def test_endpoint_calls_on_unknown_things(drv):
    assert "not found" in call(drv, "CreateEndpoint", {"NetworkID": "n", "EndpointID": "e",
                                                       "Interface": {"Address": "10.1.0.2/24"}})["Err"]
    assert call(drv, "DeleteEndpoint", {"NetworkID": "n", "EndpointID": "e"}) == {}
    assert call(drv, "DeleteNetwork", {"NetworkID": "n"}) == {}
    assert call(drv, "GetCapabilities", {}) == {"Scope": "local", "ConnectivityScope": "local"}
    assert call(drv, "EndpointOperInfo", {"NetworkID": "n", "EndpointID": "e"}) == {"Value": {}}


def test_create_endpoint_mac_rules(drv):
    drv.state.networks["n"] = Network(config=options.parse(gen(parent="eth0")).as_dict(), gateway="10.1.0.1")
    r = call(drv, "CreateEndpoint", {"NetworkID": "n", "EndpointID": "e1", "Interface": {"Address": "10.1.0.2/24"}})
    assert r == {"Interface": {"MacAddress": "02:42:0a:01:00:02"}}  # the built-in driver's MAC from the IP
    r = call(drv, "CreateEndpoint", {"NetworkID": "n", "EndpointID": "e2",
                                     "Interface": {"Address": "10.1.0.3/24", "MacAddress": "02:00:00:00:00:11"}})
    assert r == {}  # Docker set it: the driver must not answer one
    assert drv.state.endpoints["e2"].mac == "02:00:00:00:00:11"
    assert "IP address" in call(drv, "CreateEndpoint", {"NetworkID": "n", "EndpointID": "e3",
                                                        "Interface": {}})["Err"]
    assert "e3" not in drv.state.endpoints


def test_mac_from_ip():
    assert mac_from_ip("192.168.1.10/24") == "02:42:c0:a8:01:0a"


def test_state_round_trip(tmp_path):
    st = State(str(tmp_path / "d" / "s.json"))
    st.networks["n"] = Network(config={"parent": "eth0"}, gateway="10.0.0.1", made=["eth0.5"])
    st.endpoints["e"] = Endpoint(network="n", address="10.0.0.2/24", mac="02:42:0a:00:00:02", link="pmvdx")
    st.save()
    back = State.load(st.path)
    assert back.networks["n"].made == ["eth0.5"] and back.endpoints["e"].link == "pmvdx"
    assert oct((tmp_path / "d" / "s.json").stat().st_mode & 0o777) == "0o600"


def test_pick_connecting():
    cs = [{"Names": ["/a"], "State": "running", "NetworkSettings": {"Networks": {"lan": {"EndpointID": ""}}}},
          {"Names": ["/b"], "State": "created", "NetworkSettings": {"Networks": {"lan": {"EndpointID": ""}}}},
          {"Names": ["/c"], "State": "exited", "NetworkSettings": {"Networks": {"lan": {"EndpointID": "x"}}}}]
    assert dockerapi.pick_connecting(cs, "lan", "10.0.0.2/24") == "b"
    cs.append({"Names": ["/d"], "State": "created", "NetworkSettings": {"Networks": {"lan": {
        "EndpointID": "", "IPAMConfig": {"IPv4Address": "10.0.0.9"}}}}})
    assert dockerapi.pick_connecting(cs, "lan", "10.0.0.2/24") == "b"  # d asked for another address
    assert dockerapi.pick_connecting(cs, "lan", "10.0.0.9/24") is None  # b or d: cannot tell


def test_unit_orders_before_docker():
    text = render("pmvx")
    assert "Before=docker.service" in text and "WantedBy=docker.service" in text
    assert "docker-plugin --name pmvx" in text


# -- HTTP ---------------------------------------------------------------------------------------------
@pytest.fixture
def server(tmp_path):
    def boom(_req):
        raise RuntimeError("kaputt")

    plugin = Plugin([Part("NetworkDriver", {"NetworkDriver.GetCapabilities": lambda r: {"Scope": "local"},
                                            "NetworkDriver.Boom": boom})])
    path = str(tmp_path / "p.sock")
    srv = Server(path, plugin)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield path
    srv.shutdown()
    srv.server_close()


def post(path: str, method: str, body: bytes | None) -> tuple[int, dict]:
    class C(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(path)

    c = C("localhost", timeout=10)
    c.request("POST", f"/{method}", body=body)
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"{}")


def test_http_protocol(server):
    assert post(server, "Plugin.Activate", b"{}") == (200, {"Implements": ["NetworkDriver"]})
    assert post(server, "NetworkDriver.GetCapabilities", b"") == (200, {"Scope": "local"})
    code, body = post(server, "NetworkDriver.Nope", b"{}")
    assert code == 404 and "not implemented" in body["Err"]
    code, body = post(server, "NetworkDriver.GetCapabilities", b"{not json")
    assert code == 400 and "not JSON" in body["Err"]
    assert post(server, "NetworkDriver.GetCapabilities", b"[1]")[0] == 400
    code, body = post(server, "NetworkDriver.Boom", b"{}")
    assert code == 200 and "internal error in NetworkDriver.Boom: RuntimeError: kaputt" in body["Err"]
    # garbage instead of HTTP: a 400, and the server still answers afterwards
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(server)
    s.sendall(b"\x00\x01garbage\r\n\r\n")
    assert b" 400 " in s.recv(4096).split(b"\r\n")[0] + b" "
    s.close()
    assert post(server, "Plugin.Activate", b"{}")[0] == 200
