"""Revert strings -> what to do next: the one table of known refusals (`REVERT_HINTS`),
shared by the SDK, the CLI and the keepers, and the helpers that turn a revert into a
`TransactionRejected` carrying its hint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perpdex.errors import TransactionRejected

if TYPE_CHECKING:
    pass


# --- revert strings -> what to do next ---------------------------------------------------

#: Every revert string a user can meet, mapped to the next step. The SDK puts the hint on
#: `TransactionRejected`; the CLI prints it. Keys match the contracts exactly
#: (tests/integration/test_sdk_client.py checks each key still exists in contracts/).
REVERT_HINTS: dict[str, str] = {
    # accounts and collateral
    "clearinghouse: insufficient balance": (
        "deposit more or withdraw less; `perpdex account` shows the balances"
    ),
    "clearinghouse: below initial margin": (
        "reduce positions or deposit first; `perpdex account` shows the initial margin"
    ),
    "clearinghouse: unrealised profit is not withdrawable": (
        "open profit is withdrawable once realised: close or reduce the position first, or "
        "withdraw less; `perpdex withdraw` reports what is withdrawable now"
    ),
    "clearinghouse: below loss cap, reduce only": (
        "the account's equity is below its loss cap: only orders that reduce positions "
        "are accepted; deposit, or lower the cap (`perpdex loss-cap set` / `clear`)"
    ),
    "clearinghouse: would cross loss cap": (
        "this would leave equity below the account's loss cap; move less (`perpdex "
        "withdraw` reports what is withdrawable now) or lower the cap first"
    ),
    "clearinghouse: taker below loss cap": (
        "the taking account would end below its loss cap; take into another account or "
        "lower its cap"
    ),
    "clearinghouse: loss-cap window used up": (
        "forced closes in these markets reached their per-window size; try again in a minute"
    ),
    "clearinghouse: not account owner": (
        "only the owner of the account can do this (a transfer between two of its "
        "sub-accounts: also an operator of both); sign as the owner "
        "(CLI: --account <owner alias>)"
    ),
    "clearinghouse: not authorized": (
        "only the owner or an operator it approved can trade this account; sign as the "
        "owner (CLI: --account <owner alias>) or have the owner approve you "
        "(`perpdex operator add ADDRESS`)"
    ),
    "clearinghouse: unknown account": (
        "open the sub-account first (`perpdex open-account NAME`) or check the id with "
        "`perpdex account`"
    ),
    "clearinghouse: zero amount": "give an amount above zero",
    "clearinghouse: same account": "pick two different sub-accounts",
    "clearinghouse: unknown token": (
        "use a listed collateral token; `perpdex account` shows the balances by token"
    ),
    "clearinghouse: zero receiver": "give the receiver's address",
    "clearinghouse: zero operator": "give the operator's address",
    "clearinghouse: no accounts": "list at least one of your accounts to revoke the operator on",
    "clearinghouse: account in liquidation": (
        "the account is frozen until its liquidation auction settles; wait for it"
    ),
    "clearinghouse: deposit cap reached": (
        "this token's deposit cap is full; deposit less or use the settlement token"
    ),
    "clearinghouse: nothing received": (
        "the token moved nothing; check the token address and your wallet balance"
    ),
    "clearinghouse: transfer failed": (
        "the token refused the transfer; check your wallet balance and allowance"
    ),
    "clearinghouse: mode unchanged": (
        "the account already uses that margin mode; `perpdex account` shows each mode"
    ),
    "clearinghouse: mode switch leaves account under-margined": (
        "reduce positions or deposit before switching margin mode"
    ),
    # trading
    "clearinghouse: paused": (
        "the exchange is paused by its guardian; only risk-reducing orders work until it resumes"
    ),
    "clearinghouse: market paused": "this market is paused; trade another market or wait",
    "clearinghouse: unknown market": "use a listed market; `perpdex quote` lists them",
    "clearinghouse: zero size": "give a size above zero",
    "clearinghouse: no legs": "give at least one SYMBOL SIZE pair",
    "clearinghouse: too many legs": (
        "a multi-leg order takes at most 8 legs; split it into several orders"
    ),
    "clearinghouse: market twice": (
        "a multi-leg order trades each market once; add the sizes of that market up"
    ),
    "clearinghouse: not reduce-only": "only orders that shrink the position are allowed here",
    # delayed vault orders (modules/delayed.vy)
    "clearinghouse: use commit_order": (
        "this market fills such vault trades only by delayed order, at a price observed "
        "after you commit: `perpdex trade ... --delayed` (SDK: commit_trade, then "
        "settle_order or a keeper's `perpdex keeper settle`)"
    ),
    "clearinghouse: no delayed orders in market": (
        "delayed orders are not configured for this market; trade it with a plain market order"
    ),
    "clearinghouse: delayed order pending": (
        "the account has a delayed order that may still settle: until it settles, is "
        "cancelled (before its settlement window opens) or expires, its owner and "
        "operators cannot trade, fill signed or conditional orders, withdraw, transfer "
        "out, change the loss cap or margin mode, or commit again in that market; "
        "deposits still work. Wait for a keeper to settle it (`perpdex keeper settle`); "
        "an expired one anyone may cancel (SDK: `pending_order`)"
    ),
    "clearinghouse: no delayed order": (
        "nothing is pending for this account and market: it was settled, cancelled or "
        "never committed (SDK: `pending_order`)"
    ),
    "clearinghouse: no price after commit yet": (
        "no oracle price observed after the order's delay has been published yet; retry "
        "after the next feed update (a keeper settles it then)"
    ),
    "clearinghouse: delayed order expired": (
        "no price arrived within the order's max age; cancel it (anyone may) and commit again"
    ),
    "clearinghouse: settlement window open": (
        "a price that may fill the order may already exist, so it can no longer be "
        "withdrawn: it settles or expires"
    ),
    "clearinghouse: size too large": "trade a smaller size",
    "clearinghouse: min position size": (
        "an order must leave the position closed or worth at least $100 at the oracle "
        "price; close it whole (`perpdex close SYMBOL`) or trade a larger size"
    ),
    "clearinghouse: too many positions": (
        "close a position first, or trade from another sub-account"
    ),
    "clearinghouse: price worse than acceptable": (
        "the price moved past your limit; quote again and retry, or widen the limit"
    ),
    "clearinghouse: open interest cap reached": (
        "the market's open-interest cap is full; trade smaller or wait for it to free up"
    ),
    "clearinghouse: vault exposure cap reached": (
        "the vault cannot take more of this side; trade smaller or take the other side"
    ),
    "clearinghouse: insufficient pool cash": (
        "the liquidity vault is short of cash; trade smaller or wait for LP deposits"
    ),
    "clearinghouse: price impact too large": (
        "trade smaller; this order would move the price too far"
    ),
    # signed orders (`settle`)
    "clearinghouse: operator fill worse than oracle": (
        "an order an operator signed fills only at the oracle price or better for the "
        "account (buy at or below it, sell at or above it); have the owner sign it, or "
        "match it at a better price"
    ),
    "clearinghouse: operator order in delayed market": (
        "in a market with delayed orders on, an operator trades the account only through "
        "delayed orders (`perpdex trade ... --delayed`, SDK: commit_trade); have the "
        "owner sign the order instead"
    ),
    "clearinghouse: off-oracle fill below maintenance or loss cap": (
        "a fill worse than the oracle price must leave the account above maintenance "
        "margin and its loss cap; fill at the oracle price, fill less, or deposit first"
    ),
    "clearinghouse: operator order with keeper fee": (
        "an operator may sign conditional orders only with a keeper fee of 0; the account's "
        "owner signs orders that pay keepers"
    ),
    "clearinghouse: sequencer down": "the L2 sequencer is down; wait until it is back up",
    "clearinghouse: sequencer grace period": (
        "the sequencer restarted recently; wait until its grace period has passed"
    ),
    "clearinghouse: no price quorum": (
        "fewer than two price sources agree right now, so the market is frozen (closes "
        "and liquidations too); it resumes by itself at the next update they agree on"
    ),
    "clearinghouse: no markets": "name at least one market to refresh",
    # quotes (ClearinghouseLens)
    "lens: zero size": "give a size other than zero, e.g. 0.5 to buy or -0.5 to sell",
    "lens: unknown market": "use a listed market; `perpdex quote` lists them",
    "lens: no price quorum": (
        "fewer than two price sources agree right now, so the market is frozen; "
        "quote again after the next update they agree on"
    ),
    # the liquidity vault
    "vault: zero amount": (
        "the amount is worth less than one share (or one token unit); give a larger amount"
    ),
    "vault: zero receiver": "give the receiver's address",
    "vault: pool is insolvent": (
        "the pool's equity is not positive, so deposits are closed until it recovers"
    ),
    "erc20: burn amount exceeds balance": (
        "you hold fewer LP shares than that; `perpdex lp status` shows what you can withdraw"
    ),
    # loss caps
    "clearinghouse: no loss cap": (
        "the account has no loss cap; its owner sets one with `perpdex loss-cap set USD`"
    ),
    "clearinghouse: equity above loss cap": (
        "the account's equity is not below its loss cap, so there is nothing to trigger; "
        "`perpdex loss-cap show --account-id ID` compares the two"
    ),
    "clearinghouse: close leaves negative equity": (
        "the account's losses exceed its collateral, so closing its last position would "
        "leave a debt; deposit to cover it, or leave the position to liquidation"
    ),
    "clearinghouse: no positions": (
        "the account has no open positions, so a loss cap has nothing to close"
    ),
    # the settlement token (snekmate's erc20 and the mocks)
    "erc20: transfer amount exceeds balance": (
        "your wallet holds less of this token; deposit less or fund the wallet first"
    ),
    "erc20: insufficient allowance": (
        "approve the clearinghouse for this token first (PerpdexClient.deposit does it)"
    ),
    "mock: transfer amount exceeds balance": (
        "your wallet holds less of this token; deposit less or fund the wallet first"
    ),
    "mock: insufficient allowance": (
        "approve the clearinghouse for this token first (PerpdexClient.deposit does it)"
    ),
    # roles
    "access_control: account is missing role": (
        "this needs a governance role; sign with the admin, risk or guardian account"
    ),
    "pausable: contract is paused": "the exchange is paused; wait until the guardian resumes it",
}

UNKNOWN_REVERT_HINT = (
    "the contract gave no known reason; check the account with `perpdex account` and that "
    "--network and --deployment point at the right chain"
)


def hint_for(reason: str) -> str:
    """What to do next after the contracts refused a transaction with `reason`."""
    return REVERT_HINTS.get(reason.strip(), UNKNOWN_REVERT_HINT)


def rejected(action: str, err: Exception) -> TransactionRejected:
    """`TransactionRejected` for an ape `ContractLogicError` raised while doing `action`."""
    reason = str(getattr(err, "revert_message", None) or err).strip() or "reverted"
    return TransactionRejected(action, reason, hint_for(reason))


def _call_revert_reason(err: Exception) -> str:
    """The revert string of a web3 `ContractLogicError` ("execution reverted: <reason>")."""
    text = str(getattr(err, "message", None) or err).strip()
    reason = text.removeprefix("execution reverted").removeprefix(":").strip()
    return reason or "reverted without a reason"
