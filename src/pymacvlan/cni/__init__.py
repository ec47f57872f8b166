"""`pymacvlan-cni`: a CNI plugin, a drop-in for the reference macvlan plugin, and more.

The runtime executes the plugin with the command in ``CNI_COMMAND``, the network config on
stdin, and reads the result (or the spec's error object) from stdout; logs go to stderr.

* :mod:`.skel`    the CNI protocol: environment, config validation, versions, errors, output
* :mod:`.result`  results in every supported spec version (0.3.0 ... 1.1.0)
* :mod:`.conf`    the network config, key for key as the reference plugin reads it, plus ours
* :mod:`.ipam`    delegation to the IPAM plugin named in ``ipam.type`` (found in ``CNI_PATH``)
* :mod:`.netns`   the kernel side: the child, its addresses, routes and sysctls, over pyroute2
* :mod:`.plugin`  ADD, DEL, CHECK, STATUS, GC

Everything heavy (pyroute2) is imported by the commands that need it: a CNI plugin is
started once per pod and per command, so its start-up time is what a user waits for.
"""

#: The spec version this plugin implements; results are built in it and converted.
IMPLEMENTED_VERSION = "1.1.0"
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
