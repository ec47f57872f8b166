"""One answer to "is this CI?" for every live-test guard.

Under CI, a live test that cannot run fails instead of skipping, so a runner without root
cannot turn the live suite off unseen. `.ci/run` exports CI=true itself; other runners set
CI to "true", "1" or "yes", and every usual truthy spelling counts.
"""

from __future__ import annotations

import os

import pytest

TRUTHY = frozenset({"1", "true", "yes", "on", "y", "t"})


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in TRUTHY


def skip_or_fail(why: str | None) -> None:
    """Nothing when ``why`` is None; otherwise skip, or fail under CI."""
    if why is None:
        return
    if in_ci():
        pytest.fail(f"live test cannot run in CI: {why}")
    pytest.skip(why)


def live_marks(why: str | None) -> list:
    """``live`` plus a skip that holds only outside CI (under CI the test runs, and fails)."""
    return [pytest.mark.live,
            pytest.mark.skipif(why is not None and not in_ci(),
                               reason=f"{why}; under CI these tests run (and fail) instead of skipping")]
