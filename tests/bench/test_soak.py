"""bench/soak.py for one minute: churn, carrier flaps, namespaces deleted, traffic throughout;
RSS and fds flat after the warm-up, nothing left behind after `daemon stop --remove`.
(The ten-minute run and its figures: docs/explanation/daemon.md.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pymacvlan.netlab import live_unavailable
from tests.ci import live_marks

pytestmark = live_marks(live_unavailable())


def _soak():
    spec = importlib.util.spec_from_file_location("soak", Path(__file__).resolve().parents[2] / "bench" / "soak.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_one_minute_soak_is_flat_and_leaves_nothing() -> None:
    res = _soak().soak(1.0, sample_every=3.0)
    summary = {k: v for k, v in res.items() if k != "samples"}
    print(f"\nsoak: {summary}")
    assert res["churn"]["added"] >= 60 and res["churn"]["deleted"] >= 20 and res["churn"]["ns_deleted"] >= 3
    assert res["churn"]["carrier_flaps"] >= 10
    assert res["rss_growth"] <= 0.05 and res["fds_growth"] <= 0.05, res["samples"]
    assert res["left_behind"] == [] and res["stop"] == 0
    assert res["stream"]["error"] is None and res["stream"]["sent"] == res["stream"]["received"]
