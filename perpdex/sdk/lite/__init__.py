"""The standalone perpdex client (no ape): `ReadClient` and `TradeClient` over a JSON-RPC
URL, with the ABIs shipped in perpdex/abi/. See perpdex/sdk/lite/client.py."""

from perpdex.sdk.lite.client import ReadClient, Receipt, TradeClient
from perpdex.sdk.lite.rpc import RpcError

__all__ = ["ReadClient", "Receipt", "RpcError", "TradeClient"]
