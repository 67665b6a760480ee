"""The standalone perpdex client (no ape): `ReadClient` and `TradeClient` over a JSON-RPC
URL, with the ABIs shipped in perpdex/abi/. See perpdex/sdk/lite/client.py.

The names load on first use (PEP 562), so `perpdex.sdk.client` can import
`perpdex.sdk.lite.abi` without this package importing the client back (an import cycle).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perpdex.sdk.lite.client import ReadClient, Receipt, TradeClient
    from perpdex.sdk.lite.rpc import RpcError

__all__ = ["ReadClient", "Receipt", "RpcError", "TradeClient"]


def __getattr__(name: str) -> Any:
    if name == "RpcError":
        from perpdex.sdk.lite import rpc

        return rpc.RpcError
    if name in ("ReadClient", "Receipt", "TradeClient"):
        from perpdex.sdk.lite import client

        return getattr(client, name)
    raise AttributeError(f"module 'perpdex.sdk.lite' has no attribute {name!r}")
