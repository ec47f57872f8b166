"""DHCPv4 for macvlan children, held by the pymacvlan daemon.

- :mod:`.packet`: the strict codec (messages, options, Ethernet/IPv4/UDP framing)
- :mod:`.machine`: the sans-IO RFC 2131 client, one per lease
- :mod:`.identity`: client identifier (RFC 4361) and hostname from stableMac's identity
- :mod:`.service`: the daemon's side: packet sockets on the parents, timers, persistence
- :mod:`.client`: what front ends call (``acquire``, ``release``, ``show``) over the control socket
- :mod:`.cni`: the ``pymacvlan-dhcp`` CNI IPAM plugin
"""
