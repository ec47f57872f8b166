"""`pymacvlan docker-plugin`: a Docker network driver (remote driver API v1) over the project's
one link driver layer: `docker network create -d pymacvlan -o parent=eth0 ...` as a drop-in for
Docker's built-in ``macvlan`` driver, plus what it lacks (mtu, host access, stable MACs, the
userspace backend, bclim, nopromisc, source mode, preflight).

Modules: :mod:`.options` (the network options, checked without touching anything),
:mod:`.state` (what the plugin remembers on disk), :mod:`.driver` (the NetworkDriver calls as a
handler table), :mod:`.server` (HTTP over a Unix socket), :mod:`.unit` (the systemd unit).
"""
