"""`python3 -m pymacvlan.netavark`: the plugin, as the `pymacvlan-netavark` console script runs it."""

from .plugin import main

raise SystemExit(main())
