"""Errors carrying the errno name the kernel returns, plus advice a user can act on."""

from __future__ import annotations

import errno as _errno


class KernelError(Exception):
    """A control operation refused as the kernel would refuse it."""

    def __init__(self, errno_name: str, message: str, advice: str = "") -> None:
        if not hasattr(_errno, errno_name):
            raise ValueError(f"unknown errno name {errno_name}")
        self.errno_name = errno_name
        self.errno = getattr(_errno, errno_name)
        self.message = message
        self.advice = advice
        super().__init__(f"{errno_name}: {message}" + (f" ({advice})" if advice else ""))

    def as_result(self) -> dict[str, object]:
        out = {"ok": False, "errno": self.errno_name, "message": self.message}
        if self.advice:
            out["advice"] = self.advice
        return out
