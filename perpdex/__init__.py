"""perpdex: Python tooling around the perpdex contracts (SDK, CLI, keepers, risk tools)."""

__version__ = "0.1.0"
