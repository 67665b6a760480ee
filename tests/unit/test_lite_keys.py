"""Test-account addresses without ape (perpdex/sdk/lite/keys.py): the same as eth-account's
BIP-44 derivation and ape's own test accounts, from the same settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from perpdex.sdk.lite import keys


def test_defaults_are_apes():
    from ape.utils.testing import (
        DEFAULT_NUMBER_OF_TEST_ACCOUNTS,
        DEFAULT_TEST_HD_PATH,
        DEFAULT_TEST_MNEMONIC,
    )

    assert keys.DEFAULT_MNEMONIC == DEFAULT_TEST_MNEMONIC
    assert keys.DEFAULT_HD_PATH == DEFAULT_TEST_HD_PATH
    assert keys.DEFAULT_COUNT == DEFAULT_NUMBER_OF_TEST_ACCOUNTS


@pytest.mark.parametrize("n", [0, 1, 7])
def test_test_account_address__equals_eth_accounts_derivation(n):
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    s = keys.test_accounts()
    expected = Account.from_mnemonic(s.mnemonic, account_path=f"{s.hd_path}/{n}").address
    assert keys.test_account_address(n) == expected


def test_test_account_address__equals_apes_test_accounts(accounts):
    for n in (0, 3):
        assert keys.test_account_address(n) == accounts[n].address


def test_other_mnemonic__other_addresses(tmp_path: Path):
    (tmp_path / "ape-config.yaml").write_text(
        "test:\n  mnemonic: abandon abandon abandon abandon abandon abandon abandon abandon "
        "abandon abandon abandon about\n  number_of_accounts: 3\n"
    )
    s = keys.test_accounts(tmp_path)
    assert s.count == 3
    other = keys.test_account_address(0, s)
    assert other != keys.test_account_address(0)
    # the BIP-44 test vector of this mnemonic (m/44'/60'/0'/0/0)
    assert other == "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
