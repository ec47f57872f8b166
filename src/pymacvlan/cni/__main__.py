"""`python3 -m pymacvlan.cni`: the plugin, as the `pymacvlan-cni` console script runs it."""

from .skel import main

raise SystemExit(main())
