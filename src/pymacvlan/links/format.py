"""iproute2's `ip link show` output, from the link dicts every driver's ``show()`` returns.

The dicts carry everything ``ip -j -d -s -s link show`` prints (iproute2's key names and
order); this module only chooses and lays out. Text is byte for byte what iproute2 6.1
prints, trailing spaces included; JSON is iproute2's with the same keys in the same order,
so ``-j`` output can be diffed against ``ip -j``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

#: keys ``ip -j link show`` prints without -d (the rest of a dict is -d or -s)
BASE_KEYS = ("ifindex", "link", "link_index", "ifname", "flags", "mtu", "qdisc", "master", "operstate",
             "linkmode", "group", "txqlen", "link_type", "address", "broadcast", "link_netnsid")
BRIEF_KEYS = ("link", "link_index", "ifname", "operstate", "address", "flags")
#: -d keys in print order: (json key, text label) -- None means "printed by its own rule"
DETAIL_KEYS = (("promiscuity", None), ("allmulti", None), ("min_mtu", "minmtu"), ("max_mtu", "maxmtu"),
               ("linkinfo", None), ("inet6_addr_gen_mode", "addrgenmode"),
               ("num_tx_queues", "numtxqueues"), ("num_rx_queues", "numrxqueues"),
               ("gso_max_size", "gso_max_size"), ("gso_max_segs", "gso_max_segs"),
               ("tso_max_size", "tso_max_size"), ("tso_max_segs", "tso_max_segs"),
               ("gro_max_size", "gro_max_size"), ("parentbus", "parentbus"), ("parentdev", "parentdev"))
#: stats64 keys of `-s`; `-s -s` adds the rest
RX_KEYS = ("bytes", "packets", "errors", "dropped", "over_errors", "multicast", "compressed", "otherhost_dropped")
TX_KEYS = ("bytes", "packets", "errors", "dropped", "carrier_errors", "collisions", "compressed")
RX_ERR_KEYS = ("length_errors", "crc_errors", "frame_errors", "fifo_errors", "missed_errors", "nohandler")
TX_ERR_KEYS = ("aborted_errors", "fifo_errors", "window_errors", "heartbeat_errors", "carrier_changes")
#: present only when non-zero, as iproute2 prints them
_IF_NONZERO = ("compressed", "otherhost_dropped", "nohandler")


@dataclass
class Options:
    """iproute2's global options that shape `link show` output."""

    json: bool = False
    pretty: bool = False
    details: bool = False
    stats: int = 0
    brief: bool = False


# -- JSON ---------------------------------------------------------------------------------------
def json_view(link: dict, opts: Options) -> dict:
    """The object ``ip [-d] [-s] -j link show`` prints for this link."""
    if opts.brief:
        return {k: link[k] for k in BRIEF_KEYS if k in link}
    out = {k: link[k] for k in BASE_KEYS if k in link}
    if link.get("endpoint"):  # not iproute2's: where a VM attaches to a macvtap
        out["endpoint"] = link["endpoint"]
    if opts.details:
        for k, _ in DETAIL_KEYS:
            if k in link:
                out[k] = link[k]
    if opts.stats and "stats64" in link:
        out["stats64"] = _stats_view(link["stats64"], opts.stats)
    return out


def _stats_view(st: dict, level: int) -> dict:
    rx_keys = RX_KEYS + (RX_ERR_KEYS if level > 1 else ())
    tx_keys = TX_KEYS + (TX_ERR_KEYS if level > 1 else ())

    def pick(d: dict, keys) -> dict:
        return {k: d[k] for k in keys if k in d and (k not in _IF_NONZERO or d[k])}

    return {"rx": pick(st.get("rx", {}), rx_keys), "tx": pick(st.get("tx", {}), tx_keys)}


def dump_json(objs: list, pretty: bool) -> str:
    """iproute2's JSON writer: compact, or its own pretty layout (``-j -p``)."""
    if not pretty:
        return json.dumps(objs, separators=(",", ":"))
    return _pretty(objs)


def _pretty(v) -> str:
    """json_writer.c with pretty on: a newline and 4 spaces per depth before each object
    key and object close; array items stay on the line (``[ {``, ``},{``, ``"a","b" ]``)."""
    out: list[str] = []
    depth = 0

    def eol() -> None:
        out.append("\n" + "    " * depth)

    def value(x, sep: bool) -> None:
        nonlocal depth
        if sep:
            out.append(",")
        if isinstance(x, dict):
            out.append("{")
            depth += 1
            for i, (k, y) in enumerate(x.items()):
                if i:
                    out.append(",")
                eol()
                out.append(json.dumps(k) + ": ")
                value(y, False)
            depth -= 1
            if x:
                eol()
            out.append("}")
        elif isinstance(x, list):
            out.append("[ ")
            depth += 1
            for i, y in enumerate(x):
                value(y, i > 0)
            depth -= 1
            out.append(" ]" if x else "]")
        else:
            out.append(json.dumps(x))

    value(v, False)
    return "".join(out)


# -- text ---------------------------------------------------------------------------------------
def _at(link: dict) -> str:
    if "link" in link:
        return f"@{link['link'] if link['link'] is not None else 'NONE'}"
    if "link_index" in link:
        return f"@if{link['link_index']}"
    return ""


def text_link(link: dict, opts: Options) -> str:
    """One link as ``ip [-d] [-s] link show`` prints it (lines joined with newlines)."""
    if opts.brief:
        return brief_line(link)
    head = f"{link['ifindex']}: {link['ifname']}{_at(link)}: <{','.join(link['flags'])}> mtu {link['mtu']}"
    if "qdisc" in link:
        head += f" qdisc {link['qdisc']}"
    if "master" in link:
        head += f" master {link['master']}"
    head += f" state {link['operstate']} mode {link['linkmode']} group {link['group']}"
    if "txqlen" in link:
        head += f" qlen {link['txqlen']}"
    line2 = f"    link/{link['link_type']} {link['address']} brd {link['broadcast']}"
    if "link_netns" in link:
        line2 += f" link-netns {link['link_netns']}"
    elif "link_netnsid" in link:
        line2 += f" link-netnsid {link['link_netnsid']}"
    if link.get("netns"):  # the userspace daemon's children live in several namespaces: say which
        line2 += f" netns {link['netns']}"
    lines = [head]
    if opts.details:
        line2 += f" promiscuity {link.get('promiscuity', 0)} "
        line2 += f" allmulti {link.get('allmulti', 0)} "
        for key, label in (("min_mtu", "minmtu"), ("max_mtu", "maxmtu")):
            if key in link:
                line2 += f"{label} {link[key]} "
        info = link.get("linkinfo")
        if info is not None:
            lines.append(line2)
            line2 = f"    {info['info_kind']} " + info_text(info.get("info_data") or {})
        for key, label in DETAIL_KEYS[5:]:
            if key in link:
                line2 += f"{label} {link[key]} "
    lines.append(line2)
    if opts.details and link.get("endpoint"):
        lines.append("    " + endpoint_text(link["endpoint"]))
    if opts.stats and "stats64" in link:
        lines += stats_lines(link["stats64"], opts.stats, link.get("stats64", {}).get("tx", {}).get("carrier_changes"))
    return "\n".join(lines)


def endpoint_text(ep: dict) -> str:
    """``endpoint stream /run/pymacvlan/vm0.sock connected owner 0 group 107 perm 0660``."""
    out = f"endpoint {ep['kind']} {ep['path']}"
    if "ifname" in ep:
        out += f" tap {ep['ifname']}"
    if "connected" in ep:
        out += " connected" if ep["connected"] else " no-client"
    for key in ("owner", "group", "perm"):
        if key in ep:
            out += f" {key} {ep[key]}"
    return out


def info_text(d: dict) -> str:
    """iplink_macvlan.c macvlan_print_opt() (with 6.4's bclim): each item then a space."""
    out = f"mode {d['mode']} " if "mode" in d else ""
    for flag in ("nopromisc", "nodst"):
        if d.get(flag):
            out += f"{flag} "
    for key in ("bcqueuelen", "usedbcqueuelen", "bclim"):
        if key in d:
            out += f"{key} {d[key]} "
    if d.get("mode") == "source" and "macaddr_count" in d:
        out += f"remotes ({d['macaddr_count']}) "
        out += "".join(f"{m} " for m in d.get("macaddr_data", []))
    return out


def brief_line(link: dict) -> str:
    name = f"{link['ifname']}{_at(link)}"
    where = f"netns {link['netns']} " if link.get("netns") else ""
    return f"{name:<16} {link['operstate']:<14} {link['address']} <{','.join(link['flags'])}> {where}"


def stats_lines(st: dict, level: int, carrier_changes=None) -> list[str]:
    """print_stats64() of iproute2 6.1: columns widen to the longest number."""
    rx, tx = st.get("rx", {}), st.get("tx", {})
    g = lambda d, k: d.get(k, 0)  # noqa: E731
    cols = [len("*X errors:"), len("packets"), len("errors"), len("dropped"), len("heartbt"),
            len("overrun"), len("compressed")]

    def size(*vals):
        for i, v in enumerate(vals):
            cols[i] = max(cols[i], len(str(v)))

    rx_row = [g(rx, "bytes"), g(rx, "packets"), g(rx, "errors"), g(rx, "dropped"), g(rx, "missed_errors"),
              g(rx, "multicast"), g(rx, "compressed")]
    tx_row = [g(tx, "bytes"), g(tx, "packets"), g(tx, "errors"), g(tx, "dropped"), g(tx, "carrier_errors"),
              g(tx, "collisions"), g(tx, "compressed")]
    rx_err = [0, g(rx, "length_errors"), g(rx, "crc_errors"), g(rx, "frame_errors"), g(rx, "fifo_errors"),
              g(rx, "over_errors"), g(rx, "nohandler")]
    tx_err = [0, 0, g(tx, "aborted_errors"), g(tx, "fifo_errors"), g(tx, "window_errors"),
              g(tx, "heartbeat_errors"), carrier_changes or 0]
    size(*rx_row)
    if level > 1:
        size(*rx_err)
    size(*tx_row)
    if level > 1:
        size(*tx_err)

    def nums(values, widths) -> str:
        return "".join(f"{v:>{w}} " for v, w in zip(values, widths, strict=False))

    out = []
    hdr = ("bytes", "packets", "errors", "dropped", "missed", "mcast", "compressed" if rx_row[6] else "")
    out.append("    RX: " + " ".join(f"{h:>{w}}" for h, w in zip(hdr, [cols[0] - 4] + cols[1:], strict=False)))
    out.append("    " + nums(rx_row[:6] + ([rx_row[6]] if rx_row[6] else []), cols))
    if level > 1:
        h = ("length", "crc", "frame", "fifo", "overrun") + (("nohandler",) if rx_err[6] else ())
        out.append(
            "    RX errors:"
            + f"{'':>{cols[0] - 10}}"
            + "".join(f" {x:>{w}}" for x, w in zip(h, cols[1:], strict=False))
        )
        out.append(" " * (cols[0] + 5) + nums(rx_err[1:6] + ([rx_err[6]] if rx_err[6] else []), cols[1:]))
    hdr = ("bytes", "packets", "errors", "dropped", "carrier", "collsns", "compressed" if tx_row[6] else "")
    out.append("    TX: " + " ".join(f"{h:>{w}}" for h, w in zip(hdr, [cols[0] - 4] + cols[1:], strict=False)))
    out.append("    " + nums(tx_row[:6] + ([tx_row[6]] if tx_row[6] else []), cols))
    if level > 1:
        h = ("aborted", "fifo", "window", "heartbt") + (("transns",) if carrier_changes is not None else ())
        out.append(
            "    TX errors:"
            + f"{'':>{cols[0] - 10}}"
            + "".join(f" {x:>{w}}" for x, w in zip(h, cols[1:], strict=False))
        )
        vals = tx_err[2:6] + ([carrier_changes] if carrier_changes is not None else [])
        out.append(" " * (cols[0] + 5) + nums(vals, cols[1:]))
    return out


def render(links: list[dict], opts: Options) -> str:
    """The whole output of `link show` for these links (empty string when there are none)."""
    if opts.json:
        return dump_json([json_view(link, opts) for link in links], opts.pretty)
    return "\n".join(text_link(link, opts) for link in links)
