"""What a perpdex operation costs on an L2: measured execution gas plus the L1 data fee of
its real signed transaction (`perpdex gas`, and docs/gas.md through perpdex/bench.py).

Read this first if you touch the model:
- `OPERATIONS` names each user transaction, the docs/gas.json key of its measured gas and
  the ABI call it sends, with representative arguments (an account id of a real owner
  address, a size of 0.2 BTC in WAD, ...): the calldata is what the SDK encodes, so its
  bytes compress as the real ones do.
- `Prices` holds the gas prices; `Prices.read(rpc_url)` reads them from the chain's own
  predeploys (OP stack: GasPriceOracle 0x42..0F; Arbitrum: ArbGasInfo 0x..6C) over plain
  JSON-RPC. Defaults (`DEFAULTS`) are stated assumptions, not live figures.
- `cost(op, prices)` signs the transaction (perpdex.sdk.l1fee.signed_tx, a throwaway key)
  and prices it under Ecotone, Fjord and Arbitrum (perpdex.sdk.l1fee).
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from perpdex.config import ROOT
from perpdex.errors import PerpdexError
from perpdex.sdk import l1fee

GAS_JSON = ROOT / "docs" / "gas.json"
GWEI = 10**9
WAD = 10**18

# a trader's address and sub-account 1 (account id = owner << 96 | index)
OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ACCOUNT = (int(OWNER, 16) << 96) | 1
KEEPER_ACCOUNT = (int("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", 16) << 96) | 0
CLEARINGHOUSE = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
USDC = "0xaf88d065e77c8cC2239327C5EDb3A432268e5831"
VAULT = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
AUCTION = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
OP_CHAIN_ID = 8453  # Base
ARB_CHAIN_ID = 42161  # Arbitrum One
GAS_PRICE_ORACLE = "0x420000000000000000000000000000000000000F"
ARB_GAS_INFO = "0x000000000000000000000000000000000000006C"


class FeeModelError(PerpdexError):
    """The fee model cannot run on these inputs."""


@dataclass(frozen=True)
class Operation:
    """One user transaction: its measured-gas key, target and ABI call."""

    name: str
    gas_key: str
    to: str
    signature: str
    args: tuple[Any, ...]
    note: str = ""

    @property
    def calldata(self) -> bytes:
        from eth_abi import encode
        from eth_utils import keccak

        types = self.signature[self.signature.index("(") + 1 : -1].split(",")
        return keccak(text=self.signature)[:4] + encode(types, list(self.args))


TRADE = "trade(uint256,uint256,int256,uint256)"
OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "open_account", "open_account", CLEARINGHOUSE, "open_account(string,bool)",
        ("btc-trend", True),
    ),
    Operation(
        "deposit", "deposit", CLEARINGHOUSE, "deposit(uint256,address,uint256)",
        (ACCOUNT, USDC, 25_000 * 10**6),
    ),
    Operation(
        "withdraw", "withdraw", CLEARINGHOUSE, "withdraw(uint256,address,uint256,address)",
        (ACCOUNT, USDC, 5_000 * 10**6, OWNER),
    ),
    Operation(
        "open", "open_new_account", CLEARINGHOUSE, TRADE,
        (ACCOUNT, 0, 2 * WAD // 10, 101_000 * WAD),
        "market buy 0.2 BTC with a price bound (a new position in a trading market)",
    ),
    Operation(
        "increase", "increase", CLEARINGHOUSE, TRADE,
        (ACCOUNT, 0, 5 * WAD // 100, 101_000 * WAD), "the rebalancing trade",
    ),
    Operation(
        "reduce", "reduce", CLEARINGHOUSE, TRADE, (ACCOUNT, 0, -(5 * WAD // 100), 99_000 * WAD)
    ),
    Operation("close", "close", CLEARINGHOUSE, TRADE, (ACCOUNT, 0, -(25 * WAD // 100), 0)),
    Operation(
        "lp_deposit", "lp_deposit", VAULT, "deposit(uint256,address)", (10**12, OWNER)
    ),
    Operation(
        "lp_withdraw", "lp_withdraw", VAULT, "redeem(uint256,address,address)",
        (100_000 * WAD, OWNER, OWNER),
    ),
    Operation(
        "liquidation_start", "liquidation_start", AUCTION, "start(uint256,uint256)",
        (ACCOUNT, KEEPER_ACCOUNT),
    ),
    Operation(
        "auction_take", "auction_take", AUCTION, "take(uint256,uint256,uint256)",
        (ACCOUNT, KEEPER_ACCOUNT, WAD // 2),
    ),
)  # fmt: skip


def operation(name: str) -> Operation:
    for op in OPERATIONS:
        if op.name == name:
            return op
    raise FeeModelError(
        f"unknown operation {name!r}; choose one of {', '.join(o.name for o in OPERATIONS)}"
    )


def measured_gas(path: Path = GAS_JSON) -> dict[str, int]:
    if not path.exists():
        raise FeeModelError(f"no {path}; measure the gas first with `make bench`")
    data = json.loads(path.read_text())
    return {k: int(v) for k, v in data.items()}


@dataclass(frozen=True)
class Prices:
    """Gas prices in wei (scalars as the chain stores them) and the ETH price in USD."""

    op: l1fee.OpPrices
    op_l2_gas_price: int
    arb_l1_price_per_unit: int
    arb_l2_gas_price: int
    brotli_level: int = l1fee.ARB_BROTLI_LEVEL
    eth_usd: Decimal = Decimal(3000)
    source: str = "defaults"

    def usd(self, wei: int) -> Decimal:
        return Decimal(wei) / WAD * self.eth_usd


def arb_price_like_op(op: l1fee.OpPrices) -> int:
    """An Arbitrum L1 price per unit equal to the OP-stack price of one compressed byte
    (16 x base_fee_scalar x l1_base_fee + blob_base_fee_scalar x blob_base_fee) / 1e6, per
    unit (a unit is 1/16 of a byte): the same L1 cost per compressed byte on both."""
    return op.scaled // (16 * 10**6)


# Stated assumptions (docs/gas.md): L1 base fee 10 gwei, blob base fee 1 gwei, Base-like
# scalars 1368 / 810949, L2 gas 0.01 gwei on both, Arbitrum's L1 price per unit the
# OP-stack price of a compressed byte / 16 (like for like), ETH $3,000.
_OP_DEFAULT = l1fee.OpPrices(10 * GWEI, 1 * GWEI, 1368, 810_949)
DEFAULTS = Prices(
    op=_OP_DEFAULT,
    op_l2_gas_price=GWEI // 100,
    arb_l1_price_per_unit=arb_price_like_op(_OP_DEFAULT),
    arb_l2_gas_price=GWEI // 100,
)


def _rpc(url: str, method: str, params: list[Any]) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            answer = json.loads(resp.read())
    except (OSError, ValueError) as e:
        raise FeeModelError(
            f"could not reach {url} ({e}); check --rpc or pass the prices as options"
        ) from None
    if "error" in answer:
        raise FeeModelError(f"{url}: {method} failed: {answer['error']}")
    return answer.get("result")


def _call_uint(url: str, to: str, signature: str) -> int | None:
    from eth_utils import keccak

    data = "0x" + keccak(text=signature)[:4].hex()
    try:
        raw = _rpc(url, "eth_call", [{"to": to, "data": data}, "latest"])
    except FeeModelError:
        return None
    if not raw or raw == "0x":
        return None
    return int(raw, 16)


def read_prices(url: str, base: Prices = DEFAULTS) -> tuple[Prices, str]:
    """Prices from the chain at `url`: (prices, "op" | "arbitrum"). The other family's
    figures stay as in `base`."""
    gas_price = int(_rpc(url, "eth_gasPrice", []), 16)
    l1 = _call_uint(url, GAS_PRICE_ORACLE, "l1BaseFee()")
    if l1 is not None:
        blob = _call_uint(url, GAS_PRICE_ORACLE, "blobBaseFee()")
        bfs = _call_uint(url, GAS_PRICE_ORACLE, "baseFeeScalar()")
        bbfs = _call_uint(url, GAS_PRICE_ORACLE, "blobBaseFeeScalar()")
        if blob is None or bfs is None or bbfs is None:
            raise FeeModelError(
                f"{url}: the GasPriceOracle answers l1BaseFee but not the Ecotone getters; "
                "the chain is pre-Ecotone, which this model does not price"
            )
        op = l1fee.OpPrices(l1, blob, bfs, bbfs)
        return replace(base, op=op, op_l2_gas_price=gas_price, source=f"{url} (OP stack)"), "op"
    per_unit = _call_uint(url, ARB_GAS_INFO, "getL1BaseFeeEstimate()")
    if per_unit is not None:
        return (
            replace(
                base,
                arb_l1_price_per_unit=per_unit,
                arb_l2_gas_price=gas_price,
                source=f"{url} (Arbitrum)",
            ),
            "arbitrum",
        )
    raise FeeModelError(
        f"{url} answers neither the OP-stack GasPriceOracle ({GAS_PRICE_ORACLE}) nor "
        f"Arbitrum's ArbGasInfo ({ARB_GAS_INFO}); pass the prices as options instead"
    )


@dataclass(frozen=True)
class Cost:
    """One operation priced on both L2 families (wei)."""

    op: Operation
    l2_gas: int
    calldata_bytes: int
    op_tx: bytes
    arb_tx: bytes
    fastlz_bytes: int
    brotli_bytes: int
    op_l2_fee: int
    ecotone_fee: int
    fjord_fee: int
    arb_l2_fee: int
    arb_l1_fee: int

    @property
    def op_total(self) -> int:
        """OP stack after Fjord: execution plus the Fjord data fee."""
        return self.op_l2_fee + self.fjord_fee

    @property
    def arb_total(self) -> int:
        return self.arb_l2_fee + self.arb_l1_fee


def cost(op: Operation, gas: int, prices: Prices) -> Cost:
    return cost_of(op, op.calldata, gas, prices)


def cost_of(op: Operation, data: bytes, gas: int, prices: Prices) -> Cost:
    """`data` sent to `op.to` with `gas` measured, priced at `prices`."""
    limit = int(gas * 1.3) + 30_000  # the SDK's padded limit (perpdex.sdk.gas)
    op_tx = l1fee.signed_tx(
        op.to, data, chain_id=OP_CHAIN_ID, gas=limit, max_fee_per_gas=prices.op_l2_gas_price * 2
    )
    arb_tx = l1fee.signed_tx(
        op.to, data, chain_id=ARB_CHAIN_ID, gas=limit, max_fee_per_gas=prices.arb_l2_gas_price * 2
    )
    flz = l1fee.flz_compress_len(op_tx)
    return Cost(
        op=op,
        l2_gas=gas,
        calldata_bytes=len(data),
        op_tx=op_tx,
        arb_tx=arb_tx,
        fastlz_bytes=flz,
        brotli_bytes=l1fee.brotli_size(arb_tx, prices.brotli_level),
        op_l2_fee=gas * prices.op_l2_gas_price,
        ecotone_fee=l1fee.ecotone_fee(op_tx, prices.op),
        fjord_fee=l1fee.fjord_fee_for_size(flz, prices.op),
        arb_l2_fee=gas * prices.arb_l2_gas_price,
        arb_l1_fee=l1fee.arbitrum_fee(arb_tx, prices.arb_l1_price_per_unit, prices.brotli_level),
    )


def costs(prices: Prices, gas: dict[str, int] | None = None) -> list[Cost]:
    measured = gas if gas is not None else measured_gas()
    out = []
    for op in OPERATIONS:
        if op.gas_key not in measured:
            raise FeeModelError(
                f"docs/gas.json has no {op.gas_key!r}; re-measure with `make bench`"
            )
        out.append(cost(op, measured[op.gas_key], prices))
    return out
