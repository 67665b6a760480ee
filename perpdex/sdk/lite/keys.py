"""Addresses of ape's test accounts (the ones anvil funds) without ape or eth-account.

`test_account_address(n)` derives account `n` of ape's test mnemonic (ape-config.yaml's
`test:` section, else ape's defaults) along BIP-32/BIP-44 `hd_path/n`, as ape and anvil
do. Only the address comes out: the CLI's read commands need whose accounts to show,
never a key. Written with hashlib and eth-keys because importing eth-account costs more
than a whole read command's budget (tests/unit/test_lite_keys.py checks the result
against eth-account's own derivation and these defaults against ape's).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# ape.utils.testing's DEFAULT_TEST_MNEMONIC, DEFAULT_TEST_HD_PATH and
# DEFAULT_NUMBER_OF_TEST_ACCOUNTS
DEFAULT_MNEMONIC = "test test test test test test test test test test test junk"
DEFAULT_HD_PATH = "m/44'/60'/0'/0"
DEFAULT_COUNT = 10

_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141  # secp256k1 order
_HARDENED = 2**31


@dataclass(frozen=True)
class TestAccounts:
    """ape's test-account settings: the mnemonic, the HD path (account n is `path/n`) and
    how many there are."""

    __test__ = False  # not a pytest class

    mnemonic: str
    hd_path: str
    count: int


@cache
def test_accounts(root: Path | None = None) -> TestAccounts:
    """The `test:` settings of `root`/ape-config.yaml (default: this project's)."""
    import yaml

    from perpdex.config import ROOT

    path = (root or ROOT) / "ape-config.yaml"
    cfg = (yaml.safe_load(path.read_text()) or {}).get("test") or {} if path.exists() else {}
    return TestAccounts(
        mnemonic=str(cfg.get("mnemonic", DEFAULT_MNEMONIC)),
        hd_path=str(cfg.get("hd_path", DEFAULT_HD_PATH)),
        count=int(cfg.get("number_of_accounts", DEFAULT_COUNT)),
    )


def _public(key: int) -> bytes:
    """The compressed secp256k1 public key of a private key."""
    from eth_keys import keys

    point = keys.PrivateKey(key.to_bytes(32, "big")).public_key.to_bytes()  # x || y
    return bytes([2 + (point[-1] & 1)]) + point[:32]


def _path(hd_path: str) -> list[int]:
    parts = hd_path.strip().split("/")
    if parts[0] != "m":
        raise ValueError(f"HD path {hd_path!r} must start with m/")
    return [int(p[:-1]) + _HARDENED if p.endswith("'") else int(p) for p in parts[1:] if p != ""]


def private_key(mnemonic: str, hd_path: str) -> int:
    """BIP-39 seed (no passphrase) then BIP-32 private derivation along `hd_path`."""
    seed = hashlib.pbkdf2_hmac("sha512", mnemonic.encode(), b"mnemonic", 2048)
    digest = hmac.new(b"Bitcoin seed", seed, hashlib.sha512).digest()
    key, chain = int.from_bytes(digest[:32], "big"), digest[32:]
    for index in _path(hd_path):
        data = b"\x00" + key.to_bytes(32, "big") if index >= _HARDENED else _public(key)
        digest = hmac.new(chain, data + index.to_bytes(4, "big"), hashlib.sha512).digest()
        key, chain = (int.from_bytes(digest[:32], "big") + key) % _N, digest[32:]
    return key


def address_of(key: int) -> str:
    """The checksummed address of a private key."""
    from eth_keys import keys

    return str(keys.PrivateKey(key.to_bytes(32, "big")).public_key.to_checksum_address())


def test_account_address(n: int, settings: TestAccounts | None = None) -> str:
    """Address of ape's test account `n` (`test:n`)."""
    s = settings or test_accounts()
    path = s.hd_path if "{}" in s.hd_path else f"{s.hd_path.rstrip('/')}/{{}}"
    return address_of(private_key(s.mnemonic, path.format(n)))
