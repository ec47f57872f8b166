"""`pymacvlan apply FILE.toml` and `pymacvlan down FILE.toml`: declarative parents and children.

Both print their plan (``+ add``, ``~ set``, ``- del``) before doing it; ``--dry-run`` stops
there. Applying twice changes nothing the second time ("nothing to change").
"""

from __future__ import annotations

import dataclasses
import sys

from ..links import BACKENDS, DEFAULT_BACKEND
from ..links.config import ConfigError, Step, load, plan_apply, plan_down
from ..model import KernelError
from ._report import error_line, plural
from .link import Globals, UsageError, kernel_error_lines, make_driver

ORDER = 21


class BackendMismatch(Exception):
    """The file names a backend the command line did not choose."""


def _globals(args, setup) -> Globals:
    """The backend is the command line's (default sim): a file's ``backend`` never switches it
    (a TOML could otherwise move ``apply`` onto the host's kernel with no flag); it is applied
    only when it says the same, else refused with a hint."""
    g = Globals()
    g.backend = args.backend or getattr(args, "pmv_backend", None) or DEFAULT_BACKEND
    if setup.backend is not None and setup.backend != g.backend:
        raise BackendMismatch(f"pymacvlan apply: EINVAL: {setup.path} is for the {setup.backend} backend, "
                              f"and this command runs on {g.backend}\n"
                              f"hint: say --backend {setup.backend} to apply it there "
                              "(or drop `backend` from the file)")
    g.netns = args.netns or getattr(args, "pmv_netns", None) or setup.netns
    g.state = args.state or getattr(args, "pmv_state", None)
    g.socket = args.socket or getattr(args, "pmv_socket", None)
    return g


def _run(args, down: bool) -> int:
    try:
        setup = load(args.file)
    except ConfigError as e:
        print(error_line("down" if down else "apply", e), file=sys.stderr)
        return 2
    try:
        g = _globals(args, setup)
    except BackendMismatch as e:
        print(str(e).replace("apply:", "down:", 1) if down else str(e), file=sys.stderr)
        return 2
    try:
        driver = make_driver(g)
        steps = plan_down(setup, driver, remove_parents=driver.owns_parents) if down else \
            plan_apply(setup, driver, prune=args.prune)
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return e.code
    except KernelError as e:
        print("\n".join(kernel_error_lines(e, "")[0]), file=sys.stderr)
        return 2
    except PermissionError as e:
        print(
            f"pymacvlan {'down' if down else 'apply'}: the {g.backend} backend needs root (CAP_NET_ADMIN): {e}",
            file=sys.stderr,
        )
        return 2
    if not steps:
        print(f"{setup.path}: nothing to change ({g.backend})")
        return 0
    for s in steps:
        print(s.text)
    # apply and --dry-run validate the same way: the whole plan rehearsed first on a sim copy
    # (of the sim's journal; else seeded with the parents' current children), so a file is not
    # refused half-way after some changes were made, and a dry run says what apply would
    failed = _rehearse(driver, steps, g.backend)
    if failed is not None:
        bad, err = failed
        lines, _ = kernel_error_lines(err, bad.op)
        print(f"refused: {bad.text}", file=sys.stderr)
        print("\n".join(lines), file=sys.stderr)
        print("nothing was changed; fix the file and apply again", file=sys.stderr)
        return 2
    if args.dry_run:
        print(f"(dry run: {plural(len(steps), 'change')} not made)")
        return 0
    for i, s in enumerate(steps):
        try:
            _execute(driver, s)
        except KernelError as e:
            lines, _ = kernel_error_lines(e, s.op)
            print(f"failed at: {s.text}", file=sys.stderr)
            print("\n".join(lines), file=sys.stderr)
            if i:
                print(
                    f"the {plural(i, 'change')} before it {'was' if i == 1 else 'were'} made; fix the file and apply "
                    f"again",
                    file=sys.stderr,
                )
            return 2
    print(f"{plural(len(steps), 'change')} made ({g.backend})")
    note = driver.notice()
    if note:
        print(note, file=sys.stderr)
    return 0


def _rehearse(driver, steps: list[Step], backend: str) -> tuple[Step, KernelError] | None:
    """The first step the plan would fail at, run against a throwaway sim (None: all pass)."""
    import os
    import shutil
    import tempfile

    from ..links import sim
    from ..model import Mode, parse_mac
    from ..model.link import LinkRequest

    with tempfile.TemporaryDirectory(prefix="pmv-rehearsal-") as d:
        path = os.path.join(d, "state.json")
        if isinstance(driver, sim.Driver):  # the sim itself: rehearse on a copy of its state
            if driver.path.exists():
                shutil.copy(driver.path, path)
            rehearsal = sim.Driver(path, netns=driver.netns)
        else:
            rehearsal = sim.Driver(path)
            parents = {(s.request.parent, s.netns) for s in steps if s.op == "add" and s.request is not None}
            for parent, _ns in sorted(parents, key=str):
                try:
                    rehearsal.add_parent(parent)
                except KernelError:
                    pass  # a built-in sim parent
                try:
                    current = driver.show()
                except (KernelError, OSError):
                    current = []
                for link in current:
                    info = link.get("linkinfo") or {}
                    if link.get("link") != parent or info.get("info_kind") not in ("macvlan", "macvtap"):
                        continue
                    try:
                        mode = Mode[str((info.get("info_data") or {}).get("mode", "vepa")).upper()]
                        rehearsal.add(LinkRequest(parent, link["ifname"], info["info_kind"], mode,
                                                  parse_mac(link["address"]) if link.get("address") else None))
                    except (KernelError, KeyError, ValueError, TypeError):
                        pass  # the rehearsal only misses a refusal it cannot see
        mirror = isinstance(driver, sim.Driver)
        for s in steps:
            if not mirror and s.op in ("set", "del"):
                # a change to an existing link (possibly in another namespace) the seeded sim
                # does not hold: the backend judges it; only what is made is rehearsed
                continue
            try:
                _execute(rehearsal, s, quiet=True)
            except KernelError as e:
                return s, e
    return None


def _execute(driver, s: Step, quiet: bool = False) -> None:
    if s.op == "add":
        assert s.request is not None, "an add step carries its request"
        # one request, as `link add ... up`: a child that cannot come up is removed again
        driver.add(dataclasses.replace(s.request, up=bool(s.up or s.request.up)))
        if s.host_access and driver.host_stack and not quiet:
            for line in driver.host_access(s.name, s.request.parent, []) or ():
                print(line)
    elif s.op == "set":
        driver.set(s.name, s.change, netns=s.netns)
    elif s.op == "del":
        driver.delete(s.name, netns=s.netns)
    elif s.op == "parent":
        driver.add_parent(s.name)


def _apply(args) -> int:
    return _run(args, down=False)


def _down(args) -> int:
    return _run(args, down=True)


def register(sub) -> None:
    for name, func, text in (("apply", _apply, "make the links of a TOML setup exist (idempotent)"),
                             ("down", _down, "delete the children (and sim parents) of a TOML setup")):
        p = sub.add_parser(name, help=text, description=(__doc__ or "").splitlines()[0])
        p.add_argument("file", help="setup file (see examples/lab.toml)")
        p.add_argument("--backend", choices=BACKENDS, help="default: the file's, else sim")
        p.add_argument("-n", "--netns", help="work inside this network namespace (the parents' namespace)")
        p.add_argument("--state", help="sim backend: state file")
        p.add_argument("--socket", help="userspace backend: the daemon's control socket")
        p.add_argument("--dry-run", action="store_true", help="print the plan only")
        if name == "apply":
            p.add_argument("--prune", action="store_true",
                           help="also delete macvlan/macvtap children of the named parents the file does not list")
        else:
            p.set_defaults(prune=False)
        p.set_defaults(func=func)
