"""Deploy the perpdex suite; used by `ape run deploy`, the demo and the test fixtures.

`deploy_system` is idempotent: it resumes from the network's manifest
(deployments/<network>.json), checks that each recorded contract still has code, and only
sends the transactions whose on-chain state differs from config (a re-run on a complete
deployment sends none). Each step is saved to the manifest as soon as it lands, so an
interrupted deploy resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perpdex.config import (
    ROOT,
    RiskConfig,
    SystemConfig,
    load_networks,
    load_risk,
    load_system,
)
from perpdex.errors import ConfigError, DeploymentNotFound
from perpdex.sdk import gas, riskbook
from perpdex.sdk.manifest import HALVES, chain_halves, verify_halves

FEED_DECIMALS = 8
# Manifest keys of contracts deployed after the core suite -> contract names.
OPTIONAL_CONTRACTS: dict[str, str] = {
    "vault": "LiquidityVault",
    "lens": "ClearinghouseLens",
    "auction": "LiquidationAuction",
    "timelock": "Timelock",
}
DEPLOYMENTS_DIR = ROOT / "deployments"


@dataclass
class Protocol:
    """Every deployed contract, with the Clearinghouse under its four ABIs."""

    network: str
    system: SystemConfig
    token: Any
    oracle: Any
    clearinghouse: Any  # hot-path ABI
    ops: Any  # ClearinghouseOps ABI at the Clearinghouse address
    admin: Any  # ClearinghouseAdmin ABI at the Clearinghouse address
    feeds: dict[str, list[Any]]
    sequencer: Any | None
    vault: Any | None = None
    auction: Any | None = None
    lens: Any | None = None
    timelock: Any | None = None
    orders: Any | None = None  # ClearinghouseOrders ABI at the Clearinghouse address
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def risk(self) -> Any:
        """ClearinghouseRisk ABI at the Clearinghouse address (auto-deleveraging, the
        vault's limits)."""
        return _at("ClearinghouseRisk", self.clearinghouse.address)

    @property
    def symbols(self) -> list[str]:
        return [m.symbol for m in self.system.markets]

    def market_id(self, symbol: str) -> int:
        return self.system.market_id(symbol)


def network_key() -> str:
    """Manifest/config key of the connected ape network (PERPDEX_NETWORK overrides)."""
    import os

    from ape import networks

    if key := os.environ.get("PERPDEX_NETWORK"):
        return key
    net = networks.provider.network
    eco, name = net.ecosystem.name, net.name.removesuffix("-fork")
    return "local" if name == "local" else f"{eco}-{name}"


def deployments_dir() -> Path:
    """Where manifests live: deployments/, or PERPDEX_DEPLOYMENTS_DIR (the demo and other
    throw-away runs use their own folder, so they never touch a manifest a user relies on)."""
    import os

    override = os.environ.get("PERPDEX_DEPLOYMENTS_DIR")
    return Path(override).expanduser() if override else DEPLOYMENTS_DIR


def manifest_path(key: str) -> Path:
    return deployments_dir() / f"{key}.json"


def backup_manifest(path: Path, log: Callable[[str], None] = lambda _m: None) -> Path | None:
    """Copy `path` aside (`<name>.<UTC time>.bak.json`) before it is replaced; None if there
    was nothing to keep."""
    import shutil
    import time

    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    backup = path.with_name(f"{path.stem}.{stamp}.bak.json")
    n = 1
    while backup.exists():
        n += 1
        backup = path.with_name(f"{path.stem}.{stamp}-{n}.bak.json")
    shutil.copy2(path, backup)
    log(f"kept the previous manifest as {backup}")
    return backup


def _has_code(address: str | None) -> bool:
    from ape import chain

    return bool(address) and len(chain.provider.get_code(address)) > 0


def _at(name: str, address: str) -> Any:
    from ape import Contract, project

    from perpdex.sdk.handles import contract_type

    return Contract(address, contract_type=contract_type(project, name))


def _deploy(deployer: Any, container: Any, *args: Any) -> Any:
    """`deployer.deploy(container, *args)` with a padded gas estimate, like every other
    perpdex transaction (perpdex.sdk.gas). ape sends a creation on a live network with the
    bare `eth_estimateGas` figure, which leaves nothing for an L2's L1-fee component or
    the price moving between the estimate and the block (found by
    `python -m perpdex.devtools.devnet l2-dry-run`)."""
    from ape import chain

    txn = container(*args)
    txn.sender = deployer.address
    estimate = int(chain.provider.estimate_gas_cost(txn))
    return deployer.deploy(container, *args, gas_limit=gas.padded_gas(estimate))


class _Manifest:
    def __init__(self, path: Path | None, key: str) -> None:
        self.path = path
        self.data: dict[str, Any] = {"network": key, "contracts": {}}
        if path and path.exists():
            self.data = json.loads(path.read_text())
            self.data.setdefault("contracts", {})

    def get(self, name: str) -> Any:
        return self.data["contracts"].get(name)

    def put(self, name: str, value: Any) -> None:
        self.data["contracts"][name] = value
        self.save()

    def save(self) -> None:
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n")


def deploy_system(
    deployer: Any,
    *,
    key: str = "local",
    system: SystemConfig | None = None,
    risk: RiskConfig | None = None,
    manifest: Path | None = None,
    timelock_delay: int | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> Protocol:
    """Deploy (or resume, or verify) the suite and return handles to every contract.

    `manifest=None` keeps nothing on disk (tests); scripts pass `manifest_path(key)`.
    `timelock_delay` (seconds; default: the network's `timelock_delay` in
    config/networks.yaml, 0 = none) hands the dangerous powers to a Timelock at the end
    (see `_hand_over`).
    """
    from ape import chain, project

    system = system or load_system()
    risk = risk or load_risk()
    nets = load_networks()
    if key not in nets:
        raise ConfigError(f"config/networks.yaml has no entry {key!r}; add one (see its header)")
    net = nets[key]
    mf = _Manifest(manifest, key)
    # a manifest belongs to one chain: anvil restarts reuse chain id 31337 and even the
    # same addresses, so identify the chain by its genesis block instead
    genesis = chain.blocks[0].hash.hex()
    if mf.data.get("genesis") not in (None, genesis):
        log(f"{manifest} records a deployment on another chain (genesis differs): deploying afresh")
        if manifest is not None:
            backup_manifest(manifest, log)
        mf.data = {"network": key, "contracts": {}}
    mf.data["chain_id"] = chain.chain_id
    mf.data["genesis"] = genesis
    sent = 0

    def reuse_or_deploy(name: str, contract: str, *args: Any) -> Any:
        nonlocal sent
        addr = mf.get(name)
        if _has_code(addr):
            return _at(contract, addr)
        inst = _deploy(deployer, getattr(project, contract), *args)
        sent += 1
        log(f"deployed {contract:<22} {inst.address}  ({name})")
        mf.put(name, inst.address)
        return inst

    def external(name: str) -> str:
        addr = net.get(name)
        if not _has_code(addr):
            raise ConfigError(
                f"config/networks.yaml[{key}].{name} = {addr!r} has no code on this chain; "
                "set the right address or use `mocks: true`"
            )
        return str(addr)

    mocks = bool(net.get("mocks", False))
    # --- settlement token, feeds, sequencer feed ------------------------------------
    if mocks:
        token = reuse_or_deploy(
            "token",
            "MockERC20",
            f"Test {system.settlement_symbol}",
            system.settlement_symbol,
            system.settlement_decimals,
        )
        feeds: dict[str, list[Any]] = {}
        for m in system.markets:
            addrs = mf.get("feeds") or {}
            have = [a for a in addrs.get(m.symbol, []) if _has_code(a)]
            if len(have) == m.oracle.sources:
                feeds[m.symbol] = [_at("MockAggregator", a) for a in have]
                continue
            answer = int(m.price * 10**FEED_DECIMALS)
            feeds[m.symbol] = [
                _deploy(deployer, project.MockAggregator, FEED_DECIMALS, answer)
                for _ in range(m.oracle.sources)
            ]
            sent += m.oracle.sources
            addrs[m.symbol] = [f.address for f in feeds[m.symbol]]
            mf.put("feeds", addrs)
            log(f"deployed {m.oracle.sources} mock feeds for {m.symbol}")
        sequencer = reuse_or_deploy("sequencer_feed", "MockAggregator", 0, 0)
        grace = int(net.get("sequencer_grace", 3600))
        now = chain.pending_timestamp
        if sequencer.latestRoundData()[2] > now - grace:
            # report "up since before the grace period" so trading starts at once
            gas.send(
                "set_round_data", sequencer.set_round_data, 0, now - grace - 1, now, sender=deployer
            )
            sent += 1
    else:
        token = _at("MockERC20", external("token"))
        feeds = {
            m.symbol: [_at("MockAggregator", a) for a in net["feeds"][m.symbol]]
            for m in system.markets
        }
        sequencer = _at("MockAggregator", external("sequencer_feed"))
        mf.put("token", token.address)
        mf.put("feeds", {s: [f.address for f in fs] for s, fs in feeds.items()})
        mf.put("sequencer_feed", sequencer.address)

    # --- oracle router --------------------------------------------------------------
    oracle = reuse_or_deploy("oracle", "OracleRouter")
    for i, m in enumerate(system.markets):
        if oracle.market_count() > i:
            continue
        o = m.oracle
        gas.send(
            "add_market",
            oracle.add_market,
            *o.add_market_args([f.address for f in feeds[m.symbol]]),
            sender=deployer,
        )
        sent += 1
        log(f"oracle: listed {m.symbol} as market {i} ({len(feeds[m.symbol])} sources)")
    grace = int(net.get("sequencer_grace", 3600))
    if tuple(oracle.sequencer_config()) != (sequencer.address, grace):
        gas.send(
            "set_sequencer_feed",
            oracle.set_sequencer_feed,
            sequencer.address,
            grace,
            sender=deployer,
        )
        sent += 1

    # --- clearinghouse: six code halves at one address ------------------------------
    live = mf.get("clearinghouse")
    if _has_code(live):
        # a live Clearinghouse fixes its halves: record the ones it delegates to (a
        # manifest written before the Orders and Risk halves were recorded lacks them,
        # and deploying new ones would record halves nothing calls)
        for name, address in chain_halves(str(live)).items():
            if mf.get(name) != address:
                log(f"manifest: {name} {address} (read from the Clearinghouse)")
                mf.put(name, address)
    treasury_half = reuse_or_deploy(
        "clearinghouse_treasury", "ClearinghouseTreasury", oracle, token
    )
    risk_half = reuse_or_deploy(
        "clearinghouse_risk", "ClearinghouseRisk", oracle, token, treasury_half
    )
    orders_half = reuse_or_deploy(
        "clearinghouse_orders", "ClearinghouseOrders", oracle, token, risk_half
    )
    admin_half = reuse_or_deploy(
        "clearinghouse_admin", "ClearinghouseAdmin", oracle, token, orders_half
    )
    ops_half = reuse_or_deploy("clearinghouse_ops", "ClearinghouseOps", oracle, token, admin_half)
    ch = reuse_or_deploy(
        "clearinghouse", "Clearinghouse", oracle, token, deployer.address, ops_half
    )
    ch = _at("Clearinghouse", ch.address)  # with the getters its Ops half answers
    ops = _at("ClearinghouseOps", ch.address)
    admin = _at("ClearinghouseAdmin", ch.address)
    orders = _at("ClearinghouseOrders", ch.address)
    for i, m in enumerate(system.markets):
        if ch.market_count() > i:
            continue
        gas.send("add_market", admin.add_market, m.params(), sender=deployer)
        sent += 1
        log(f"clearinghouse: listed {m.symbol} as market {i}")
    risk_abi = _at("ClearinghouseRisk", ch.address)
    for i, m in enumerate(system.markets):
        # delayed vault orders (modules/delayed.vy): the market's `delayed:` section
        want = m.delayed.args() if m.delayed else (0, 0, 0, 0)
        word = m.delayed.word() if m.delayed else 0
        if int(ops.delayed_config(i)) != word:
            gas.send("set_delayed_params", risk_abi.set_delayed_params, i, *want, sender=deployer)
            sent += 1
            log(f"clearinghouse: {m.symbol} delayed orders mode {want[0]}, min delay {want[1]}s")
    book = riskbook.encode(riskbook.from_config(risk, [m.symbol for m in system.markets]))
    current = ch.risk_book()
    if int(current, 16) == 0:
        gas.send("set_risk_book", admin.set_risk_book, book, sender=deployer)
        sent += 1
        log(f"clearinghouse: published risk book ({len(risk.scenarios)} scenarios)")
    elif bytes(chain.provider.get_code(current))[1:] != book:
        log(
            "note: the on-chain risk book differs from config/risk.yaml; "
            "publish it in bounded steps with `perpdex risk push`"
        )
    sysp = ch.system_params()
    if (sysp.insurance_bps, sysp.protocol_bps) != (system.insurance_bps, system.protocol_bps):
        gas.send(
            "set_fee_split",
            admin.set_fee_split,
            system.insurance_bps,
            system.protocol_bps,
            sender=deployer,
        )
        sent += 1
    if sysp.max_mark_age != system.max_mark_age:
        gas.send("set_max_mark_age", admin.set_max_mark_age, system.max_mark_age, sender=deployer)
        sent += 1
    if ch.loss_cap_fee() != system.loss_cap_fee:
        gas.send("set_loss_cap_fee", admin.set_loss_cap_fee, system.loss_cap_fee, sender=deployer)
        sent += 1

    # --- liquidity vault ------------------------------------------------------------
    lens = reuse_or_deploy("lens", "ClearinghouseLens", ch)
    vault = reuse_or_deploy(
        "vault",
        "LiquidityVault",
        lens,
        system.vault_decimals_offset,
        system.vault_withdraw_fee_bps,
        system.vault_min_withdraw_fee_bps,
    )
    if ch.vault() != vault.address:
        gas.send("set_vault", admin.set_vault, vault, sender=deployer)
        sent += 1
        log(f"clearinghouse: vault set to {vault.address}")

    # --- liquidation auction ------------------------------------------------------------
    assert system.liquidation is not None
    auction = reuse_or_deploy("auction", "LiquidationAuction", ch, system.liquidation.params())
    role = ch.LIQUIDATOR_ROLE()
    if not ch.hasRole(role, auction.address):
        gas.send("grantRole", admin.grantRole, role, auction, sender=deployer)
        sent += 1
        log(f"clearinghouse: LIQUIDATOR_ROLE granted to {auction.address}")

    delay = int(net.get("timelock_delay", 0)) if timelock_delay is None else timelock_delay
    timelock = None
    if delay:
        timelock = reuse_or_deploy("timelock", "Timelock", delay, [deployer.address], [ZERO])
        sent += _hand_over(deployer, timelock, delay, ch, admin, oracle, vault, auction, log)

    mf.data["markets"] = [m.symbol for m in system.markets]
    mf.data["settlement_decimals"] = system.settlement_decimals
    mf.data["deployer"] = deployer.address
    mf.save()
    log(
        f"deploy on {key}: {sent} transaction(s) sent"
        if sent
        else f"deploy on {key}: existing deployment is complete, nothing to do"
    )
    return Protocol(
        network=key,
        system=system,
        token=token,
        oracle=oracle,
        clearinghouse=ch,
        ops=ops,
        admin=admin,
        feeds=feeds,
        sequencer=sequencer,
        vault=vault,
        lens=lens,
        auction=auction,
        timelock=timelock,
        orders=orders,
        extra={"transactions": sent},
    )


ZERO = "0x" + "00" * 20


def _hand_over(
    deployer: Any,
    timelock: Any,
    delay: int,
    ch: Any,
    admin: Any,
    oracle: Any,
    vault: Any,
    auction: Any,
    log: Callable[[str], None],
) -> int:
    """Give the powers that could take users' money to the Timelock; returns txs sent.

    Clearinghouse DEFAULT_ADMIN_ROLE (role grants, `set_vault`, risk-book delay and step
    limits, unpause), OracleRouter admin and RISK_ROLE (sources, parameters), vault and
    auction ownership. Risk books then publish only `delay` after `propose_risk_book`.
    The deployer keeps the clearinghouse's RISK_ROLE (bounded market parameters, book
    proposals) and GUARDIAN_ROLE (an instant pause). Idempotent: each step is skipped
    once done; the auction's two-step ownership is accepted by a timelocked operation,
    executed by a re-run once the delay has passed.
    """
    sent = 0
    me, tl = deployer.address, timelock.address
    admin_role = ch.DEFAULT_ADMIN_ROLE()
    if ch.hasRole(admin_role, me):
        if int(ch.risk_book_delay()) != delay:
            gas.send("set_risk_book_delay", admin.set_risk_book_delay, delay, sender=deployer)
            sent += 1
        if not ch.hasRole(admin_role, tl):
            gas.send("grantRole", admin.grantRole, admin_role, tl, sender=deployer)
            sent += 1
        gas.send("renounceRole", admin.renounceRole, admin_role, me, sender=deployer)
        sent += 1
        log(f"clearinghouse: admin handed to the timelock ({delay} s)")
    # grant both before renouncing: granting needs the admin role
    oracle_roles = (oracle.RISK_ROLE(), oracle.DEFAULT_ADMIN_ROLE())
    for role in oracle_roles:
        if oracle.hasRole(role, me) and not oracle.hasRole(role, tl):
            gas.send("grantRole", oracle.grantRole, role, tl, sender=deployer)
            sent += 1
    for role in oracle_roles:
        if oracle.hasRole(role, me):
            gas.send("renounceRole", oracle.renounceRole, role, me, sender=deployer)
            sent += 1
            log(f"oracle: role {role.hex()[:10]}… handed to the timelock")
    if vault.owner() == me:
        gas.send("transfer_ownership", vault.transfer_ownership, tl, sender=deployer)
        sent += 1
        log("vault: ownership handed to the timelock")
    if auction.owner() == me and auction.pending_owner() != tl:
        gas.send("transfer_ownership", auction.transfer_ownership, tl, sender=deployer)
        sent += 1
    if auction.owner() != tl and auction.pending_owner() == tl:
        call = auction.accept_ownership.encode_input()
        salt = b"\x00" * 32
        op = timelock.hash_operation(auction.address, 0, call, b"\x00" * 32, salt)
        if not timelock.is_operation(op):
            gas.send(
                "schedule",
                timelock.schedule,
                auction.address,
                0,
                call,
                b"\x00" * 32,
                salt,
                delay,
                sender=deployer,
            )
            sent += 1
            log(
                f"auction: ownership transfer scheduled; re-run the deploy after "
                f"{delay} s to execute it"
            )
        elif timelock.is_operation_ready(op):
            gas.send(
                "execute",
                timelock.execute,
                auction.address,
                0,
                call,
                b"\x00" * 32,
                salt,
                sender=deployer,
            )
            sent += 1
            log("auction: ownership accepted by the timelock")
    return sent


def load_protocol(key: str | None = None, path: Path | None = None) -> Protocol:
    """Contract handles for the deployment recorded in deployments/<key>.json."""
    from ape import chain

    key = key or network_key()
    path = path or manifest_path(key)
    if not path.exists():
        raise DeploymentNotFound(
            f"{path} does not exist: deploy first with `ape run deploy --network <network>` "
            "(or run everything with `make demo`)"
        )
    data = json.loads(path.read_text())
    c = data.get("contracts", {})
    if data.get("genesis") not in (None, chain.blocks[0].hash.hex()):
        raise DeploymentNotFound(
            f"{path} records a deployment on another chain (a restarted anvil?); "
            "redeploy with `ape run deploy`"
        )
    if data.get("chain_id") not in (None, chain.chain_id):
        raise DeploymentNotFound(
            f"{path} is for chain {data['chain_id']}, connected to chain {chain.chain_id}; "
            "pick the right --network or redeploy with `ape run deploy`"
        )
    ch = c.get("clearinghouse")
    if not ch or not chain.provider.get_code(ch):
        raise DeploymentNotFound(
            f"{path} records no live clearinghouse on this chain (a restarted anvil?); "
            "redeploy with `ape run deploy`"
        )
    # the code halves it records are the ones the Clearinghouse delegates to (an older
    # manifest without the Orders and Risk halves loads, with a ManifestWarning)
    halves = verify_halves(path, ch, {key: c.get(key) for key, _, _ in HALVES})
    return Protocol(
        network=key,
        system=load_system(),
        token=_at("MockERC20", c["token"]),
        oracle=_at("OracleRouter", c["oracle"]),
        clearinghouse=_at("Clearinghouse", ch),
        ops=_at("ClearinghouseOps", ch),
        admin=_at("ClearinghouseAdmin", ch),
        orders=_at("ClearinghouseOrders", ch),
        feeds={s: [_at("MockAggregator", a) for a in fs] for s, fs in c["feeds"].items()},
        sequencer=_at("MockAggregator", c["sequencer_feed"]) if c.get("sequencer_feed") else None,
        **{f: _at(name, c[f]) for f, name in OPTIONAL_CONTRACTS.items() if c.get(f)},
        extra={"manifest": str(path), "chain_id": data.get("chain_id"), "halves": halves},
    )
