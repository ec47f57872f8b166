"""The CI guard: usual truthy spellings count, anything else does not."""

import pytest

from tests.ci import in_ci, skip_or_fail


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "Yes", " true "])
def test_truthy_values_mean_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert in_ci()
    with pytest.raises(pytest.fail.Exception, match="cannot run in CI: no root"):
        skip_or_fail("no root")


@pytest.mark.parametrize("value", ["", "false", "0", "no"])
def test_other_values_do_not(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert not in_ci()
    with pytest.raises(pytest.skip.Exception):
        skip_or_fail("no root")


def test_unset_is_not_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert not in_ci()
    skip_or_fail(None)  # nothing to say: runs


def test_the_leftover_check_fails_loudly_when_ip_fails(monkeypatch):
    import subprocess

    from tests import conftest

    def broken(argv, **kw):
        return subprocess.CompletedProcess(argv, 255, "", "Object \"netns\" is unknown")

    monkeypatch.setattr(conftest.subprocess, "run", broken)
    with pytest.raises(conftest.LeftoverCheckFailed, match="ip netns list.*255"):
        conftest._leftovers()
