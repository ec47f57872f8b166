"""Suite-wide guards, checked once around the whole session:

- live tests must leave no `pmv*` namespace or link behind, so a fixture that fails to clean up
  (even after a failing test) fails the run in CI instead of leaking into the next one;
- the root namespace must be exactly as it was (:mod:`tests.rootguard`: links, addresses,
  routes of every table, rules, qdiscs, tc filters on every hook of every device, the
  net.ipv4.conf.* / net.ipv6.conf.* sysctls; read-only). In CI a change fails the run; with
  PMV_SHARED_MACHINE=1 (several developers' suites at once) it is reported instead.
"""

from __future__ import annotations

import os
import subprocess

import pytest


class LeftoverCheckFailed(RuntimeError):
    """`ip` could not list namespaces or links: the leftover check cannot vouch for anything."""


def _ip(*args: str) -> str:
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        raise LeftoverCheckFailed(f"`ip {' '.join(args)}` could not run: {exc}") from exc
    if done.returncode != 0:
        raise LeftoverCheckFailed(f"`ip {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _leftovers() -> list[str]:
    """pmv namespaces and root-namespace links; raises LeftoverCheckFailed when `ip` fails."""
    out = [f"netns {line.split()[0]}" for line in _ip("netns", "list").splitlines() if line.startswith("pmv")]
    for line in _ip("-o", "link", "show").splitlines():
        name = line.split(": ", 2)[1].split("@")[0] if ": " in line else ""
        if name.startswith("pmv"):
            out.append(f"link {name}")
    return out


def pytest_sessionstart(session):
    session.config._pmv_before = set(_leftovers()) if os.geteuid() == 0 else set()


def pytest_sessionfinish(session, exitstatus):
    # PMV_SHARED_MACHINE=1: several developers' suites run at once on one machine, so names
    # appearing meanwhile may be someone else's. Never set in CI (.ci/run does not).
    if os.geteuid() != 0 or os.environ.get("PMV_SHARED_MACHINE") == "1":
        return
    try:
        left = sorted(set(_leftovers()) - session.config._pmv_before)
    except LeftoverCheckFailed as exc:
        print(f"\nERROR: the leftover check could not run: {exc}")
        session.exitstatus = 1
        return
    if left:
        print(f"\nERROR: the tests left network state behind: {', '.join(left)}")
        session.exitstatus = 1


@pytest.fixture(scope="session", autouse=True)
def root_namespace_untouched(request):
    """Snapshot the root namespace before the first test and compare after the last."""
    from tests import rootguard

    if os.geteuid() != 0 or os.environ.get("PMV_ROOT_GUARD") == "0":
        yield
        return
    try:
        before = rootguard.snapshot()
    except rootguard.GuardUnavailable as exc:
        pytest.fail(f"the root-namespace guard could not read the root namespace: {exc}")
    yield
    changed = rootguard.diff(before, rootguard.snapshot())
    if not changed:
        return
    text = "the root network namespace changed during the run:\n  " + "\n  ".join(changed[:50])
    if os.environ.get("PMV_SHARED_MACHINE") == "1":
        # others' suites share this machine: say it, do not fail (CI never sets it)
        print(f"\nWARNING (PMV_SHARED_MACHINE=1, not failing): {text}")
        request.config._pmv_root_changed = changed
        return
    pytest.fail(text, pytrace=False)
