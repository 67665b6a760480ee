"""PerpdexClient against the `protocol` fixture: accounts, collateral, margin, revert hints."""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from perpdex.config import ROOT
from perpdex.errors import DeploymentNotFound, PerpdexError, TransactionRejected
from perpdex.sdk.client import (
    REVERT_HINTS,
    UNKNOWN_REVERT_HINT,
    AccountInfo,
    Deployment,
    PerpdexClient,
    UnknownAccount,
    hint_for,
)
from perpdex.units import WAD

USDC = 10**6  # token units per dollar


@pytest.fixture
def client(protocol: Any, trader: Any) -> PerpdexClient:
    return PerpdexClient.from_protocol(protocol, trader)


@pytest.fixture
def funded(client: PerpdexClient, token: Any, trader: Any) -> int:
    """The trader's sub-account 0 holding 1,000 USDC, and 9,000 USDC left in the wallet."""
    token.mint(trader, 10_000 * USDC, sender=trader)
    acct = client.open_account("main")
    client.deposit(acct, Decimal(1000))
    return acct


@pytest.fixture
def seeded_pool(protocol: Any, h: Any, admin: Any) -> None:
    """Pool cash for market orders (the vault contract arrives later)."""
    protocol.admin.set_vault(admin, sender=admin)
    protocol.admin.vault_deposit(h.fund(admin, 1_000_000), sender=admin)


# --- construction ----------------------------------------------------------------------------


def test_from_protocol__records_the_deployment(client, protocol, ch, token, chain):
    d = client.deployment
    assert d.clearinghouse == ch.address
    assert d.token == token.address
    assert d.oracle == protocol.oracle.address
    assert d.clearinghouse_ops == ch.OPS()
    assert d.clearinghouse_admin != d.clearinghouse_ops
    assert d.markets == tuple(protocol.symbols)
    assert d.settlement_decimals == 6
    assert d.chain_id == chain.chain_id


def test_from_manifest__round_trips_through_a_file(client, trader, tmp_path):
    path = client.deployment.write(tmp_path / "local.json")
    loaded = PerpdexClient.from_manifest(path, trader)
    assert loaded.deployment == dataclasses.replace(client.deployment, path=path)
    assert loaded.clearinghouse.address == client.clearinghouse.address


def test_from_manifest__missing_file__raises(tmp_path):
    with pytest.raises(DeploymentNotFound, match="deploy first"):
        PerpdexClient.from_manifest(tmp_path / "nowhere.json")


def test_from_manifest__other_chain__raises(client, tmp_path):
    other = dataclasses.replace(client.deployment, chain_id=client.deployment.chain_id + 1)
    with pytest.raises(DeploymentNotFound, match="pick the matching --network"):
        PerpdexClient.from_manifest(other.write(tmp_path / "other.json"))


def test_from_manifest__no_code_at_address__raises(client, stranger, tmp_path):
    gone = dataclasses.replace(client.deployment, clearinghouse=stranger.address)
    with pytest.raises(DeploymentNotFound, match="redeploy"):
        PerpdexClient.from_manifest(gone.write(tmp_path / "gone.json"))


def test_from_manifest__incomplete_file__raises(tmp_path):
    path = tmp_path / "half.json"
    path.write_text('{"contracts": {"token": "0x00"}}')
    with pytest.raises(DeploymentNotFound, match="incomplete"):
        Deployment.load(path)


# --- accounts --------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 2**96 - 1])
def test_account_id__matches_the_chain(client, ch, trader, index):
    expected = (int(trader.address, 16) << 96) | index
    assert client.account_id(trader, index) == expected
    assert client.account_id(trader.address, index) == ch.account_id(trader, index)


def test_account_id__index_out_of_range__raises(client, trader):
    with pytest.raises(PerpdexError, match="out of range"):
        client.account_id(trader, 2**96)


def test_open_account__returns_the_next_id(client, ch, trader):
    first = client.open_account("basis")
    second = client.open_account("hedge", portfolio=True)
    assert first == client.account_id(trader, 0)
    assert second == client.account_id(trader, 1)
    assert ch.sub_account_count(trader) == 2
    assert ch.account_name(second) == "hedge"


def test_accounts__lists_names_and_modes(client, trader):
    a = client.open_account("basis")
    b = client.open_account("hedge", portfolio=True)
    assert client.accounts() == [
        AccountInfo(a, trader.address, 0, "basis", portfolio=False, in_liquidation=False),
        AccountInfo(b, trader.address, 1, "hedge", portfolio=True, in_liquidation=False),
    ]
    assert [i.mode for i in client.accounts(trader.address)] == ["isolated", "portfolio"]


def test_accounts__read_only_client_lists_another_owner(client, protocol, trader):
    client.open_account("basis")
    reader = PerpdexClient.from_protocol(protocol)
    assert [i.name for i in reader.accounts(trader)] == ["basis"]
    assert reader.accounts(protocol.token.address) == []


def test_open_account__name_above_32_bytes__raises(client, ch, trader):
    with pytest.raises(PerpdexError, match="shorten it to 32"):
        client.open_account("x" * 33)
    assert ch.sub_account_count(trader) == 0


def test_account__not_opened__raises(client, trader):
    with pytest.raises(UnknownAccount, match="open-account"):
        client.account(client.account_id(trader, 5))


# --- deposit ---------------------------------------------------------------------------------


def test_deposit__converts_dollars_and_approves(client, ch, token, trader):
    token.mint(trader, 2_000 * USDC, sender=trader)
    acct = client.open_account("main")
    assert token.allowance(trader, ch) == 0
    receipt = client.deposit(acct, Decimal("1234.56"))
    assert ch.balance_of(acct, 0) == 1_234_560_000 * 10**12
    assert token.balanceOf(trader) == 2_000 * USDC - 1_234_560_000
    assert token.allowance(trader, ch) == 0  # approved exactly the amount, then spent
    [event] = receipt.decode_logs(client.ops.Deposit)
    assert (event.account, event.amount) == (acct, 1_234_560_000)


def test_deposit__enough_allowance__does_not_approve_again(client, ch, token, trader):
    token.mint(trader, 2_000 * USDC, sender=trader)
    token.approve(ch, 5_000 * USDC, sender=trader)
    acct = client.open_account("main")
    client.deposit(acct, 1000)
    assert token.allowance(trader, ch) == 4_000 * USDC


def test_deposit__anyone_may_top_up(client, protocol, ch, token, hedger, funded):
    token.mint(hedger, 50 * USDC, sender=hedger)
    client.with_signer(hedger).deposit(funded, "50")
    assert ch.balance_of(funded, 0) == 1_050 * WAD


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("1.0000001", "round it to 6 places"),
        ("0", "above zero"),
        ("-5", "above zero"),
        ("abc", "not a number"),
        ("NaN", "above zero"),
    ],
)
def test_deposit__bad_amount__raises_before_sending(client, ch, funded, amount, message):
    with pytest.raises(PerpdexError, match=message):
        client.deposit(funded, amount)
    assert ch.balance_of(funded, 0) == 1_000 * WAD


def test_deposit__more_than_the_wallet__rejected(client, funded):
    with pytest.raises(TransactionRejected) as e:
        client.deposit(funded, "9000.01")
    assert e.value.action == "deposit"
    assert e.value.reason == "erc20: transfer amount exceeds balance"
    assert e.value.hint.startswith("your wallet holds less")


def test_deposit__unknown_account__rejected(client, token, trader):
    token.mint(trader, 10 * USDC, sender=trader)
    with pytest.raises(TransactionRejected) as e:
        client.deposit(client.account_id(trader, 3), 10)
    assert e.value.reason == "clearinghouse: unknown account"
    assert "perpdex open-account" in e.value.hint


def test_deposit__unlisted_token__raises(client, funded):
    with pytest.raises(PerpdexError, match="use one of: USDC"):
        client.deposit(funded, 1, token="WETH")


def test_deposit__read_only_client__needs_a_signer(protocol, funded):
    with pytest.raises(PerpdexError, match="needs a signer"):
        PerpdexClient.from_protocol(protocol).deposit(funded, 1)


# --- withdraw and transfer -------------------------------------------------------------------


def test_withdraw__pays_the_signer(client, ch, token, trader, funded):
    client.withdraw(funded, Decimal("400.5"))
    assert ch.balance_of(funded, 0) == 599_500_000 * 10**12
    assert token.balanceOf(trader) == 9_400_500_000


def test_withdraw__to_a_receiver(client, token, hedger, funded):
    client.withdraw(funded, 100, receiver=hedger)
    assert token.balanceOf(hedger) == 100 * USDC


def test_withdraw__more_than_balance__rejected_with_hint(client, ch, funded):
    with pytest.raises(TransactionRejected) as e:
        client.withdraw(funded, "1000.000001")
    assert e.value.reason == "clearinghouse: insufficient balance"
    assert e.value.hint == REVERT_HINTS["clearinghouse: insufficient balance"]
    assert str(e.value).startswith(
        "withdraw failed: clearinghouse: insufficient balance. deposit more or withdraw less"
    )
    assert ch.balance_of(funded, 0) == 1_000 * WAD


def test_withdraw__rejected_in_preflight__signs_nothing(client, trader, funded):
    nonce = trader.nonce
    with pytest.raises(TransactionRejected, match="insufficient balance"):
        client.withdraw(funded, 2_000)
    assert trader.nonce == nonce


def test_withdraw__without_preflight__same_rejection_from_ape(client, trader, funded):
    raw = PerpdexClient(client.deployment, trader, preflight=False)
    with pytest.raises(TransactionRejected) as e:
        raw.withdraw(funded, 2_000)
    assert e.value.__cause__.__class__.__name__ == "ContractLogicError"
    assert e.value.reason == "clearinghouse: insufficient balance"
    assert e.value.hint == REVERT_HINTS["clearinghouse: insufficient balance"]


def test_withdraw__by_non_owner__rejected(client, stranger, funded):
    with pytest.raises(TransactionRejected) as e:
        client.with_signer(stranger).withdraw(funded, 1)
    assert e.value.reason == "clearinghouse: not account owner"
    assert "--account <owner alias>" in e.value.hint


def test_withdraw__below_initial_margin__rejected(client, h, funded, seeded_pool):
    client.deposit(funded, 9_000)
    h.trade(client.signer, funded, "BTC", "0.5")
    m = client.margin(funded)
    assert 0 < m.initial < m.equity
    with pytest.raises(TransactionRejected) as e:
        client.withdraw(funded, (m.free + 1).quantize(Decimal("0.000001")))
    assert e.value.reason == "clearinghouse: below initial margin"
    assert e.value.hint.startswith("reduce positions or deposit first")
    client.withdraw(funded, (m.free / 2).quantize(Decimal("0.000001")))


def test_transfer__moves_between_sub_accounts(client, funded):
    other = client.open_account("hedge")
    client.transfer(funded, other, Decimal("250.25"))
    assert client.balances(funded) == {"USDC": Decimal("749.75")}
    assert client.balances(other) == {"USDC": Decimal("250.25")}


def test_transfer__same_account__rejected(client, funded):
    with pytest.raises(TransactionRejected) as e:
        client.transfer(funded, funded, 1)
    assert (e.value.action, e.value.reason) == ("transfer", "clearinghouse: same account")
    assert e.value.hint == "pick two different sub-accounts"


def test_transfer__to_another_owner__rejected(client, protocol, hedger, funded):
    theirs = client.with_signer(hedger).open_account("theirs")
    with pytest.raises(TransactionRejected) as e:
        client.transfer(funded, theirs, 1)
    assert e.value.reason == "clearinghouse: not account owner"


# --- operators -------------------------------------------------------------------------------


def test_set_operator__grants_and_revokes(client, ch, keeper, funded):
    client.set_operator(funded, keeper, True)
    assert client.is_operator(funded, keeper)
    assert ch.is_operator(funded, keeper)
    with pytest.raises(TransactionRejected, match="not account owner"):
        client.with_signer(keeper).withdraw(funded, 1)
    client.set_operator(funded, keeper, False)
    assert not ch.is_operator(funded, keeper)


def test_set_operator__by_non_owner__rejected(client, stranger, funded):
    with pytest.raises(TransactionRejected) as e:
        client.with_signer(stranger).set_operator(funded, stranger, True)
    assert e.value.reason == "clearinghouse: not account owner"


def test_set_operator__bad_address__raises(client, funded):
    with pytest.raises(PerpdexError, match="not an address"):
        client.set_operator(funded, "0x1234", True)


# --- balances, margin, summary ---------------------------------------------------------------


def test_margin__without_positions(client, funded):
    m = client.margin(funded)
    assert (m.equity, m.initial, m.maintenance, m.notional) == (Decimal(1000), 0, 0, 0)
    assert m.free == Decimal(1000)
    assert m.health is None


def test_margin__with_a_position_matches_the_view(client, ch, h, funded, seeded_pool):
    client.deposit(funded, 9_000)
    h.trade(client.signer, funded, "BTC", "0.1")
    m = client.margin(funded)
    raw = ch.account_margin(funded)
    assert m.equity * WAD == raw.equity
    assert m.initial * WAD == raw.initial
    assert m.maintenance * WAD == raw.maintenance
    price = ch.mark(0)[0]
    assert m.notional * WAD == (WAD // 10) * price // WAD
    assert 0 < m.maintenance < m.initial
    assert m.equity < Decimal(10_000)  # paid the taker fee
    assert m.health == m.equity / m.maintenance
    assert m.health > 1


def test_summary__combines_info_balances_and_margin(client, trader, funded):
    s = client.summary(funded)
    assert s.info == AccountInfo(funded, trader.address, 0, "main", False, False)
    assert s.balances == {"USDC": Decimal(1000)}
    assert s.margin == client.margin(funded)


def test_collaterals__settlement_token_first(client, token):
    [usdc] = client.collaterals()
    assert (usdc.index, usdc.symbol, usdc.address, usdc.decimals) == (0, "USDC", token.address, 6)
    assert client.collateral("usdc") == usdc
    assert client.collateral(token.address.lower()) == usdc


# --- the hint table --------------------------------------------------------------------------


def _revert_strings() -> set[str]:
    import snekmate

    roots = [ROOT / "contracts", Path(next(iter(snekmate.__path__)))]
    found: set[str] = set()
    for root in roots:
        for f in root.rglob("*.vy"):
            found.update(re.findall(r'"([a-z0-9_]+: [^"]+)"', f.read_text()))
    return found


def test_revert_hints__every_key_is_a_real_revert_string():
    missing = sorted(set(REVERT_HINTS) - _revert_strings())
    assert missing == [], f"REVERT_HINTS keys no contract raises: {missing}"


def test_revert_hints__cover_every_account_revert():
    accounts = (ROOT / "contracts/modules/accounts.vy").read_text()
    reasons = set(re.findall(r'"(clearinghouse: [^"]+)"', accounts))
    assert reasons - set(REVERT_HINTS) == set()


def test_hint_for__unknown_reason__says_where_to_look():
    assert hint_for("something: new") == UNKNOWN_REVERT_HINT
    assert hint_for(" clearinghouse: zero amount ") == "give an amount above zero"
