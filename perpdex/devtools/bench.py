"""Gas benchmark: measures every user operation on a fresh local deployment.

Run with `ape run bench_gas` (or `make bench`). Writes docs/gas.json (`{"operation": gas}`,
stable keys) and docs/gas.md (table with budgets, calldata bytes, modelled L1 data fee,
bytecode sizes). Figures are total transaction gas (what a user pays for L2 execution,
21,000 intrinsic included) except the `margin_check_*` rows: the in-EVM gas of calling
`margin_requirement` from a contract (GasProbe), cold storage, no intrinsic cost; the
`_in_tx` figure subtracts the cost of the external call itself, as a margin check inside
a trade does not pay it. Portfolio figures use the configured risk book (12 scenarios);
each extra scenario adds about 45 gas per position.

Every measured transaction is a fresh transaction (cold storage), 30 seconds after the
previous one with the feeds refreshed (so funding accrues and snapshots rewrite), on the
production configuration in config/*.yaml (3 oracle sources per market).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from perpdex.config import ROOT
from perpdex.constants import WAD
from perpdex.deploy import Protocol, deploy_system
from perpdex.errors import PerpdexError
from perpdex.sdk import feemodel

DOCS = ROOT / "docs"
CODE_SIZE_LIMIT = 24_576

# Budgets from the issues (total tx gas unless the row says otherwise).
BUDGETS: dict[str, int] = {
    "increase": 125_000,
    "open_new_account": 145_000,
    "margin_check_8": 60_000,
    "liquidation_start": 200_000,
    "auction_take": 250_000,
    "auction_take_fresh_account": 250_000,
    "batch_fill_20": 75_000,  # per fill
}
BATCH_FILLS = 20
PER_POSITION_BUDGET = 15_000

# L1 data fee: each measured transaction's calldata, re-signed as an EIP-1559 transaction
# (perpdex.sdk.l1fee.signed_tx) and priced by perpdex.sdk.feemodel under OP-stack Fjord
# (FastLZ) and Arbitrum (brotli) at feemodel.DEFAULTS; view calls (GasProbe rows) send no
# transaction and pay no L1 fee.


# Rows whose storage floor the report shows (trades: what a trade cannot avoid paying).
FLOOR_ROWS = (
    "open_first_trade_of_market",
    "open_new_account",
    "increase",
    "increase_same_block_mark",
)
# Rows whose opcode-level breakdown PERPDEX_GAS_TRACE=<file> writes (gastrace.py).
TRACE_ROWS = (*FLOOR_ROWS, "liquidation_start", "auction_take", "auction_take_fresh_account")
INTRINSIC_GAS = 21_000
COLD_SLOAD = 2_100
SSTORE_SET = 20_000  # zero to non-zero
SSTORE_RESET = 2_900  # non-zero to another value
COLD_ACCOUNT = 2_600


@dataclass
class Floor:
    """What a transaction cannot avoid, computed from its own trace: the intrinsic cost,
    its calldata, one cold access and write per storage slot it changes (a set where the
    slot was zero), and every price-feed read (the cold call plus the feed's own gas)."""

    calldata: int
    slots_set: int
    slots_reset: int
    feed_reads: int
    feed_gas: int

    @property
    def total(self) -> int:
        return (
            INTRINSIC_GAS
            + self.calldata
            + self.slots_set * (COLD_SLOAD + SSTORE_SET)
            + self.slots_reset * (COLD_SLOAD + SSTORE_RESET)
            + self.feed_gas
        )


@dataclass
class Row:
    key: str
    gas: int
    calldata: int
    note: str = ""
    data: bytes | None = None  # the transaction's calldata; None: a view call
    to: str = ""
    floor: Floor | None = None

    @property
    def priced(self) -> feemodel.Cost | None:
        """The transaction priced by the fee model (None for a view call)."""
        if self.data is None:
            return None
        op = feemodel.Operation(self.key, self.key, self.to or feemodel.CLEARINGHOUSE, "", ())
        return feemodel.cost_of(op, self.data, self.gas, feemodel.DEFAULTS)


def _batch_fee_usd(row: Row) -> Decimal:
    """The Fjord L1 fee (USD) of a row's whole transaction (a batch: divide per fill)."""
    c = row.priced
    return feemodel.DEFAULTS.usd(c.fjord_fee) if c is not None else Decimal(0)


def _fee_cells(row: Row) -> tuple[str, str, str, str]:
    """(signed tx bytes, FastLZ bytes, Fjord L1 fee, Arbitrum L1 fee) as table cells."""
    c = row.priced
    if c is None:
        return ("-", "-", "-", "-")
    usd = feemodel.DEFAULTS.usd
    return (
        str(len(c.op_tx)),
        str(c.fastlz_bytes),
        f"{usd(c.fjord_fee):.5f}",
        f"{usd(c.arb_l1_fee):.5f}",
    )


class Bench:
    def __init__(self, p: Protocol, accounts: Any, chain: Any, project: Any) -> None:
        self.p, self.accounts, self.chain, self.project = p, accounts, chain, project
        if p.vault is None or p.auction is None:
            raise PerpdexError(
                "the benchmark measures the vault and the liquidation auction too; "
                "run it on a full deploy_system() deployment (`make bench`)"
            )
        self.vault, self.auction = p.vault, p.auction
        self.admin = accounts[0]
        self.rows: list[Row] = []
        # the receipts of rows that keep one (perpdex/devtools/trace.py reads them)
        self.txs: dict[str, Any] = {}
        self.unit = 10**p.system.settlement_decimals
        self.probe = self.admin.deploy(project.GasProbe)
        self.traced_accounts: list[int] = []  # HashMap keys the traces name slots at

    # --- helpers ------------------------------------------------------------------
    def tick(self, seconds: int = 30) -> None:
        """Time passes; feeds update and the price keeper refreshes every mark (as on a
        live venue, where `perpdex keeper prices` pokes `refresh` each block)."""
        self.chain.pending_timestamp += seconds
        for sym, feeds in self.p.feeds.items():
            base = sym if not sym.startswith("X") else "BTC"  # clones of BTC
            answer = int(self.p.system.market(base).price * 10**8)
            for f in feeds:
                f.set_answer(answer, sender=self.admin)
        markets = list(range(self.p.clearinghouse.market_count()))
        self.p.ops.refresh(markets, sender=self.admin)
        # the measured transaction lands later than the keeper's refresh (a trade in the
        # same block reuses the refreshed mark and pays less: its own row)
        self.chain.pending_timestamp += 2

    def same_block_trade(self, who: Any, acct: int, market: int, size: int) -> Any:
        """The keeper's `refresh` and a trade mined in one block (automine paused), the
        trade second: what a trade costs when the mark is already refreshed this block."""
        self.chain.pending_timestamp += 30
        for sym, feeds in self.p.feeds.items():
            base = sym if not sym.startswith("X") else "BTC"
            for f in feeds:
                f.set_answer(int(self.p.system.market(base).price * 10**8), sender=self.admin)
        markets = list(range(self.p.clearinghouse.market_count()))
        web3 = self.chain.provider.web3
        request = self.chain.provider.make_request
        bound = 2**256 - 1 if size > 0 else 0
        request("evm_setAutomine", [False])
        try:
            sent = [
                web3.eth.send_transaction(
                    {
                        "from": sender.address,
                        "to": self.p.clearinghouse.address,
                        "data": data,
                        "gas": 2_000_000,
                    }
                )
                for sender, data in (
                    (self.admin, self.p.ops.refresh.encode_input(markets)),
                    (who, self.p.clearinghouse.trade.encode_input(acct, market, size, bound)),
                )
            ]
            request("evm_mine", [])
        finally:
            request("evm_setAutomine", [True])
        refresh, trade = (web3.eth.get_transaction_receipt(h) for h in sent)
        if refresh["blockNumber"] != trade["blockNumber"] or trade["status"] != 1:
            raise PerpdexError(
                "the same-block trade did not land after the refresh in one block; "
                "check that the node is an anvil that supports evm_setAutomine"
            )
        self.chain.pending_timestamp += 2
        return self.chain.provider.get_receipt(trade["transactionHash"].hex())

    def record(self, key: str, tx: Any, note: str = "") -> int:
        gas = int(tx.gas_used)
        data = bytes(tx.data)
        to = str(getattr(tx, "receiver", "") or "")
        floor = self.floor(tx, data) if key in FLOOR_ROWS else None
        self.rows.append(Row(key, gas, len(data), note, data, to, floor))
        if (out := os.environ.get("PERPDEX_GAS_TRACE")) and key in TRACE_ROWS:
            self.trace(key, tx, Path(out))
        return gas

    def trace(self, key: str, tx: Any, out: Path) -> None:
        """Appends the opcode-level breakdown of `tx` (perpdex/devtools/gastrace.py) to
        `out` (PERPDEX_GAS_TRACE)."""
        from perpdex.devtools import gastrace

        p = self.p
        txhash = tx.txn_hash if isinstance(tx.txn_hash, str) else tx.txn_hash.hex()
        names = {p.clearinghouse.address: "Clearinghouse", p.oracle.address: "OracleRouter"}
        names |= {self.vault.address: "LiquidityVault", self.auction.address: "Auction"}
        names[p.token.address] = "Token"
        for sym, feeds in p.feeds.items():
            for i, f in enumerate(feeds):
                names[f.address] = f"feed {sym}{i}"
        if p.sequencer is not None:
            names[p.sequencer.address] = "sequencer feed"
        for half in ("Ops", "Admin", "Orders", "Risk", "Treasury"):
            if (addr := self._halves().get(half)) is not None:
                names[addr] = f"code {half}"
        layouts = {
            p.clearinghouse.address: _layout("Clearinghouse"),
            p.oracle.address: _layout("OracleRouter"),
        }
        n = int(p.clearinghouse.market_count())
        accounts = [int(a) for a in self.traced_accounts]
        pcs = {
            p.clearinghouse.address: _pc_labels("Clearinghouse"),
            p.oracle.address: _pc_labels("OracleRouter"),
        }
        # PERPDEX_GAS_STEPS=<dir>: also the raw steps of each traced row, <dir>/<row>.json
        steps = os.environ.get("PERPDEX_GAS_STEPS")
        t = gastrace.trace(
            self.chain.provider.make_request,
            txhash,
            names,
            layouts,
            [*accounts, *range(n)],
            pcs,
            steps_out=str(Path(steps) / f"{key}.json") if steps else None,
        )
        with out.open("a") as f:
            f.write(gastrace.report(t, key))

    def _halves(self) -> dict[str, str]:
        """The code halves' addresses, down the Clearinghouse's delegatecall chain."""
        out: dict[str, str] = {}
        addr = str(self.p.clearinghouse.OPS())
        chain = (("Ops", "ADMIN"), ("Admin", "ORDERS"), ("Orders", "RISK"), ("Risk", "TREASURY"))
        for half, nxt in chain:
            out[half] = addr
            addr = str(getattr(getattr(self.project, f"Clearinghouse{half}").at(addr), nxt)())
        out["Treasury"] = addr
        return out

    def floor(self, tx: Any, data: bytes) -> Floor:
        """The storage floor of `tx` from anvil's prestate (diff mode) and call traces."""
        txhash = tx.txn_hash if isinstance(tx.txn_hash, str) else tx.txn_hash.hex()
        request = self.chain.provider.make_request
        diff = request(
            "debug_traceTransaction",
            [txhash, {"tracer": "prestateTracer", "tracerConfig": {"diffMode": True}}],
        )
        pre, post = diff.get("pre", {}), diff.get("post", {})
        slots_set = slots_reset = 0
        for addr, after in post.items():
            before = pre.get(addr, {}).get("storage", {})
            for slot, value in after.get("storage", {}).items():
                old = int(before.get(slot, "0x0"), 16)
                if int(value, 16) == old:
                    continue
                if old == 0:
                    slots_set += 1
                else:
                    slots_reset += 1
        feeds = {f.address.lower() for fs in self.p.feeds.values() for f in fs}
        if self.p.sequencer is not None:
            feeds.add(self.p.sequencer.address.lower())
        calls = request("debug_traceTransaction", [txhash, {"tracer": "callTracer"}])
        reads = feed_gas = 0
        seen: set[str] = set()
        stack = [calls]
        while stack:
            frame = stack.pop()
            to = frame.get("to", "").lower()
            if to in feeds:
                reads += 1
                feed_gas += (100 if to in seen else COLD_ACCOUNT) + int(frame["gasUsed"], 16)
                seen.add(to)
            stack.extend(frame.get("calls", []))
        calldata = sum(16 if b else 4 for b in data)
        return Floor(calldata, slots_set, slots_reset, reads, feed_gas)

    def fund(self, who: Any, dollars: int) -> int:
        units = dollars * self.unit
        self.p.token.mint(who, units, sender=who)
        self.p.token.approve(self.p.clearinghouse, 2**256 - 1, sender=who)
        self.p.token.approve(self.p.vault, 2**256 - 1, sender=who)
        return units

    def size(self, sym: str, notional_usd: int) -> int:
        return int(Decimal(notional_usd) / self.p.system.market(sym).price * WAD)

    def trade(self, who: Any, acct: int, market: int, size: int) -> Any:
        bound = 2**256 - 1 if size > 0 else 0
        return self.p.clearinghouse.trade(acct, market, size, bound, sender=who)

    def extra_markets(self, n: int) -> list[int]:
        """Lists clones of BTC until there are `n` markets (for 8-position books)."""
        p, admin = self.p, self.admin
        btc = p.system.markets[0]
        from perpdex.sdk import riskbook

        # room under the total exposure cap for the clones (each has BTC's cap)
        ops = p.ops
        p.risk.set_vault_limits(
            3 * WAD, int(ops.max_pnl_factor()), int(ops.adl_target_factor()), sender=admin
        )
        while p.clearinghouse.market_count() < n:
            o = btc.oracle
            # as many feeds as BTC ships: a price needs a quorum of two
            feeds = [
                admin.deploy(self.project.MockAggregator, 8, int(btc.price * 10**8))
                for _ in range(o.sources)
            ]
            p.oracle.add_market(*o.add_market_args([f.address for f in feeds]), sender=admin)
            p.admin.add_market(btc.params(), sender=admin)
            p.feeds[f"X{p.clearinghouse.market_count() - 1}"] = feeds
        # extend the risk book: the clones move like BTC
        code = bytes(self.chain.provider.get_code(p.clearinghouse.risk_book()))[1:]
        book = riskbook.decode(code)
        k = len(book.markets)
        markets = book.markets + tuple(book.markets[0] for _ in range(n - k))
        shocks = tuple(row + tuple(row[0] for _ in range(n - k)) for row in book.shocks)
        new = riskbook.RiskBook(book.floor_bps, book.maintenance_bps, markets, book.names, shocks)
        p.admin.set_risk_book(riskbook.encode(new), sender=admin)
        return list(range(n))

    # --- the benchmark ------------------------------------------------------------------
    def run(self) -> list[Row]:
        p, a = self.p, self.accounts
        ch, ops, trader, lp = p.clearinghouse, p.ops, a[1], a[3]
        btc, eth = 0, 1

        units = self.fund(lp, 50_000_000)
        self.tick()
        self.record("lp_deposit", self.vault.deposit(units // 2, lp, sender=lp))
        self.tick()
        self.record("lp_deposit_again", self.vault.deposit(units // 4, lp, sender=lp))

        self.fund(trader, 1_000_000)
        self.record("open_account", ch.open_account("bench", False, sender=trader))
        acct = ch.account_id(trader, 0)
        self.traced_accounts.append(int(acct))
        self.record("deposit_first", ops.deposit(acct, p.token, 100_000 * self.unit, sender=trader))
        self.record("deposit", ops.deposit(acct, p.token, 100_000 * self.unit, sender=trader))
        self.tick()
        self.record(
            "open_first_trade_of_market",
            self.trade(trader, acct, btc, self.size("BTC", 50_000)),
            "first position of the account and first trade of the market",
        )
        # what a trade pays extra when a market's mark is older than max_mark_age
        self.chain.pending_timestamp += 120
        for f in p.feeds["BTC"] + p.feeds["ETH"]:
            f.set_answer(f.latestRoundData()[1], sender=self.admin)
        self.record(
            "open_eth_fresh_btc_stale",
            self.trade(trader, acct, eth, self.size("ETH", 1_000)),
            "BTC mark stale: re-read in the margin check",
        )
        self.tick()
        self.record(
            "reduce_eth",
            self.trade(trader, acct, eth, -self.size("ETH", 1_000)),
            "reduce-only close, no margin check",
        )
        self.tick()
        self.record(
            "increase",
            self.trade(trader, acct, btc, self.size("BTC", 20_000)),
            "account with one position; the trade reads its own oracle",
        )
        self.record(
            "increase_same_block_mark",
            self.same_block_trade(trader, acct, btc, self.size("BTC", 1_000)),
            "as `increase`, in the block of the keeper's refresh: reuses the mark",
        )
        # a new account's first trade in a market that already trades
        newcomer = self.accounts[6]
        self.fund(newcomer, 200_000)
        fresh = int(ch.open_account("newcomer", False, sender=newcomer).return_value)
        self.traced_accounts.append(fresh)
        ops.deposit(fresh, p.token, 100_000 * self.unit, sender=newcomer)
        self.tick()
        self.record(
            "open_new_account",
            self.trade(newcomer, fresh, btc, self.size("BTC", 20_000)),
            "first position of a new account in a market already trading",
        )
        # closed again: the rows below (the vault's share pricing) see the same book
        self.tick()
        self.trade(newcomer, fresh, btc, -ch.position(fresh, btc)[0])
        self.tick()
        self.record("reduce", self.trade(trader, acct, btc, -self.size("BTC", 30_000)))
        self.tick()
        size = ch.position(acct, btc)[0]
        self.record("close", self.trade(trader, acct, btc, -size))
        self.tick()
        self.record(
            "withdraw", ops.withdraw(acct, p.token, 10_000 * self.unit, trader, sender=trader)
        )
        self.tick()
        shares = self.vault.balanceOf(lp) // 10
        self.record("lp_withdraw", self.vault.redeem(shares, lp, lp, sender=lp))

        self.delayed_orders(trader, acct, a[5])
        self.liquidation(trader, a[4], a[5])
        self.signed_batches([a[i] for i in range(1, 9)])
        self.conditional_stop(trader, self.admin)

        # a multi-leg order (ClearinghouseRisk.trade_multi): three markets opened in one
        # transaction, one margin check on the final book
        sol = 2
        multi = int(ch.open_account("multi", True, sender=trader).return_value)
        ops.deposit(multi, p.token, 100_000 * self.unit, sender=trader)
        self.tick()
        legs = [
            (btc, self.size("BTC", 20_000), 2**256 - 1),
            (eth, -self.size("ETH", 20_000), 0),
            (sol, self.size("SOL", 10_000), 2**256 - 1),
        ]
        self.record(
            "trade_multi_3",
            p.risk.trade_multi(multi, legs, sender=trader),
            "3 legs (BTC, ETH, SOL) opened in one order, one margin check",
        )

        # books of 1..8 positions: increase gas by position count, margin checks, 8th open
        markets = self.extra_markets(8)
        for portfolio in (False, True):
            mode = "portfolio" if portfolio else "isolated"
            tx = ch.open_account(f"book-{mode}", portfolio, sender=trader)
            book = int(tx.return_value)
            ops.deposit(book, p.token, 300_000 * self.unit, sender=trader)
            for n, m in enumerate(markets, start=1):
                self.tick()
                # $5,000 of each market (the clones are priced like BTC): above the
                # $100 minimum position in every one
                sym = p.system.markets[m].symbol if m < len(p.system.markets) else "BTC"
                tx = self.trade(trader, book, m, self.size(sym, 5_000) * (1 if n % 2 else -1))
                if n == 8:
                    self.record(f"open_8th_position_{mode}", tx)
                self.tick()
                tx = self.trade(trader, book, m, self.size("BTC", 1_000) * (1 if n % 2 else -1))
                self.record(f"increase_{n}pos_{mode}", tx)
                if n in (1, 8):
                    data = ch.margin_requirement.encode_input(book)
                    gas = int(self.probe.measure_view(ch.address, data))
                    self.rows.append(
                        Row(f"margin_check_{n}_{mode}", gas, 0, "view call via GasProbe")
                    )
        # what calling into the Clearinghouse costs by itself (cold account, dispatch,
        # return): a margin check inside a trade does not pay it
        base = int(self.probe.measure_view(ch.address, ch.OPS.encode_input()))
        self.rows.append(
            Row("external_call_overhead", base, 0, "GasProbe on a storage-free getter")
        )
        return self.rows

    def delayed_orders(self, trader: Any, acct: int, keeper: Any) -> None:
        """A delayed vault order (contracts/modules/delayed.vy): committed (one fresh
        storage word), then settled by a keeper at the first price observed after the
        delay (the fill of a trade, a fresh oracle read, the observation-time check and the
        keeper fee's transfer)."""
        p, btc = self.p, 0
        risk = p.risk
        cfg = p.system.markets[btc].delayed
        if cfg is None:  # a config without delayed orders: BTC's defaults
            risk.set_delayed_params(btc, 0, 2, 60, 5 * 10**17, sender=self.admin)
        self.tick()
        self.record(
            "commit_order",
            risk.commit_order(acct, btc, self.size("BTC", 20_000), 2**256 - 1, sender=trader),
            "a delayed vault order: one fresh storage word and its event",
        )
        self.tick()  # the feeds publish a price observed after the delay
        self.record(
            "settle_order",
            risk.settle_order(acct, btc, sender=keeper),
            "a keeper fills it: fresh oracle read, observation-time check, fee to a new wallet",
        )
        self.tick()  # closed again: the rows below see the book they saw before
        self.trade(trader, acct, btc, -p.clearinghouse.position(acct, btc)[0])

    def signed_batches(self, owners: list[Any]) -> None:
        """Batch settlement of signed orders: 20 fills between 40 distinct accounts (5
        sub-accounts of each of 8 owners), maker i sells to taker i at the oracle price.
        The first batch opens every account's first position with its first order
        (nonce 0: fresh replay-state words); the measured one adds to that one position
        with each account's second order, as a trader's steady state. Gas per fill is
        the batch's total transaction gas / 20. The same steady state again with 40
        portfolio-margin accounts (`batch_fill_20_portfolio`): their margin check is
        the full scan through `engine_check_fill`, not the inline check of a
        one-position isolated account, so this row shows what the common case saves."""
        for portfolio, first, steady in (
            (False, "batch_fill_20_first", "batch_fill_20"),
            (True, None, "batch_fill_20_portfolio"),
        ):
            self._signed_batches(owners, portfolio, first, steady)

    def _signed_batches(
        self, owners: list[Any], portfolio: bool, first: str | None, steady: str
    ) -> None:
        from perpdex.sdk import orders as so

        p, ch, chain = self.p, self.p.clearinghouse, self.chain
        assert p.orders is not None
        mode = "portfolio" if portfolio else "isolated"
        accts: list[tuple[Any, int]] = []
        for who in owners:
            self.fund(who, 250_000)
            for _ in range(2 * BATCH_FILLS // len(owners)):
                acct = int(ch.open_account(f"signed-{mode}", portfolio, sender=who).return_value)
                p.ops.deposit(acct, p.token, 50_000 * self.unit, sender=who)
                accts.append((who, acct))

        def batch(nonce: int, usd: int) -> list[int]:
            price = int(p.oracle.latest(0)[0])
            size = self.size("BTC", usd)
            expiry = chain.pending_timestamp + 3_600
            fills = []
            for i in range(BATCH_FILLS):
                (mo, ma), (to, ta) = accts[2 * i], accts[2 * i + 1]
                legs = []
                for who, acct, sign in ((mo, ma, -1), (to, ta, 1)):
                    order = so.Order(acct, 0, sign * size, price, expiry, nonce)
                    sig = so.sign_order(order, who.private_key, chain.chain_id, ch.address)
                    legs.append(so.SignedOrder(order, sig))
                fills.append(so.MatchedFill(legs[0], legs[1], size))
            return so.encode_fill_batch(fills)

        for key, nonce, usd, note in (
            (first, 0, 20_000, "first order of each account: opens it"),
            (steady, 1, 5_000, f"{mode}-margin accounts with one position; per fill"),
        ):
            self.tick()
            words = batch(nonce, usd)
            tx = p.orders.settle(words, sender=self.admin)
            if key is None:
                continue
            self.txs[key] = tx
            data = bytes(tx.data)
            per_fill = int(tx.gas_used) // BATCH_FILLS
            row = Row(key, per_fill, len(data), note, data, str(ch.address))
            fee = _batch_fee_usd(row)
            row.note = (
                f"{note} (gas / {BATCH_FILLS}; calldata and Fjord L1 fee of the batch: "
                f"{len(data) // BATCH_FILLS} bytes, ${fee / BATCH_FILLS:.5f} per fill)"
            )
            self.rows.append(row)

    def conditional_stop(self, trader: Any, keeper: Any) -> None:
        """A keeper executes a stop-loss (reduce-only, $1 keeper fee) of a 1-BTC long
        after BTC fell through its trigger, with a price keeper's `refresh` two seconds
        before, as the trades' rows: the trigger read at the oracle, the EIP-712
        signature, the nonce, the fill against the vault and the fee through the
        withdrawal gate, paid in tokens to the keeper."""
        from perpdex.sdk import orders as so

        p, ch, chain = self.p, self.p.clearinghouse, self.chain
        assert p.orders is not None
        self.fund(trader, 50_000)
        acct = int(ch.open_account("stop", False, sender=trader).return_value)
        p.ops.deposit(acct, p.token, 50_000 * self.unit, sender=trader)
        self.tick()
        self.trade(trader, acct, 0, WAD)
        order = so.stop_loss(
            acct,
            0,
            -WAD,
            99_000 * WAD,
            expiry=chain.pending_timestamp + 3_600,
            nonce=2**32,
            keeper_fee=WAD,
        )
        sig = so.sign_order(order, trader.private_key, chain.chain_id, ch.address)
        chain.pending_timestamp += 30
        self.set_btc(98_000)
        p.ops.refresh([0], sender=self.admin)
        chain.pending_timestamp += 2
        tx = p.orders.execute_order(*so.execute_args(so.SignedOrder(order, sig)), sender=keeper)
        self.record(
            "execute_stop",
            tx,
            "a keeper fires a reduce-only stop-loss closing a 1-BTC long; $1 keeper fee",
        )
        self.set_btc(int(p.system.market("BTC").price))

    def set_btc(self, usd: int) -> None:
        for f in self.p.feeds["BTC"]:
            f.set_answer(usd * 10**8, sender=self.admin)

    def liquidation(self, trader: Any, keeper: Any, keeper2: Any) -> None:
        """A 1-BTC account falls below maintenance over 20 minutes (the time-weighted
        price follows); a keeper starts its liquidation and two keepers take the tranche:
        one into an account that already holds BTC, one into a fresh account."""
        p, ch, unit = self.p, self.p.clearinghouse, self.unit
        victim = int(ch.open_account("victim", False, sender=trader).return_value)
        self.traced_accounts.append(victim)
        p.ops.deposit(victim, p.token, 12_000 * unit, sender=trader)
        self.tick()
        self.trade(trader, victim, 0, self.size("BTC", 100_000))
        seasoned: list[int] = []  # keeper account ids
        fresh: list[int] = []
        for who, book in ((keeper, seasoned), (keeper2, fresh)):
            self.fund(who, 200_000)
            acct = int(ch.open_account("keeper", False, sender=who).return_value)
            p.ops.deposit(acct, p.token, 200_000 * unit, sender=who)
            book.append(acct)
            self.traced_accounts.append(acct)
        self.tick()
        self.trade(keeper, seasoned[0], 0, self.size("BTC", 1_000))
        for _ in range(20):  # BTC at 90,000 for 20 minutes
            self.chain.pending_timestamp += 60
            self.set_btc(90_000)
            for sym in ("ETH", "SOL"):
                for f in p.feeds[sym]:
                    f.set_answer(int(p.system.market(sym).price * 10**8), sender=self.admin)
            p.ops.refresh([0, 1, 2], sender=self.admin)
        self.chain.pending_timestamp += 2
        self.record(
            "liquidation_start",
            self.auction.start(victim, seasoned[0], sender=keeper),
            "1-position account, tranche of half the book",
        )
        self.chain.pending_timestamp += 120
        self.record(
            "auction_take",
            self.auction.take(victim, seasoned[0], WAD // 2, sender=keeper),
            "into a keeper account already holding the market",
        )
        self.chain.pending_timestamp += 30
        self.record(
            "auction_take_fresh_account",
            self.auction.take(victim, fresh[0], WAD, sender=keeper2),
            "into a keeper account with no position yet",
        )
        # restore BTC for the rest of the benchmark
        self.chain.pending_timestamp += 60
        self.set_btc(int(p.system.market("BTC").price))


@functools.cache
def _layout(name: str) -> dict[str, Any]:
    """The compiler's storage layout of contracts/<name>.vy (for gastrace's slot names)."""
    out = subprocess.run(
        ["vyper", "-f", "layout", f"contracts/{name}.vy"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    layout: dict[str, Any] = json.loads(out)["storage_layout"]
    return layout


@functools.cache
def _pc_labels(name: str) -> dict[int, tuple[str, str]]:
    from perpdex.devtools import gastrace

    return gastrace.vyper_pc_labels(f"contracts/{name}.vy", cwd=str(ROOT))


def summarize(rows: list[Row], sizes: dict[str, int]) -> dict[str, int | float]:
    g = {r.key: r.gas for r in rows}
    batch = next(r for r in rows if r.key == "batch_fill_20")
    out: dict[str, int | float] = {
        "deposit": g["deposit"],
        "deposit_first": g["deposit_first"],
        "withdraw": g["withdraw"],
        "open_first_trade_of_market": g["open_first_trade_of_market"],
        "open_new_account": g["open_new_account"],
        "increase": g["increase"],
        "increase_same_block_mark": g["increase_same_block_mark"],
        "reduce": g["reduce"],
        "close": g["close"],
        "commit_order": g["commit_order"],
        "settle_order": g["settle_order"],
        "lp_deposit": g["lp_deposit"],
        "lp_withdraw": g["lp_withdraw"],
        "open_account": g["open_account"],
        "margin_check_1": g["margin_check_1_portfolio"],
        "margin_check_8_in_tx": g["margin_check_8_portfolio"] - g["external_call_overhead"],
        "margin_check_8": g["margin_check_8_portfolio"],
        "margin_check_1_isolated": g["margin_check_1_isolated"],
        "margin_check_8_isolated": g["margin_check_8_isolated"],
        "open_8th_position": g["open_8th_position_portfolio"],
        "open_8th_position_isolated": g["open_8th_position_isolated"],
        "trade_multi_3": g["trade_multi_3"],
        "liquidation_start": g["liquidation_start"],
        "auction_take": g["auction_take"],
        "auction_take_fresh_account": g["auction_take_fresh_account"],
        "per_position_increase": per_position(g, "portfolio"),
        "per_position_increase_isolated": per_position(g, "isolated"),
        "batch_fill_20": g["batch_fill_20"],
        "batch_fill_20_first": g["batch_fill_20_first"],
        "batch_fill_20_portfolio": g["batch_fill_20_portfolio"],
        "execute_stop": g["execute_stop"],
        "batch_fill_20_calldata_bytes_per_fill": batch.calldata // BATCH_FILLS,
        "batch_fill_20_l1_fee_usd_per_fill": round(float(_batch_fee_usd(batch)) / BATCH_FILLS, 6),
    }
    for r in rows:
        if r.floor is not None:
            out[f"{r.key}_floor"] = r.floor.total
    for name, size in sizes.items():
        out[f"bytecode_{name}"] = size
    return out


def per_position(g: dict[str, int], mode: str) -> int:
    """Mean extra gas per open position, from the 1- and 8-position increases."""
    return (g[f"increase_8pos_{mode}"] - g[f"increase_1pos_{mode}"]) // 7


def bytecode_sizes(project: Any) -> dict[str, int]:
    from perpdex.sdk.manifest import CODE_HALVES

    names = [
        *CODE_HALVES,
        "ClearinghouseLens",
        "OracleRouter",
        "LiquidityVault",
        "LiquidationAuction",
    ]
    sizes = {}
    for n in names:
        try:
            ct = getattr(project, n)
        except AttributeError:
            continue
        code = ct.contract_type.get_runtime_bytecode()
        if isinstance(code, str):
            code = bytes.fromhex(code.removeprefix("0x"))
        sizes[n] = len(code)
    return sizes


def _gwei(wei: int) -> str:
    text = f"{Decimal(wei) / 10**9:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


_P = feemodel.DEFAULTS
L1_FEE_NOTES = [
    "## L1 data fee: model and assumptions",
    "",
    "Each measured transaction's calldata is re-signed as an EIP-1559 (type 2) transaction "
    "(`perpdex.sdk.l1fee.signed_tx`: chain id 8453 for the OP stack, 42161 for Arbitrum, "
    "nonce 1,000, the SDK's padded gas limit, a throwaway key whose 64 signature bytes are "
    "incompressible like any real signature), and the signed bytes, type byte and RLP "
    "envelope included, are priced as the nodes price them (`perpdex gas` prints the same "
    "figures for the user operations, with Ecotone too):",
    "",
    "- **OP stack, Fjord** (op-geth `NewL1CostFuncFjord`): `estimatedSize = max(100e6, "
    "-42,585,600 + 836,500 x fastlzSize)`, fee = `estimatedSize x (16 x baseFeeScalar x "
    "l1BaseFee + blobBaseFeeScalar x blobBaseFee) / 1e12`, fastlzSize the FastLZ level-1 "
    "size of the signed transaction (`perpdex.sdk.l1fee.flz_compress`, checked against "
    "op-geth's published vectors in tests/unit/test_l1fee.py).",
    "- **OP stack, Ecotone** (before Fjord): `(4 x zero bytes + 16 x non-zero bytes) x "
    "(16 x baseFeeScalar x l1BaseFee + blobBaseFeeScalar x blobBaseFee) / 16e6`.",
    "- **Arbitrum** (Nitro `getPosterUnitsWithoutCache`): 16 units per byte of the signed "
    f"transaction brotli-compressed at level {_P.brotli_level} (ArbOS 20 and later; 22-bit "
    "window), times the L1 price per unit (`ArbGasInfo.getL1BaseFeeEstimate`). The chain "
    "charges it as extra L2 gas; the fee in wei is the same.",
    "",
    "Fjord's regression floors the estimate at 100 bytes, reached below 171 FastLZ bytes: "
    "most rows here pay that minimum, and the rows whose bytes compress worse (withdraw, "
    "auction_take) pay more. Ecotone and Arbitrum price every byte.",
    "",
    f"Prices (assumptions, not live figures): L1 base fee {_gwei(_P.op.l1_base_fee)} gwei, "
    f"blob base fee {_gwei(_P.op.blob_base_fee)} gwei, Base-like scalars "
    f"{_P.op.base_fee_scalar} / {_P.op.blob_base_fee_scalar} (x 1e-6), Arbitrum's price per "
    f"unit {_gwei(_P.arb_l1_price_per_unit)} gwei (the OP-stack price of one compressed byte "
    f"/ 16, so both chains pay the same per compressed byte), ETH ${_P.eth_usd:,.0f}. "
    "`perpdex gas --rpc URL` reads the live figures from an L2 node.",
    "",
    "What the model leaves out: the sequencer compresses whole batches, so a transaction's "
    "real share of a batch is usually smaller than its own compressed size (Fjord's "
    "regression was fitted to that; Arbitrum charges the per-transaction estimate and "
    "reconciles the difference through its price per unit); small transactions barely "
    "compress alone (brotli's framing can make them a few bytes longer). View calls "
    "(`margin_check_*`, `external_call_overhead`) send no transaction and pay no L1 fee.",
]


def write(rows: list[Row], summary: dict[str, int | float], sizes: dict[str, int]) -> str:
    DOCS.mkdir(exist_ok=True)
    (DOCS / "gas.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        "# Gas table",
        "",
        "Generated by `ape run bench_gas` (perpdex/devtools/bench.py) on a fresh local "
        "deployment with the production config; do not edit by hand. Gas is total "
        "transaction gas (21,000 "
        "intrinsic included) unless noted; `margin_check_*` is the in-EVM gas of the "
        "requirement computation (GasProbe). Oracle feeds are mocks: a Chainlink proxy read "
        "costs roughly 5-8k more per source than the mock's.",
        "",
        "| operation | gas | budget | calldata bytes | signed tx bytes | FastLZ bytes | "
        "L1 fee Fjord (USD) | L1 fee Arbitrum (USD) | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        key = r.key.replace("_portfolio", "").replace("_isolated", " (isolated)")
        budget = BUDGETS.get(r.key.removesuffix("_portfolio"), 0)
        tx_bytes, flz, fjord, arb = _fee_cells(r)
        lines.append(
            f"| {key} | {r.gas:,} | {f'{budget:,}' if budget else ''} | {r.calldata} | "
            f"{tx_bytes} | {flz} | {fjord} | {arb} | {r.note} |"
        )
    lines += [
        "",
        "## Trades against their floor",
        "",
        "The floor is what the transaction cannot avoid, computed from its own trace: "
        f"{INTRINSIC_GAS:,} intrinsic + calldata (16 gas a non-zero byte, 4 a zero byte) + "
        f"per storage slot it changes one cold access and the write ({COLD_SLOAD + SSTORE_SET:,} "
        f"where the slot was zero, {COLD_SLOAD + SSTORE_RESET:,} otherwise) + every price-feed "
        "read (the cold call and the feed's own gas). Everything above it is reading state, "
        "the router, events and computation.",
        "",
        "| operation | gas | floor | gas / floor | calldata gas | slots set | slots changed | "
        "feed reads (gas) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.floor is None:
            continue
        f = r.floor
        lines.append(
            f"| {r.key} | {r.gas:,} | {f.total:,} | {r.gas / f.total:.2f} | {f.calldata:,} | "
            f"{f.slots_set} | {f.slots_reset} | {f.feed_reads} ({f.feed_gas:,}) |"
        )
    lines += [
        "",
        f"Extra gas per open position on a market order: "
        f"{summary['per_position_increase']:,} (portfolio), "
        f"{summary['per_position_increase_isolated']:,} (isolated); budget "
        f"{PER_POSITION_BUDGET:,}.",
        "",
        *L1_FEE_NOTES,
        "",
        "## Bytecode sizes (EIP-170 limit 24,576 bytes)",
        "",
        "| contract | bytes | headroom |",
        "|---|---:|---:|",
    ]
    for n, s in sizes.items():
        lines.append(f"| {n} | {s:,} | {CODE_SIZE_LIMIT - s:,} |")
    text = "\n".join(lines) + "\n"
    (DOCS / "gas.md").write_text(text)
    return text


def main() -> None:
    from ape import accounts, chain, project

    console = Console()
    console.print("[bold]perpdex gas benchmark[/bold]: deploying on a fresh local chain...")
    p = deploy_system(accounts.test_accounts[0], key="local", manifest=None)
    rows = Bench(p, accounts.test_accounts, chain, project).run()
    sizes = bytecode_sizes(project)
    summary = summarize(rows, sizes)
    write(rows, summary, sizes)
    t = Table(title="gas per operation (docs/gas.md)")
    for col in ("operation", "gas", "budget", "calldata", "tx", "FastLZ", "Fjord $", "Arb. $"):
        t.add_column(col, justify="right" if col != "operation" else "left")
    for r in rows:
        budget = BUDGETS.get(r.key.removesuffix("_portfolio"), 0)
        style = "red" if budget and r.gas > budget else ""
        t.add_row(
            r.key,
            f"{r.gas:,}",
            f"{budget:,}" if budget else "",
            str(r.calldata),
            *_fee_cells(r),
            style=style,
        )
    console.print(t)
    ft = Table(title="trades against their floor (docs/gas.md)")
    for col in ("operation", "gas", "floor", "gas/floor", "slots set", "slots changed", "feeds"):
        ft.add_column(col, justify="right" if col != "operation" else "left", no_wrap=True)
    for r in rows:
        if r.floor is not None:
            f = r.floor
            ft.add_row(
                r.key,
                f"{r.gas:,}",
                f"{f.total:,}",
                f"{r.gas / f.total:.2f}",
                str(f.slots_set),
                str(f.slots_reset),
                f"{f.feed_reads} ({f.feed_gas:,})",
            )
    console.print(ft)
    console.print(
        f"per extra position: {summary['per_position_increase']:,} gas (portfolio), "
        f"{summary['per_position_increase_isolated']:,} (isolated); budget {PER_POSITION_BUDGET:,}"
    )
    st = Table(title="bytecode sizes")
    st.add_column("contract")
    st.add_column("bytes", justify="right")
    for n, s in sizes.items():
        st.add_row(n, f"{s:,}", style="red" if s > CODE_SIZE_LIMIT else "")
    console.print(st)
    console.print(f"wrote {Path('docs/gas.md')} and {Path('docs/gas.json')}")
