"""Hostile input to pymacvlan-cni (issue 19, item 3): every parse error is the spec's JSON
(code 6 or 7) with exit 1, never a traceback; ``ipam.type`` is a plain name on every command;
stdin is bounded. In-process through skel.run (no namespace is touched: each case fails before
anything is made). The generated fuzz (tools/cni_fuzz.py) runs live in test_fuzz.py."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest

from pymacvlan.cni import skel


def _run(command: str, stdin: bytes, **env: str) -> tuple[int, dict | None, str]:
    e = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_NETNS": "/nonexistent", "CNI_IFNAME": "eth0",
         "CNI_PATH": "/nonexistent"}
    e.update(env)
    out, err = io.StringIO(), io.StringIO()
    rc = skel.run(e, stdin, out, err)
    return rc, (json.loads(out.getvalue()) if out.getvalue() else None), err.getvalue()


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "STATUS", "GC"])
@pytest.mark.parametrize("stdin", [b"[" * 100_000 + b"]" * 100_000,
                                   b'{"name": "n", "ipam": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
                                   b'{"name": "n"}' + b" " * (1 << 20)],
                         ids=["deep", "deep-inside", "over-1MiB"])
def test_deep_or_huge_stdin_is_code_6(command: str, stdin: bytes) -> None:
    rc, obj, err = _run(command, stdin)
    assert rc == 1 and obj is not None and obj["code"] == 6, (obj, err)
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "STATUS", "GC"])
@pytest.mark.parametrize("ipam_type", ["/bin/sh", "../../bin/sh", "sub/dir", "..", ".", "a b", "x\u0000y"])
def test_ipam_type_must_be_a_plain_name_on_every_command(command: str, ipam_type: str, tmp_path) -> None:
    canary = tmp_path / "ran"
    script = tmp_path / "sh"
    script.write_text(f"#!/bin/sh\ntouch {canary}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    conf = {"cniVersion": "1.1.0", "name": "n", "type": "pymacvlan-cni", "master": "pmvM",
            "ipam": {"type": ipam_type.replace("/bin/sh", str(script))}, "stateDir": str(tmp_path / "st")}
    rc, obj, err = _run(command, json.dumps(conf).encode(), CNI_PATH=str(tmp_path))
    assert rc == 1 and obj is not None and obj["code"] == 7 and "ipam.type" in obj["msg"], (obj, err)
    assert not canary.exists()
    assert not os.path.exists(tmp_path / "st")


def test_the_console_script_reads_at_most_1_mib_and_a_bit(monkeypatch) -> None:
    class Stdin:
        asked: list[int] = []

        class buffer:  # noqa: N801
            @staticmethod
            def read(n: int = -1) -> bytes:
                Stdin.asked.append(n)
                return b"{" * (n if n > 0 else 1 << 22)

    monkeypatch.setattr("sys.stdin", Stdin)
    monkeypatch.setenv("CNI_COMMAND", "DEL")
    for k in ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"):
        monkeypatch.setenv(k, "x")
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    assert skel.main() == 1
    assert Stdin.asked == [skel.MAX_STDIN + 1]
    assert json.loads(out.getvalue())["code"] == 6
