"""bench/compare.py's report: medians over rounds, ratios to kernel macvlan and to VDE."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("pmv_bench_compare", ROOT / "bench" / "compare.py")
compare = importlib.util.module_from_spec(_spec)
sys.modules["pmv_bench_compare"] = compare  # dataclasses look their module up there
_spec.loader.exec_module(compare)


def _setup(name: str, **results: list[float]) -> compare.Setup:
    s = compare.Setup(name, "a", "b", "10.0.0.2")
    for k, v in results.items():
        for x in v:
            s.add(k, x)
    return s


def test_table_reports_medians_and_ratios() -> None:
    k = _setup("kernel-macvlan", tcp_gbit=[10, 20, 12], udp_kpps=[200, 100, 300], rtt_us=[30, 31, 90],
               cpu_s_per_gb=[1.0])
    v = _setup("vde", tcp_gbit=[1.5], udp_kpps=[100], rtt_us=[50], dp_cpu_pct=[99], cpu_s_per_gb=[8.0])
    u = _setup("pymacvlan", tcp_gbit=[9, 11, 30], udp_kpps=[130, 120, 10], rtt_us=[70, 80, 75],
               dp_cpu_pct=[80], cpu_s_per_gb=[2.0], udp_dp_user_pct=[50, 60], udp_dp_sys_pct=[30, 40],
               idle_dp_cpu_pct=[0.0, 0.1, 0.04])
    rows = {
        line.split(" | ")[0]: line.removesuffix(" |").split(" | ") for line in compare.table([k, v, u]).splitlines()[2:]
    }
    kr, ur, vr = rows["| " + compare.LABELS["kernel-macvlan"]], rows["| " + compare.LABELS["pymacvlan"]], \
        rows["| " + compare.LABELS["vde"]]
    assert kr[1:6] == ["12.00", "1.00x", "200", "1.00x", "2.00x"]
    # medians: TCP 11 / 12, kpps 120 / 200 and / 100 (VDE), RTT 75 - 31
    assert ur[1:8] == ["11.00", "0.92x", "120", "0.60x", "1.20x", "75", "+44"]
    assert ur[8:10] == ["80 / 90 / 0.0", "2.00x"]  # the datapath's CPU: TCP / 64 B (user + sys) / idle
    assert vr[8] == "99 / — / —" and kr[8] == "—"


def test_a_setup_without_samples_shows_dashes() -> None:
    k = _setup("kernel-macvlan", tcp_gbit=[10])
    u = _setup("pymacvlan")
    line = compare.table([k, u]).splitlines()[-1]
    assert line.count("—") == 9


def test_wire_rows_compare_with_kernel_macvlan_wire() -> None:
    k = _setup("kernel-macvlan", tcp_gbit=[20], udp_kpps=[200])
    kw = _setup("kernel-macvlan-wire", tcp_gbit=[10], udp_kpps=[100])
    f = _setup("pymacvlan-fast-wire", tcp_gbit=[10], udp_kpps=[50])
    c = _setup("pymacvlan-fast", tcp_gbit=[10], udp_kpps=[50])
    rows = {line.split(" | ")[0]: line.split(" | ") for line in compare.table([k, kw, f, c]).splitlines()[2:]}
    assert rows["| " + compare.LABELS["pymacvlan-fast-wire"]][2] == "1.00x"
    assert rows["| " + compare.LABELS["pymacvlan-fast-wire"]][4] == "0.50x"
    assert rows["| " + compare.LABELS["pymacvlan-fast"]][2] == "0.50x"
