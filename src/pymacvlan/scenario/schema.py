"""Reading and validating a scenario (docs/scenario-format.md).

A scenario is refused before anything runs, with a message naming the step and the key.
The loader returns a normalized copy: MACs lowercase, frames lowercase hex, defaults filled.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

from ..model import FLAG_NAMES, MODES, MacaddrMode, flags_from_names, mac_str, mode_from_name, parse_mac
from ..model.link import LinkChange, LinkRequest

TOP_KEYS = {"parent", "wire", "steps", "description", "kernel_rules", "seed", "note",
            "nondeterministic", "name"}
PARENT_KEYS = {"mac", "mtu", "unicast_filter"}
COMMON = {"do", "expect", "comment"}
STEP_KEYS = {
    "add": {"name", "type", "mode", "mac", "mtu", "flags", "macaddr", "bcqueuelen", "bclim"},
    "set": {"name", "up", "mac", "mode", "mtu", "flags", "allmulticast", "promisc", "bcqueuelen",
            "bclim", "macaddr", "reader"},
    "join": {"name", "group"},
    "leave": {"name", "group"},
    "parent": {"up", "carrier", "mtu", "mac"},
    "del": {"name"},
    "inject": {"at", "frame"},
    "show": set(),
}
REQUIRED = {"add": {"name"}, "set": {"name"}, "join": {"name", "group"}, "leave": {"name", "group"},
            "del": {"name"}, "inject": {"at", "frame"}}
KERNEL_RULES = ("6.18", "net-next")


class ScenarioError(ValueError):
    """A scenario that cannot be run; the message names the step and the key. ``errno_name``:
    EINVAL for what is in the file, the OS's for a file that cannot be read."""

    errno_name = "EINVAL"


def load_scenario(source) -> dict:
    """Load from a path, a JSON string or a dict, validate, and normalize."""
    if isinstance(source, dict):
        data = source
        where = "scenario"
    else:
        path = Path(source)
        where = str(path)
        try:
            text = path.read_text()
        except OSError as e:
            err = ScenarioError(f"{where}: cannot read: {e.strerror}")
            err.errno_name = errno.errorcode.get(e.errno or 0, "EIO")
            raise err from None
        except UnicodeDecodeError as e:
            raise ScenarioError(f"{where}: not UTF-8 text (byte {e.start}: {e.reason})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ScenarioError(f"{where}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
        except RecursionError:
            raise ScenarioError(f"{where}: nested too deeply to be a scenario") from None
    try:
        return validate(data, where)
    except RecursionError:
        raise ScenarioError(f"{where}: nested too deeply to be a scenario") from None


def _int(v, where: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ScenarioError(f"{where}: expected an integer, got {json.dumps(v)}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ScenarioError(f"{where}: {v} is out of range {lo}..{hi}")
    return v


def _bool(v, where: str) -> bool:
    if not isinstance(v, bool):
        raise ScenarioError(f"{where}: expected true or false, got {json.dumps(v)}")
    return v


def _mac(v, where: str) -> str:
    try:
        return mac_str(parse_mac(v))
    except ValueError as e:
        raise ScenarioError(f"{where}: {e}") from None


def _flags(v, where: str) -> list[str]:
    if not isinstance(v, list):
        raise ScenarioError(f"{where}: expected a list of flag names (nopromisc, nodst)")
    for f in v:
        if f not in FLAG_NAMES:
            raise ScenarioError(f"{where}: unknown flag {json.dumps(f)}; expected nopromisc or nodst")
    return list(v)


def _mode(v, where: str) -> str:
    if v not in MODES:
        raise ScenarioError(f"{where}: unknown mode {json.dumps(v)}; expected one of {', '.join(MODES)}")
    return v


def _frame(v, where: str) -> str:
    if not isinstance(v, str):
        raise ScenarioError(f"{where}: expected the frame as a hex string")
    text = v.replace(" ", "").replace(":", "").lower()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ScenarioError(f"{where}: not a hex string") from None
    if len(raw) < 14:
        raise ScenarioError(f"{where}: {len(raw)} bytes is shorter than an Ethernet header (14 bytes)")
    return raw.hex()


def validate(data, where: str = "scenario") -> dict:
    if not isinstance(data, dict):
        raise ScenarioError(f"{where}: a scenario is a JSON object with parent, wire and steps")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key {json.dumps(sorted(unknown)[0])} (known: {', '.join(sorted(TOP_KEYS))})"
        )
    out: dict = {k: data[k] for k in ("description", "note", "nondeterministic", "name") if k in data}
    parent = data.get("parent", {})
    if not isinstance(parent, dict):
        raise ScenarioError(f"{where}: key parent: expected an object")
    bad = set(parent) - PARENT_KEYS
    if bad:
        raise ScenarioError(f"{where}: key parent.{sorted(bad)[0]}: unknown (known: mac, mtu, unicast_filter)")
    out["parent"] = {
        "mac": _mac(parent["mac"], f"{where}: key parent.mac") if "mac" in parent else None,
        "mtu": _int(parent.get("mtu", 1500), f"{where}: key parent.mtu", 68, 65535),
        "unicast_filter": _bool(parent.get("unicast_filter", False), f"{where}: key parent.unicast_filter"),
    }
    wire = data.get("wire", "plain")
    if wire not in ("plain", "hairpin"):
        raise ScenarioError(f"{where}: key wire: expected \"plain\" or \"hairpin\", got {json.dumps(wire)}")
    out["wire"] = wire
    rules = data.get("kernel_rules", "6.18")
    if rules not in KERNEL_RULES:
        raise ScenarioError(f"{where}: key kernel_rules: expected one of {', '.join(KERNEL_RULES)}")
    out["kernel_rules"] = rules
    out["seed"] = _int(data.get("seed", 0), f"{where}: key seed")
    steps = data.get("steps")
    if not isinstance(steps, list):
        raise ScenarioError(f"{where}: key steps: expected a list of steps")
    known: set[str] = set()
    out["steps"] = [_step(s, i, where, known) for i, s in enumerate(steps, 1)]
    return out


def _step(s, i: int, where: str, known: set[str]) -> dict:
    w = f"{where}: step {i}"
    if not isinstance(s, dict):
        raise ScenarioError(f"{w}: expected an object with a \"do\" key")
    do = s.get("do")
    if do not in STEP_KEYS:
        raise ScenarioError(f"{w}: key do: unknown step {json.dumps(do)}; expected one of {', '.join(STEP_KEYS)}")
    w = f"{w} ({do})"
    unknown = set(s) - STEP_KEYS[do] - COMMON
    if unknown:
        raise ScenarioError(
            f"{w}: unknown key {json.dumps(sorted(unknown)[0])} (known: {', '.join(sorted(STEP_KEYS[do])) or 'none'})"
        )
    missing = REQUIRED.get(do, set()) - set(s)
    if missing:
        raise ScenarioError(f"{w}: missing key {json.dumps(sorted(missing)[0])}")
    st: dict = {"do": do}
    if "expect" in s:
        st["expect"] = s["expect"]
    for key, val in s.items():
        k = f"{w}: key {key}"
        if key in ("do", "expect", "comment"):
            continue
        if key == "name":
            if not isinstance(val, str) or not val:
                raise ScenarioError(f"{k}: expected a non-empty string")
            if do == "del" and val == "@parent":
                pass
            elif do == "add":
                if val.startswith("@"):
                    raise ScenarioError(f"{k}: names starting with @ are reserved")
                known.add(val)
            elif val not in known:
                raise ScenarioError(f"{k}: unknown child {json.dumps(val)} (no earlier add step creates it)")
            st[key] = val
        elif key == "type":
            if val not in ("macvlan", "macvtap"):
                raise ScenarioError(f"{k}: expected macvlan or macvtap")
            st[key] = val
        elif key == "mode":
            st[key] = _mode(val, k)
        elif key in ("mac", "group"):
            st[key] = _mac(val, k)
        elif key == "mtu":
            st[key] = _int(val, k, 0, 1 << 31)
        elif key == "flags":
            st[key] = _flags(val, k)
        elif key in ("up", "allmulticast", "promisc", "carrier", "reader"):
            st[key] = _bool(val, k)
        elif key == "bcqueuelen":
            st[key] = _int(val, k, 0, 2 ** 32 - 1)
        elif key == "bclim":
            st[key] = _int(val, k, -(2 ** 31), 2 ** 31 - 1)
        elif key == "macaddr":
            st[key] = _macaddr(val, k, do)
        elif key == "at":
            if not isinstance(val, str) or not (val in ("wire", "parent") or val.startswith("child:")):
                raise ScenarioError(f"{k}: expected \"wire\", \"parent\" or \"child:NAME\"")
            if val.startswith("child:") and val[6:] not in known:
                raise ScenarioError(f"{k}: unknown child {json.dumps(val[6:])} (no earlier add step creates it)")
            st[key] = val
        elif key == "frame":
            st[key] = _frame(val, k)
    if do == "add":
        st.setdefault("type", "macvlan")
    return st


def _macaddr(val, k: str, do: str):
    if do == "add":
        if not isinstance(val, list):
            raise ScenarioError(f"{k}: expected a list of MAC addresses")
        return [_mac(m, k) for m in val]
    if not isinstance(val, dict) or val.get("op") not in ("add", "del", "set", "flush"):
        raise ScenarioError(f"{k}: expected {{\"op\": \"add\"|\"del\"|\"set\"|\"flush\", \"macs\": [...]}}")
    macs = val.get("macs", [])
    if not isinstance(macs, list):
        raise ScenarioError(f"{k}.macs: expected a list of MAC addresses")
    if val["op"] in ("add", "del") and not macs:
        raise ScenarioError(f"{k}.macs: macaddr {val['op']} needs at least one address")
    return {"op": val["op"], "macs": [_mac(m, f"{k}.macs") for m in macs]}


def step_request(st: dict, parent: str = "parent") -> LinkRequest:
    """A validated ``add`` step as the `ip link add` request it stands for (the scenario's one
    translation into the request every backend takes)."""
    return LinkRequest(
        parent=parent, name=st["name"], kind=st.get("type", "macvlan"),
        mode=mode_from_name(st["mode"]) if "mode" in st else None,
        flags=flags_from_names(st.get("flags", [])), address=parse_mac(st["mac"]) if "mac" in st else None,
        mtu=st.get("mtu"), macaddr_mode=MacaddrMode.SET if "macaddr" in st else None,
        macaddrs=[parse_mac(m) for m in st.get("macaddr", [])], bcqueuelen=st.get("bcqueuelen"),
        bclim=st.get("bclim"))


def step_change(st: dict) -> LinkChange:
    """A validated ``set`` step as the `ip link set` request it stands for (``reader`` is not
    part of it: it is the macvtap's reader opening or closing /dev/tapN)."""
    op = st.get("macaddr")
    return LinkChange(
        up=st.get("up"), address=parse_mac(st["mac"]) if "mac" in st else None, mtu=st.get("mtu"),
        mode=mode_from_name(st["mode"]) if "mode" in st else None,
        flags=flags_from_names(st["flags"]) if "flags" in st else None,
        macaddr_mode=MacaddrMode[op["op"].upper()] if op else None,
        macaddrs=[parse_mac(m) for m in op.get("macs", [])] if op and op["op"] != "flush" else [],
        bcqueuelen=st.get("bcqueuelen"), bclim=st.get("bclim"),
        allmulticast=st.get("allmulticast"), promisc=st.get("promisc"))
