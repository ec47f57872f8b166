"""`pymacvlan-netavark`: a netavark network plugin (podman 5), macvlan over pymacvlan's drivers.

Podman 5 dropped its CNI backend; netavark (≥ 1.6) runs third-party plugins: executables in
``netavark_plugin_dirs`` called with ``create``, ``setup NETNS``, ``teardown NETNS`` or
``info``, JSON on stdin and stdout, errors as ``{"error": "..."}`` with exit status 1.

The contract followed is netavark's ``plugin-API.md`` with the types of
``src/network/types.rs`` and the runner of ``src/network/plugin.rs`` at commit
9a10e4621012095d56a262c3856bc1d61ef3f29b (2026-08-18, Cargo version 2.1.0; the plugin API
files last changed in 230dd6e, 2026-04-19): API version 1.0.0. The behaviour copies netavark's
own macvlan driver (src/network/vlan.rs at the same commit); Debian 12's netavark 1.4.0 is
the oracle the side-by-side tests run (tests/netavark/).

* :mod:`.config`  the input: Network JSON, options, per-container options; every check
* :mod:`.plugin`  the commands and the executable's main()
* :mod:`.dhcp`    networks without subnets: a lease from the pymacvlan daemon
* :mod:`.install` ``pymacvlan netavark install``: the launcher and containers.conf lines
"""

#: netavark's plugin API version (src/plugin.rs API_VERSION)
API_VERSION = "1.0.0"
CONTRACT = "containers/netavark plugin-API.md @ 9a10e4621012 (API 1.0.0)"
