"""The one exception family of the perpdex Python tooling.

Every message says what went wrong and what to do next.
"""

from __future__ import annotations


class PerpdexError(Exception):
    """Base class: catch this to handle any perpdex tooling failure."""


class ConfigError(PerpdexError):
    """A config file (config/*.yaml) is missing or holds an invalid value."""


class DeploymentNotFound(PerpdexError):
    """No deployment manifest for the selected network."""


class TransactionRejected(PerpdexError):
    """The chain refused a transaction; `reason` holds the contract's revert string."""

    def __init__(self, action: str, reason: str, hint: str = "") -> None:
        self.action = action
        self.reason = reason
        self.hint = hint
        text = f"{action} failed: {reason}"
        super().__init__(f"{text}. {hint}" if hint else text)
