"""Issue 18 item 1: one registry of backends, each driver a complete ops table (every verb
implemented, or refused with one EOPNOTSUPP line naming the backend)."""

from __future__ import annotations

import importlib

import pytest

from pymacvlan.links import BACKENDS, REGISTRY, BaseDriver, DriverConfig, open_driver
from pymacvlan.model import KernelError

VERBS = ["add", "add_parent", "set", "delete", "show", "stats", "trace", "host_access", "probe", "topology",
         "events", "notice"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_fills_the_ops_table(backend: str) -> None:
    cls = importlib.import_module(f"pymacvlan.links.{backend}").Driver
    assert issubclass(cls, BaseDriver) and cls.backend == backend
    for verb in VERBS:
        assert callable(getattr(cls, verb)), verb
    assert cls.host_stack == REGISTRY[backend].host_stack


def test_a_verb_a_backend_cannot_do_is_one_eopnotsupp_line_naming_it(tmp_path) -> None:
    sim = open_driver(DriverConfig("sim", state=str(tmp_path / "s.json")))
    for call in (lambda: sim.host_access("m0", "eth0", []), lambda: sim.events()):
        with pytest.raises(KernelError) as e:
            call()
        assert e.value.errno_name == "EOPNOTSUPP" and "the sim backend has no" in str(e.value)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("cfg, word", [(DriverConfig("kernel", state="/x"), "--state"),
                                       (DriverConfig("sim", socket="/x"), "--socket"),
                                       (DriverConfig("userspace", scenario="/x"), "--scenario"),
                                       (DriverConfig("ebpf"), "unknown backend")])
def test_an_option_the_backend_does_not_take_is_einval(cfg: DriverConfig, word: str) -> None:
    with pytest.raises(KernelError) as e:
        open_driver(cfg)
    assert e.value.errno_name == "EINVAL" and word in str(e.value)
