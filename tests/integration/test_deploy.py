"""`deploy_system`: idempotent re-runs, the manifest, resuming, and the external inputs.

All of these also run on the fork (`make test-fork`), where the token, feeds and sequencer
feed are pre-existing contracts at config/networks.yaml[testnet-sim]'s addresses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from perpdex.config import load_networks
from perpdex.deploy import Protocol, deploy_system, load_protocol, network_key
from perpdex.sdk.manifest import HALVES, chain_halves

pytestmark = pytest.mark.fork

# manifest entries every deployment has (feeds is a mapping of lists)
SINGLE_CONTRACTS = (
    "token",
    "sequencer_feed",
    "oracle",
    "clearinghouse_risk",
    "clearinghouse_orders",
    "clearinghouse_admin",
    "clearinghouse_ops",
    "clearinghouse",
)


def addresses(p: Protocol) -> dict[str, Any]:
    out: dict[str, Any] = {
        "token": p.token.address,
        "oracle": p.oracle.address,
        "clearinghouse": p.clearinghouse.address,
        "feeds": {s: [f.address for f in fs] for s, fs in p.feeds.items()},
        "sequencer": p.sequencer.address if p.sequencer is not None else None,
    }
    for name in ("vault", "auction", "lens"):
        if (c := getattr(p, name)) is not None:
            out[name] = c.address
    return out


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return tmp_path / "deployments" / "test.json"


def test_deploy__second_run_sends_no_transaction(admin, manifest):
    key = network_key()
    first = deploy_system(admin, key=key, manifest=manifest)
    assert first.extra["transactions"] > 0
    logs: list[str] = []
    second = deploy_system(admin, key=key, manifest=manifest, log=logs.append)
    assert second.extra["transactions"] == 0
    assert addresses(second) == addresses(first)
    assert logs[-1] == f"deploy on {key}: existing deployment is complete, nothing to do"


def test_deploy__manifest_records_every_contract(admin, manifest, chain):
    key = network_key()
    p = deploy_system(admin, key=key, manifest=manifest)
    data = json.loads(manifest.read_text())
    assert data["network"] == key
    assert data["chain_id"] == chain.chain_id
    assert data["deployer"] == admin.address
    assert data["markets"] == p.symbols
    assert data["settlement_decimals"] == p.system.settlement_decimals
    c = data["contracts"]
    for name in SINGLE_CONTRACTS:
        assert len(chain.provider.get_code(c[name])) > 0, name
    assert c["clearinghouse"] == p.clearinghouse.address == p.ops.address == p.admin.address
    assert c["token"] == p.token.address
    assert c["oracle"] == p.oracle.address
    assert c["feeds"] == {s: [f.address for f in fs] for s, fs in p.feeds.items()}
    for m in p.system.markets:
        assert len(c["feeds"][m.symbol]) == m.oracle.sources
    if p.vault is not None:
        assert c["vault"] == p.vault.address
    # every code half, as the Clearinghouse delegates to it
    assert {k: c[k] for k, _, _ in HALVES} == chain_halves(p.clearinghouse.address)


def _older(manifest: Path) -> dict[str, str]:
    """Strip the Orders and Risk halves, as manifests written before they were recorded
    lack them; returns what they were."""
    data = json.loads(manifest.read_text())
    gone = {k: data["contracts"].pop(k) for k in ("clearinghouse_orders", "clearinghouse_risk")}
    manifest.write_text(json.dumps(data))
    return gone


def test_deploy__older_manifest__records_the_halves_from_the_chain(admin, manifest):
    """Before: a re-run on a manifest without the Orders and Risk halves deployed two new
    ones and recorded them, though the live Clearinghouse still delegates to the old
    ones. Now it records the halves the Clearinghouse names and sends nothing."""
    key = network_key()
    deploy_system(admin, key=key, manifest=manifest)
    gone = _older(manifest)
    logs: list[str] = []
    again = deploy_system(admin, key=key, manifest=manifest, log=logs.append)
    assert again.extra["transactions"] == 0
    c = json.loads(manifest.read_text())["contracts"]
    assert {k: c[k] for k in gone} == gone
    assert {k: c[k] for k, _, _ in HALVES} == chain_halves(again.clearinghouse.address)
    assert any("read from the Clearinghouse" in line for line in logs)


def test_manifest__sdk_records_loads_and_checks_every_half(admin, manifest, tmp_path):
    """The SDK's manifest (`Deployment`) writes, loads and checks all five halves; an
    older manifest still loads and works, with a warning that names the missing halves'
    addresses (read from the chain); a manifest whose halves are not the Clearinghouse's
    is refused."""
    import dataclasses

    from perpdex.errors import DeploymentNotFound
    from perpdex.sdk.client import PerpdexClient
    from perpdex.sdk.manifest import Deployment, ManifestWarning

    p = deploy_system(admin, key=network_key(), manifest=manifest)
    halves = chain_halves(p.clearinghouse.address)
    d = Deployment.from_protocol(p)
    assert d.halves() == halves
    written = d.write(tmp_path / "sdk.json")
    loaded = Deployment.load(written)
    assert loaded == dataclasses.replace(d, path=written)
    assert loaded.check_chain() == halves
    # an older manifest: loads, works, says what it lacks and where they are
    gone = _older(written)
    older = Deployment.load(written)
    assert older.clearinghouse_orders is None and older.clearinghouse_risk is None
    with pytest.warns(ManifestWarning) as caught:
        client = PerpdexClient.from_manifest(written)
    text = str(caught[0].message)
    assert "clearinghouse_orders and clearinghouse_risk" in text
    assert all(a in text for a in gone.values()) and "Re-run the deploy" in text
    assert client.markets()[0].symbol == p.symbols[0]
    # the deploy-side loader (the demo, scripts) checks and warns the same way
    _older(manifest)
    with pytest.warns(ManifestWarning):
        assert load_protocol(network_key(), manifest).extra["halves"] == halves
    # a half that is not the Clearinghouse's: refused
    wrong = dataclasses.replace(d, clearinghouse_risk=halves["clearinghouse_orders"])
    with pytest.raises(DeploymentNotFound, match="does not describe this deployment"):
        wrong.check_chain()


def test_deploy__resumes_from_a_partial_manifest(admin, manifest):
    """An interrupted deploy (here: the last steps missing) only redoes what is missing."""
    key = network_key()
    first = deploy_system(admin, key=key, manifest=manifest)
    data = json.loads(manifest.read_text())
    for name in ("clearinghouse", "vault"):
        data["contracts"].pop(name, None)
    manifest.write_text(json.dumps(data))

    resumed = deploy_system(admin, key=key, manifest=manifest)
    assert resumed.extra["transactions"] > 0
    assert resumed.clearinghouse.address != first.clearinghouse.address
    assert resumed.oracle.address == first.oracle.address
    assert resumed.token.address == first.token.address
    assert resumed.clearinghouse.market_count() == len(first.system.markets)
    assert deploy_system(admin, key=key, manifest=manifest).extra["transactions"] == 0


def test_deploy__unknown_network_key_says_what_to_do(admin):
    from perpdex.errors import ConfigError

    with pytest.raises(ConfigError, match="add one"):
        deploy_system(admin, key="no-such-network", manifest=None)


def test_deploy__oracle_reads_the_configured_feeds(protocol, chain):
    """Token, feeds and sequencer feed (mocks or pre-existing) are live for the oracle."""
    p = protocol
    grace = int(load_networks()[p.network].get("sequencer_grace", 3600))
    assert p.token.decimals() == p.system.settlement_decimals
    assert tuple(p.oracle.sequencer_config()) == (p.sequencer.address, grace)
    _, answer, started_at, _, _ = p.sequencer.latestRoundData()
    assert answer == 0  # up
    assert started_at < chain.blocks.head.timestamp - grace
    assert p.oracle.market_count() == len(p.system.markets)
    for m in p.system.markets:
        assert len(p.feeds[m.symbol]) == m.oracle.sources
        price = p.oracle.latest(p.market_id(m.symbol))[0]
        assert m.oracle.min_price <= price <= m.oracle.max_price


def test_deploy__uses_preexisting_contracts_when_not_mocked(protocol):
    """On testnet-sim (and any `mocks: false` network) nothing external is redeployed."""
    net = load_networks()[protocol.network]
    if net.get("mocks", False):
        pytest.skip(f"{protocol.network} deploys mocks; run `make test-fork` for this check")
    assert protocol.token.address == net["token"]
    assert protocol.sequencer.address == net["sequencer_feed"]
    for symbol, feeds in protocol.feeds.items():
        assert [f.address for f in feeds] == net["feeds"][symbol]


def test_deploy__hands_dangerous_powers_to_the_timelock(protocol, admin):
    """Networks with `timelock_delay` (testnet-sim, the L2 sepolias) end the deploy with
    the admin and oracle powers held by the Timelock, not by the deployer."""
    delay = int(load_networks()[protocol.network].get("timelock_delay", 0))
    if not delay:
        pytest.skip(f"{protocol.network} has no timelock_delay; run `make test-fork`")
    ch, oracle, tl = protocol.clearinghouse, protocol.oracle, protocol.timelock
    assert tl is not None and tl.get_minimum_delay() == delay
    assert ch.risk_book_delay() == delay
    assert ch.hasRole(ch.DEFAULT_ADMIN_ROLE(), tl) and not ch.hasRole(
        ch.DEFAULT_ADMIN_ROLE(), admin
    )
    for role in (oracle.DEFAULT_ADMIN_ROLE(), oracle.RISK_ROLE()):
        assert oracle.hasRole(role, tl) and not oracle.hasRole(role, admin)
    assert protocol.vault.owner() == tl.address
    assert protocol.auction.pending_owner() == tl.address


def test_deploy__manifest_drives_the_demo(admin, manifest, accounts):
    """The manifest is enough to rebuild every handle; the demo's steps run on it."""
    from rich.console import Console

    from perpdex.showcase import demo

    key = network_key()
    deployed = deploy_system(admin, key=key, manifest=manifest)
    p = demo.load_protocol(key, manifest)
    assert addresses(p) == addresses(deployed)

    traders = demo.create_traders(accounts)
    demo.fund_traders(p, traders)
    demo.open_accounts(p, traders)
    demo.deposit(p, traders)
    for t in traders:
        assert t.account_id is not None and t.account_id >> 96 == int(t.wallet.address, 16)
        assert p.clearinghouse.balance_of(t.account_id, 0) == int(t.deposit) * 10**18
    console = Console(record=True, width=120)
    console.print(demo.deployment_table(p), demo.balance_table(p, traders))
    text = console.export_text()
    assert p.clearinghouse.address in text
    # and every code half the manifest records (checked against the chain on load)
    c = json.loads(manifest.read_text())["contracts"]
    assert all(c[k] in text for k, _, _ in HALVES)
    assert "40,000.00" in text


def test_deploy__demo_without_manifest_says_what_to_do(tmp_path):
    from perpdex.errors import DeploymentNotFound
    from perpdex.showcase import demo

    with pytest.raises(DeploymentNotFound, match="ape run deploy"):
        demo.load_protocol("local", tmp_path / "missing.json")


def _other_chain(manifest: Path) -> None:
    """Make the manifest look as if written on a restarted anvil (another genesis)."""
    data = json.loads(manifest.read_text())
    data["genesis"] = "0x" + "ab" * 32
    manifest.write_text(json.dumps(data))


def test_manifest__of_another_chain_is_backed_up_before_a_fresh_deploy(admin, manifest):
    key = network_key()
    deploy_system(admin, key=key, manifest=manifest)
    _other_chain(manifest)
    before = manifest.read_text()
    logs: list[str] = []
    deploy_system(admin, key=key, manifest=manifest, log=logs.append)
    backups = list(manifest.parent.glob("test.*.bak.json"))
    assert len(backups) == 1
    assert backups[0].read_text() == before
    assert any("kept the previous manifest" in line for line in logs)


def test_manifest__client_refuses_one_of_another_chain(admin, manifest):
    from perpdex.errors import DeploymentNotFound
    from perpdex.sdk.client import PerpdexClient

    deploy_system(admin, key=network_key(), manifest=manifest)
    assert PerpdexClient.from_manifest(manifest).deployment.genesis is not None
    _other_chain(manifest)
    with pytest.raises(DeploymentNotFound, match=r"belongs to another chain .* Redeploy"):
        PerpdexClient.from_manifest(manifest)


def test_manifest__folder_override_keeps_throwaway_runs_apart(monkeypatch, tmp_path):
    from perpdex.deploy import DEPLOYMENTS_DIR, manifest_path

    assert manifest_path("local") == DEPLOYMENTS_DIR / "local.json"
    monkeypatch.setenv("PERPDEX_DEPLOYMENTS_DIR", str(tmp_path / "demo"))
    assert manifest_path("local") == tmp_path / "demo" / "local.json"
