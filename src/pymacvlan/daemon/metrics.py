"""Prometheus metrics of the daemon (`pymacvlan daemon --metrics HOST:PORT`).

A custom collector: nothing is counted for Prometheus on the datapath; each scrape reads
the same counters `pymacvlan stats` shows (:meth:`Daemon.stats`, which asks each datapath
on its own loop thread). Per-child counters carry the names of the kernel's stats64 as
`pymacvlan stats --backend kernel` prints them (``rx_packets``, ``rx_bytes``, ``rx_errors``,
``rx_dropped``, ``rx_multicast``, ``tx_packets``, ``tx_bytes``, ``tx_dropped``), so one
dashboard serves both.

Metrics (all labelled ``parent``; per child also ``child``, ``ifname``, ``mode``, ``kind``):

- ``pymacvlan_child_{rx,tx}_<counter>_total``, ``pymacvlan_child_up``;
- ``pymacvlan_drops_total{where, reason}``: ``where`` = ``engine`` (macvlan's own drops),
  ``parent_socket`` (the parent's AF_PACKET socket), ``lower`` (the parent's rx_dropped);
- ``pymacvlan_datapath_events_total{event}``: the datapath's counters (runts, resyncs...);
- ``pymacvlan_parent_socket_{rx_frames,tx_frames,kernel_drops}_total``;
- ``pymacvlan_path_fast`` (1: the eBPF fast path carries known unicast, 0: Python only) and
  ``pymacvlan_path_fast_children``;
- ``pymacvlan_endpoint_queued``, ``pymacvlan_endpoint_connected``,
  ``pymacvlan_endpoint_events_total{event}``: macvtap endpoints (VM sockets) and their queues;
- ``pymacvlan_daemon_events_total{event}``, ``pymacvlan_trace_subscribers``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..model import KernelError

log = logging.getLogger("pymacvlan.daemon")

CHILD = ["parent", "child", "ifname", "mode", "kind"]
#: stats64 as `stats --backend kernel` reads it: direction → counters
STATS64 = {"rx": ("packets", "bytes", "errors", "dropped", "multicast"), "tx": ("packets", "bytes", "dropped")}


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) → (host, port), or EINVAL with what to give."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
        number = int(port)
        if not sep or not 0 < number < 65536:
            raise ValueError
    except ValueError:
        raise KernelError("EINVAL", f"--metrics {text!r} is not HOST:PORT",
                          "give an address and a port, like 127.0.0.1:9466 or [::1]:9466") from None
    return host, number


class DaemonCollector:
    """Reads the daemon's counters at scrape time (see the module docstring)."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        d = self.daemon
        with d._lock:
            report = d.stats()
        child_counters = {f"{way}_{c}": CounterMetricFamily(f"pymacvlan_child_{way}_{c}",
                                                              f"the child's {way}_{c} (stats64)", labels=CHILD)
                          for way, names in STATS64.items() for c in names}
        up = GaugeMetricFamily("pymacvlan_child_up", "1 while the child is up", labels=CHILD)
        drops = CounterMetricFamily("pymacvlan_drops_total", "frames dropped, by where and why",
                                    labels=["parent", "where", "reason"])
        events = CounterMetricFamily("pymacvlan_datapath_events", "the datapath's counters", labels=["parent", "event"])
        sock = {k: CounterMetricFamily(f"pymacvlan_parent_socket_{k}", f"the parent socket's {k}", labels=["parent"])
                for k in ("rx_frames", "tx_frames", "kernel_drops")}
        fast = GaugeMetricFamily("pymacvlan_path_fast", "1: the eBPF fast path carries known unicast; 0: Python only",
                                 labels=["parent"])
        fast_children = GaugeMetricFamily("pymacvlan_path_fast_children", "children on the fast path",
                                          labels=["parent"])
        ep_labels = ["parent", "child", "endpoint"]
        ep_queued = GaugeMetricFamily("pymacvlan_endpoint_queued", "frames waiting for the VM", labels=ep_labels)
        ep_connected = GaugeMetricFamily("pymacvlan_endpoint_connected", "1 while a VM is connected", labels=ep_labels)
        ep_events = CounterMetricFamily("pymacvlan_endpoint_events", "the endpoint's counters",
                                        labels=[*ep_labels, "event"])
        for pname, st in report["parents"].items():
            for key, c in st["children"].items():
                labels = [pname, key, c.get("ifname") or key, c.get("mode", ""), c.get("kind") or "macvlan"]
                for way, names in STATS64.items():
                    for name in names:
                        child_counters[f"{way}_{name}"].add_metric(labels, c[way][name])
                up.add_metric(labels, 1 if c.get("up") else 0)
                ep = c.get("endpoint")
                if ep:
                    ep_l = [pname, key, ep.get("kind", "")]
                    ep_queued.add_metric(ep_l, ep.get("queued", 0))
                    ep_connected.add_metric(ep_l, 1 if ep.get("connected") else 0)
                    for event, n in sorted(ep.get("counters", {}).items()):
                        ep_events.add_metric([*ep_l, event], n)
            for reason, n in sorted(st.get("engine_drops", {}).items()):
                drops.add_metric([pname, "engine", reason], n)
            lower = st.get("lower") or {}
            if "rx_dropped" in lower:
                drops.add_metric([pname, "lower", "rx_dropped"], lower["rx_dropped"])
            parent = st.get("parent") or {}
            for reason, n in sorted((parent.get("drops") or {}).items()):
                drops.add_metric([pname, "parent_socket", reason], n)
            for k, fam in sock.items():
                if k in parent:
                    fam.add_metric([pname], parent[k])
            for event, n in sorted(st.get("datapath", {}).items()):
                events.add_metric([pname, event], n)
            path = st.get("path") or {}
            fast.add_metric([pname], 1 if path.get("active") == "fast" else 0)
            fast_children.add_metric([pname], len(path.get("fast_children", ())))
        daemon_events = CounterMetricFamily("pymacvlan_daemon_events", "the daemon's own counters", labels=["event"])
        subs = GaugeMetricFamily("pymacvlan_trace_subscribers", "clients running `pymacvlan trace`")
        for event, n in sorted(report["daemon"].items()):
            if event == "trace_subscribers":
                subs.add_metric([], n)
            else:
                daemon_events.add_metric([event], n)
        yield from child_counters.values()
        yield from (up, drops, events, *sock.values(), fast, fast_children, ep_queued, ep_connected, ep_events,
                    daemon_events, subs)


class MetricsServer:
    """The HTTP endpoint (prometheus_client's, on its own thread); :meth:`close` ends it."""

    def __init__(self, daemon: Any, listen: str) -> None:
        host, port = parse_listen(listen)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DaemonCollector(daemon))
        try:
            self.server, self.thread = start_http_server(port, host, registry=self.registry)
        except OSError as e:
            name = {98: "EADDRINUSE", 99: "EADDRNOTAVAIL", 13: "EACCES"}.get(e.errno or 0, "EIO")
            raise KernelError(name, f"cannot serve metrics on {listen}: {e.strerror}",
                              "pick a free port on an address of this host for --metrics") from None
        log.info("metrics on http://%s/metrics", listen)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
