"""Real QEMU guests on macvtap children: a tiny guest built from Debian packages
(:mod:`.guest`) and the QEMU command lines for each macvtap endpoint kind (:mod:`.qemu`)."""
