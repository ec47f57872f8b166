"""`pymacvlan lab`: every shipped lab passes on the sim, and live on the kernel; a wrong
expectation is reported and exits 1; user mistakes get one line and exit 2."""

from __future__ import annotations

import json
import re

import pytest

from pymacvlan import labs
from pymacvlan.cli.main import main
from tests.conformance.conftest import require_live

LABS = labs.names()


def test_the_first_step_shown_is_step_1_and_setup_steps_take_no_number(capsys):
    """Issue 25: the first step a reader saw was numbered 7 (hidden setup steps kept theirs)."""
    main(["lab", "private-hairpin"])
    out = capsys.readouterr().out
    numbers = [int(m[1]) for m in re.finditer(r"^ *(\d+)\. ", out, re.M)]
    assert numbers == list(range(1, len(numbers) + 1)) and numbers
    assert "setup steps not shown" in out
    main(["lab", "private-hairpin", "-v"])
    shown = [int(m[1]) for m in re.finditer(r"^ *(\d+)\. ", capsys.readouterr().out, re.M)]
    assert shown == list(range(1, len(shown) + 1)) and len(shown) > len(numbers)


def test_no_lab_refers_to_texts_outside_the_repository():
    for n in LABS:
        assert "seed article" not in json.dumps(labs.raw(n)), n


def test_the_classic_experiments_are_shipped():
    assert {"vepa-hairpin", "vepa-plain", "private-hairpin", "bridge-lan"} <= set(LABS)
    for n in LABS:
        sc = labs.raw(n)
        assert sc["description"] and sc["note"]
        injects = [s for s in sc["steps"] if s["do"] == "inject"]
        assert injects and all("expect" in s and s.get("comment") for s in injects), n


@pytest.mark.parametrize("name", LABS)
def test_lab_passes_on_sim(name, capsys):
    assert main(["lab", name]) == 0
    out = capsys.readouterr().out
    assert f"lab {name} on the sim backend" in out
    assert "behaved as expected" in out and "DIFFERS" not in out
    assert "Takeaway:" in out


def test_private_lab_tells_what_happened(capsys):
    main(["lab", "private-hairpin"])
    out = capsys.readouterr().out
    # the ARP step: the sibling got nothing; the unicast step: it did
    arp, uni = out.split(" 1. ")[1].split(" 2. ")
    assert "macvl2 -" in arp and "macvl2 HOST" in uni


def test_a_wrong_expectation_exits_1(tmp_path, capsys):
    sc = labs.raw("private-hairpin")
    step = next(s for s in sc["steps"] if s["do"] == "inject")
    step["expect"]["observed"]["children"]["macvl2"] = [{"pkttype": "BROADCAST", "hex": step["frame"]}]
    p = tmp_path / "wrong.json"
    p.write_text(json.dumps(sc))
    assert main(["lab", str(p)]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS" in out and "1 of 4 checked steps differ" in out


def test_list_and_unknown(capsys):
    assert main(["lab", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(n in listed for n in LABS)
    assert main(["lab", "no-such-lab"]) == 2
    err = capsys.readouterr().err
    assert "no lab named 'no-such-lab'" in err and "private-hairpin" in err


@pytest.mark.live
@pytest.mark.parametrize("name", LABS)
def test_lab_passes_live_on_kernel(name, capsys):
    require_live()
    assert main(["lab", name, "--backend", "kernel"]) == 0, capsys.readouterr().out
    assert "on the kernel backend" in capsys.readouterr().out


@pytest.mark.live
def test_lab_on_userspace(capsys):
    """The backend is passed through to `replay --backend userspace`: the lab runs live."""
    require_live()
    assert main(["lab", "bridge-lan", "--backend", "userspace"]) == 0


# -- the keepalived lab (real processes, kernel backend) ---------------------------------------------
def test_keepalived_lab_is_listed_and_kernel_only(capsys):
    assert main(["lab", "--list"]) == 0
    assert "keepalived" in capsys.readouterr().out
    assert main(["lab", "keepalived", "--backend", "userspace"]) == 2
    err = capsys.readouterr().err
    assert "EINVAL" in err and "kernel backend only" in err


@pytest.mark.live
def test_keepalived_lab_live(capsys):
    """Debian's keepalived with use_vmac in namespaces: the VMAC child, the arp_announce pitfall and
    doctor's fix, two measured failovers and trace --verify alongside; every step checked (~25 s)."""
    require_live()
    from pymacvlan.labs import keepalived
    from tests.ci import skip_or_fail
    skip_or_fail(keepalived.unavailable())
    status = main(["lab", "keepalived"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "DIFFERS" not in out and "behaved as expected" in out
    assert "vrrp.51@lan0 macvlan mode private address 00:00:5e:00:01:33" in out
    assert "run: sysctl -w net.ipv4.conf.lan0.arp_announce=2" in out
    assert "10.77.0.100 lladdr 00:00:5e:00:01:33" in out
    assert "failover, longest time without a reply at the station: graceful" in out
