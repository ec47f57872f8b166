"""Suite-wide guard: live tests must leave no `pmv*` namespace or link behind.

Checked once, after the whole session, so a fixture that fails to clean up (even after a
failing test) fails the run in CI instead of leaking into the next one.
"""

from __future__ import annotations

import os
import subprocess


def _leftovers() -> list[str]:
    out = []
    try:
        ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
        out += [f"netns {line.split()[0]}" for line in ns.splitlines() if line.startswith("pmv")]
        links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=10).stdout
        for line in links.splitlines():
            name = line.split(": ", 2)[1].split("@")[0] if ": " in line else ""
            if name.startswith("pmv"):
                out.append(f"link {name}")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def pytest_sessionstart(session):
    session.config._pmv_before = set(_leftovers()) if os.geteuid() == 0 else set()


def pytest_sessionfinish(session, exitstatus):
    # PMV_SHARED_MACHINE=1: several developers' suites run at once on one machine, so names
    # appearing meanwhile may be someone else's. Never set in CI (.ci/run does not).
    if os.geteuid() != 0 or os.environ.get("PMV_SHARED_MACHINE") == "1":
        return
    left = sorted(set(_leftovers()) - session.config._pmv_before)
    if left:
        print(f"\nERROR: the tests left network state behind: {', '.join(left)}")
        session.exitstatus = 1
