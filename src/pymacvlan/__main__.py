"""`python3 -m pymacvlan`: the same as the `pymacvlan` command."""

import sys

from .cli.main import main

sys.exit(main())
