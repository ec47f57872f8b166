"""Issue 13 item 6: every CLI message one line with the errno's name and a hint naming real
options, counts with their plural, and a simulated change saying once that the host was not touched."""

from __future__ import annotations

import argparse
import subprocess
import sys

from pymacvlan.cli._report import plural
from pymacvlan.cli.main import build_parser

NOTE = "note: simulated (state in {}); nothing on this host changed"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pymacvlan.cli.main", *args], capture_output=True, text=True,
                          timeout=60)


def test_plural_says_one_and_many():
    assert plural(0, "step") == "0 steps"
    assert plural(1, "step") == "1 step"
    assert plural(2, "change") == "2 changes"
    assert plural(1, "child", "children") == "1 child"
    assert plural(3, "child", "children") == "3 children"


def test_cni_install_unwritable_dir_is_one_line_with_the_errno_name():
    r = run("cni", "install", "--dir", "/proc/nope")
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr == ("pymacvlan cni install: ENOENT: /proc/nope: No such file or directory "
                        "(it cannot be created there; pick another --dir)\n")


def test_cni_install_refuses_a_foreign_file_with_eexist(tmp_path):
    (tmp_path / "macvlan").write_text("#!/bin/sh\n")
    r = run("cni", "install", "--dir", str(tmp_path), "--name", "macvlan")
    assert r.returncode == 1
    assert r.stderr == (f"pymacvlan cni install: EEXIST: {tmp_path}/macvlan exists and is not a pymacvlan-cni "
                        "launcher; pass --force to replace it\n")


def test_sim_link_changes_say_once_that_nothing_on_the_host_changed(tmp_path):
    st = str(tmp_path / "s.json")
    g = ["--backend", "sim", "--state", st]
    r = run(*g, "link", "add", "link", "eth0", "name", "m0", "type", "macvlan")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", NOTE.format(st) + "\n")
    r = run(*g, "-j", "link", "set", "m0", "up")  # -j: stdout stays clean (nothing, as ip prints)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", NOTE.format(st) + "\n")
    r = run(*g, "-j", "link", "show")  # no change: no note
    assert r.returncode == 0 and r.stderr == ""
    r = run(*g, "link", "del", "m0")
    assert (r.returncode, r.stderr) == (0, NOTE.format(st) + "\n")
    r = run(*g, "link", "del", "m0")  # refused: the kernel's words, no note
    assert r.returncode != 0 and "note:" not in r.stderr and "Traceback" not in r.stderr


def test_sim_apply_says_once_and_counts_in_words(tmp_path):
    st = str(tmp_path / "s.json")
    f = tmp_path / "one.toml"
    f.write_text('[parents.eth0]\n[parents.eth0.children.a]\nmac = "02:00:00:00:00:0a"\n')
    r = run("apply", "--dry-run", "--state", st, str(f))
    assert r.returncode == 0 and r.stderr == ""
    n = len([ln for ln in r.stdout.splitlines() if ln.startswith(("+", "~", "-"))])
    assert r.stdout.splitlines()[-1] == f"(dry run: {plural(n, 'change')} not made)"
    assert "(s)" not in r.stdout
    r = run("apply", "--state", st, str(f))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == f"{plural(n, 'change')} made (sim)"
    assert r.stderr == NOTE.format(st) + "\n"
    r = run("apply", "--state", st, str(f))  # nothing to change: nothing simulated either
    assert r.returncode == 0 and r.stderr == ""


def _walk(p: argparse.ArgumentParser, path: list[str]):
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            helps = {c.dest: c.help for c in a._choices_actions}
            for name, sub in a.choices.items():
                yield path + [name], "(the command)", helps.get(name)
                yield from _walk(sub, path + [name])
        else:
            yield path, "/".join(a.option_strings) or a.dest, a.help


def test_every_command_and_option_has_help_text():
    missing = [(" ".join(path), opt) for path, opt, text in _walk(build_parser(), [])
               if not text or text == argparse.SUPPRESS]
    assert missing == []


def test_no_message_in_src_says_item_s():
    """Counts are said with plural(): "1 step", "2 steps", never "step(s)"."""
    import re
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "pymacvlan"
    bad = [f"{p.relative_to(src)}:{i}" for p in src.rglob("*.py")
           for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\}\s*\w+\((s|es)\)", line)]
    assert bad == []


def test_show_of_a_missing_file_is_one_line_with_the_errno_name(tmp_path):
    f = tmp_path / "nope.toml"
    r = run("show", str(f), "--graph", str(tmp_path / "x.svg"))
    assert (r.returncode, r.stderr) == (2, f"pymacvlan show: ENOENT: {f}: No such file or directory\n")


def test_argparse_mistakes_are_one_line_naming_the_command():
    r = run("stats", "--bogus")
    assert (r.returncode, r.stderr) == (2, "pymacvlan stats: EINVAL: unrecognized arguments: --bogus "
                                           "(see `pymacvlan stats --help`)\n")
    r = run("cni", "install", "--dir")
    assert (r.returncode, r.stderr) == (2, "pymacvlan cni install: EINVAL: argument --dir: expected one argument "
                                           "(see `pymacvlan cni install --help`)\n")
    r = run("apply")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "usage:" not in r.stderr
    assert r.stderr.startswith("pymacvlan apply: EINVAL: the following arguments are required: file")


def test_a_kernel_error_is_prefixed_once(tmp_path):
    """`show` printed ``EINVAL: EINVAL: ...``: the errno name once, the same line for every command."""
    bad = tmp_path / "bad.json"
    bad.write_text("garbage")
    want = (f"EINVAL: cannot read the sim state {bad}: Expecting value: line 1 column 1 (char 0) "
            f"(remove it (rm {bad}) to start from nothing)\n")
    for cmd in (["show"], ["stats"], ["trace", "--dst", "ff:ff:ff:ff:ff:ff"]):
        r = run(cmd[0], "--backend", "sim", "--state", str(bad), *cmd[1:])
        assert (r.returncode != 0, r.stderr) == (True, f"pymacvlan {cmd[0]}: " + want), cmd


def test_global_option_refusal_and_daemon_hint_read_as_one_line(tmp_path):
    r = run("-j", "cni", "install", "--dir", str(tmp_path))
    assert (r.returncode, r.stderr) == (2, "pymacvlan cni: EINVAL: -j does not apply to this command\n")
    sock = tmp_path / "none.sock"
    r = run("daemon", "stop", "--socket", str(sock))
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert r.stderr == (f"pymacvlan daemon stop: ECONNREFUSED: no pymacvlan daemon is listening on {sock} "
                        "(start one as root with `pymacvlan daemon`, or point --socket / $PYMACVLAN_SOCKET "
                        "at the one running)\n")


def test_a_bad_file_names_its_errno(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("garbage")
    r = run("replay", str(bad))
    assert (r.returncode, r.stderr) == (2, f"pymacvlan replay: EINVAL: {bad}: not valid JSON: Expecting value "
                                           "at line 1 column 1\n")
    missing = tmp_path / "nope.json"
    r = run("replay", str(missing))
    assert (r.returncode, r.stderr) == (2, f"pymacvlan replay: ENOENT: {missing}: cannot read: "
                                           "No such file or directory\n")
    r = run("down", str(tmp_path / "nope.toml"))
    assert (r.returncode, r.stderr) == (2, f"pymacvlan down: ENOENT: {tmp_path / 'nope.toml'}: "
                                           "No such file or directory\n")


def test_sim_trace_refuses_a_child_that_does_not_exist(tmp_path):
    """`trace --child` on sim was ignored: a typo traced every device as if no filter was given."""
    st = str(tmp_path / "s.json")
    assert run("--backend", "sim", "--state", st, "link", "add", "link", "eth0", "name", "m0",
               "type", "macvlan").returncode == 0
    r = run("trace", "--backend", "sim", "--state", st, "--child", "nope", "--dst", "ff:ff:ff:ff:ff:ff")
    assert (r.returncode, r.stdout, r.stderr) == (
        1, "", 'pymacvlan trace: ENODEV: Cannot find device "nope" (--child takes a child of eth0: m0)\n')
    r = run("trace", "--backend", "sim", "--state", st, "--child", "m0", "--dst", "ff:ff:ff:ff:ff:ff")
    assert r.returncode == 0 and "m0" in r.stdout


def test_link_unknown_backend_is_one_line_with_einval():
    r = run("link", "--backend", "nope", "show")
    assert (r.returncode, r.stderr) == (2, "pymacvlan link: EINVAL: unknown backend 'nope' "
                                           "(--backend takes sim, kernel, userspace)\n")


# -- issue 25: rough edges a newcomer hit -----------------------------------------------------------
def test_an_option_after_the_object_gets_ips_words_and_where_it_goes(tmp_path):
    """`link show -d` said only `Device "-d" does not exist.`"""
    import os

    env = {**os.environ, "PMV_SIM_STATE": str(tmp_path / "sim.json")}
    for words in (["link", "show", "-d"], ["link", "show", "mac0", "-j"], ["link", "del", "-br"]):
        r = subprocess.run([sys.executable, "-m", "pymacvlan.cli.main", *words], capture_output=True, text=True,
                           timeout=60, env=env)
        opt = words[-1]
        assert r.returncode == 1, r
        assert r.stderr.splitlines()[0] == f'Device "{opt}" does not exist.'
        assert f"hint: {opt} is an option: options go before the object" in r.stderr
        assert f"pymacvlan {opt} link" in r.stderr


def test_stats_columns_stay_in_line_with_large_byte_counts():
    """Fixed widths let a 12-digit byte count push every later column out of line."""
    from pymacvlan.cli.stats import format_stats

    big = {"rx": {"packets": 98765432101, "bytes": 123456789012345, "dropped": 0, "errors": 0, "multicast": 7},
           "tx": {"packets": 5, "bytes": 99999999999999999, "dropped": 3}, "ifname": "eth0", "netns": "pmvdemoA"}
    small = {"rx": {"packets": 1, "bytes": 60}, "tx": {"packets": 1, "bytes": 60}, "ifname": "vm0"}
    text = format_stats({"backend": "userspace", "parents": {"pmvdp": {"children": {"a": big, "b": small}}}})
    head, row1, row2 = text.splitlines()[1:4]
    import re

    ends, pos = [], 0
    for title in ("rx pkts", "rx bytes", "dropped", "errors", "mcast", "tx pkts", "tx bytes", "dropped"):
        i = head.index(title, pos)
        ends.append(i + len(title))
        pos = ends[-1]
    for row in (row1, row2):
        assert [m.end() for m in re.finditer(r"\S+", row)][-8:] == ends, (head, row)
    assert "123456789012345" in row1 and "99999999999999999" in row1


def test_userspace_children_of_the_same_name_say_their_namespace():
    """`link show` on the userspace backend printed two identical `eth0@parent` lines."""
    from pymacvlan.links.format import Options, render

    def link(ns: str, idx: int) -> dict:
        return {"ifindex": idx, "ifname": "eth0", "link": "pmvdp", "flags": ["BROADCAST", "MULTICAST", "UP"],
                "mtu": 1500, "qdisc": "noqueue", "operstate": "UP", "linkmode": "DEFAULT", "group": "default",
                "txqlen": 1000, "link_type": "ether", "address": f"02:00:00:00:00:0{idx}",
                "broadcast": "ff:ff:ff:ff:ff:ff", "netns": ns}

    links = [link("pmvdemoA", 5), link("pmvdemoB", 6)]
    for opts in (Options(), Options(brief=True)):
        text = render(links, opts)
        assert "netns pmvdemoA" in text and "netns pmvdemoB" in text, text


def test_daemon_wait_gives_up_after_its_timeout_in_one_line_naming_the_socket(tmp_path):
    """`daemon wait` (what a guide runs after `pymacvlan daemon ... &`) is bounded and, like the
    other clients, finds the socket in $PYMACVLAN_SOCKET."""
    import os

    sock = str(tmp_path / "none.sock")
    r = subprocess.run([sys.executable, "-m", "pymacvlan.cli.main", "daemon", "wait", "--timeout", "0.3"],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "PYMACVLAN_SOCKET": sock})
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("pymacvlan daemon wait: ETIMEDOUT: 0.3 s and still: ECONNREFUSED") and sock in r.stderr


def test_version_is_printed():
    from pymacvlan import __version__

    r = run("--version")
    assert (r.returncode, r.stdout) == (0, f"pymacvlan {__version__}\n")


def test_vm_guest_build_prints_the_qemu_arguments(monkeypatch, capsys, tmp_path):
    """`pymacvlan vm-guest build`: the first guest for a VM on a macvtap port, in one command."""
    import shlex

    from pymacvlan.cli.main import main
    from pymacvlan.vm import guest

    built = guest.Guest(tmp_path / "vmlinuz", tmp_path / "initramfs.cpio.gz", "linux-image-test")
    monkeypatch.setattr(guest, "build", lambda cache=None: built)
    assert main(["vm-guest", "build", "--args", "--script", "pmv_ping station 10.0.0.1"]) == 0
    argv = shlex.split(capsys.readouterr().out)
    assert argv[:4] == ["-kernel", str(built.kernel), "-initrd", str(built.initrd)] and argv[4] == "-append"
    assert argv[5] == guest.cmdline("pmv_ping station 10.0.0.1")

    def fail(cache=None):
        raise RuntimeError("apt-cache knows no linux-image-amd64 dependency: run `apt-get update`")

    monkeypatch.setattr(guest, "build", fail)
    assert main(["vm-guest", "build"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("pymacvlan vm-guest build: RuntimeError: ")
