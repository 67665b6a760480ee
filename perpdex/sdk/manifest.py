"""Deployment manifests: `deployments/<network>.json` (written by `perpdex.deploy`) read
into a `Deployment`, checked against the connected chain, and resolved from a path, a
network key or the connected network.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perpdex.errors import DeploymentNotFound

if TYPE_CHECKING:
    from perpdex.deploy import Protocol
    from perpdex.sdk.transport import Transport


#: The contracts whose code runs at the Clearinghouse's address, in delegation order
#: (contracts/Clearinghouse.vy: each forwards what it does not export to the next).
CODE_HALVES: tuple[str, ...] = (
    "Clearinghouse",
    "ClearinghouseOps",
    "ClearinghouseAdmin",
    "ClearinghouseOrders",
    "ClearinghouseRisk",
    "ClearinghouseTreasury",
)

#: The Clearinghouse's code halves in delegation order (Clearinghouse -> Ops -> Admin ->
#: Orders -> Risk -> Treasury, contracts/Clearinghouse.vy): the manifest key, and the contract and
#: getter (an immutable) that names the half on the one before it.
HALVES: tuple[tuple[str, str, str], ...] = (
    ("clearinghouse_ops", "Clearinghouse", "OPS"),
    ("clearinghouse_admin", "ClearinghouseOps", "ADMIN"),
    ("clearinghouse_orders", "ClearinghouseAdmin", "ORDERS"),
    ("clearinghouse_risk", "ClearinghouseOrders", "RISK"),
    ("clearinghouse_treasury", "ClearinghouseRisk", "TREASURY"),
)


class ManifestWarning(UserWarning):
    """A manifest that still works but lacks something a newer deploy records."""


@dataclass(frozen=True)
class Deployment:
    """The addresses of one deployment, as recorded in `deployments/<network>.json`.

    `clearinghouse_orders`, `clearinghouse_risk` and `clearinghouse_treasury` are None in
    a manifest written before they were recorded: it still loads, and `check_chain` reads
    them from the chain and warns (ManifestWarning) until the deploy is re-run to record them."""

    network: str
    chain_id: int
    token: str
    oracle: str
    clearinghouse: str
    clearinghouse_ops: str
    clearinghouse_admin: str
    markets: tuple[str, ...]
    settlement_decimals: int
    feeds: dict[str, list[str]] = field(default_factory=dict)
    sequencer_feed: str | None = None
    vault: str | None = None
    lens: str | None = None
    auction: str | None = None
    path: Path | None = None
    genesis: str | None = None
    clearinghouse_orders: str | None = None
    clearinghouse_risk: str | None = None
    clearinghouse_treasury: str | None = None

    def halves(self) -> dict[str, str | None]:
        """The Clearinghouse's code halves as recorded, in delegation order (None: not
        recorded)."""
        return {key: getattr(self, key) for key, _, _ in HALVES}

    def check_chain(self, transport: Transport | None = None) -> dict[str, str]:
        """Refuses a manifest written on another chain than the node `transport` reaches
        (default: ape's connected provider): `check_chain` below; then one whose recorded
        code halves are not the ones its Clearinghouse delegates to. Returns the halves as
        the chain names them; warns (ManifestWarning) when the manifest lacks some."""
        where = self.path or self.network
        check_chain(where, self.chain_id, self.genesis, self.clearinghouse, transport)
        return verify_halves(where, self.clearinghouse, self.halves(), transport)

    @classmethod
    def load(cls, path: Path) -> Deployment:
        """Read a manifest file."""
        if not path.exists():
            raise DeploymentNotFound(
                f"no deployment manifest at {path}; deploy first (`ape run deploy --network "
                "<choice>`) or pass --deployment <manifest path>"
            )
        try:
            data = json.loads(path.read_text())
            c = data["contracts"]
            return cls(
                network=str(data.get("network", path.stem)),
                chain_id=int(data["chain_id"]),
                token=str(c["token"]),
                oracle=str(c["oracle"]),
                clearinghouse=str(c["clearinghouse"]),
                clearinghouse_ops=str(c["clearinghouse_ops"]),
                clearinghouse_admin=str(c["clearinghouse_admin"]),
                markets=tuple(str(s) for s in data["markets"]),
                settlement_decimals=int(data["settlement_decimals"]),
                feeds={str(k): [str(a) for a in v] for k, v in c.get("feeds", {}).items()},
                sequencer_feed=c.get("sequencer_feed"),
                vault=_optional(c.get("vault")),
                lens=_optional(c.get("lens")),
                auction=_optional(c.get("auction")),
                path=path,
                genesis=_optional(data.get("genesis")),
                clearinghouse_orders=_optional(c.get("clearinghouse_orders")),
                clearinghouse_risk=_optional(c.get("clearinghouse_risk")),
                clearinghouse_treasury=_optional(c.get("clearinghouse_treasury")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DeploymentNotFound(
                f"{path} is incomplete (missing or bad field {e}); re-run the deploy to "
                "finish it (`ape run deploy --network <choice>`)"
            ) from e

    @classmethod
    def from_protocol(cls, protocol: Protocol) -> Deployment:
        """The manifest of a deployment held as a `Protocol` (tests, scripts)."""
        from ape import chain

        # each read on the half before: values do not come back through the proxy
        halves = chain_halves(str(protocol.clearinghouse.address))
        return cls(
            network=protocol.network,
            chain_id=chain.chain_id,
            token=str(protocol.token.address),
            oracle=str(protocol.oracle.address),
            clearinghouse=str(protocol.clearinghouse.address),
            clearinghouse_ops=halves["clearinghouse_ops"],
            clearinghouse_admin=halves["clearinghouse_admin"],
            clearinghouse_orders=halves["clearinghouse_orders"],
            clearinghouse_risk=halves["clearinghouse_risk"],
            clearinghouse_treasury=halves["clearinghouse_treasury"],
            markets=tuple(protocol.symbols),
            settlement_decimals=protocol.system.settlement_decimals,
            feeds={s: [str(f.address) for f in fs] for s, fs in protocol.feeds.items()},
            sequencer_feed=str(protocol.sequencer.address) if protocol.sequencer else None,
            vault=str(protocol.vault.address) if protocol.vault is not None else None,
            lens=str(protocol.lens.address) if protocol.lens is not None else None,
            auction=str(protocol.auction.address) if protocol.auction is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        """The manifest layout `deploy_system` writes."""
        return {
            "network": self.network,
            "chain_id": self.chain_id,
            "contracts": {
                "token": self.token,
                "oracle": self.oracle,
                "clearinghouse": self.clearinghouse,
                "clearinghouse_ops": self.clearinghouse_ops,
                "clearinghouse_admin": self.clearinghouse_admin,
                "feeds": self.feeds,
                "sequencer_feed": self.sequencer_feed,
                **{
                    k: v
                    for k, v in (
                        ("clearinghouse_orders", self.clearinghouse_orders),
                        ("clearinghouse_risk", self.clearinghouse_risk),
                        ("clearinghouse_treasury", self.clearinghouse_treasury),
                        ("vault", self.vault),
                        ("lens", self.lens),
                        ("auction", self.auction),
                    )
                    if v is not None
                },
            },
            "markets": list(self.markets),
            "settlement_decimals": self.settlement_decimals,
            **({"genesis": self.genesis} if self.genesis else {}),
        }

    def write(self, path: Path) -> Path:
        """Save as a manifest file (creates the folder)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        return path


def check_chain(
    where: Any,
    chain_id: int,
    genesis: str | None,
    clearinghouse: str,
    transport: Transport | None = None,
) -> None:
    """Refuses a manifest (`where`) of another chain than the node `transport` reaches
    (default: ape's connected provider): its chain id, then its genesis hash (a restarted
    anvil keeps chain id 31337 and even the addresses), then the Clearinghouse's code.
    Every client and `perpdex risk diff|push` check this."""
    from perpdex.sdk.transport import ApeTransport

    t = transport if transport is not None else ApeTransport()
    here_id = t.chain_id()
    if here_id != chain_id:
        raise DeploymentNotFound(
            f"{where} is for chain {chain_id} but {t.describe()} is chain {here_id}; "
            f"pick the matching {t.option} or --deployment"
        )
    if genesis is not None:
        here = t.genesis()
        if here != genesis.removeprefix("0x"):
            raise DeploymentNotFound(
                f"{where} belongs to another chain (genesis {genesis[:12]}..., this node "
                f"{here[:12]}...): the node was restarted or is a different chain. Redeploy "
                "(`make demo`, `perpdex devnet up` or `ape run deploy`) or pass --deployment"
            )
    if not t.code(clearinghouse):
        raise DeploymentNotFound(
            f"no Clearinghouse code at {clearinghouse} ({where}); the chain was reset since "
            "the deploy: redeploy (`ape run deploy --network <choice>`)"
        )


def verify_halves(
    where: Any,
    clearinghouse: str,
    recorded: dict[str, str | None],
    transport: Transport | None = None,
) -> dict[str, str]:
    """Refuses a manifest (`where`) whose `recorded` code halves are not the ones the
    Clearinghouse delegates to; warns (ManifestWarning) naming the chain's address of
    each half it lacks (a manifest written before the Orders and Risk halves were
    recorded). Returns the halves as the chain names them (`chain_halves`)."""
    live = chain_halves(clearinghouse, transport, recorded)
    for key, address in live.items():
        mine = recorded.get(key)
        if mine is not None and mine.lower() != address.lower():
            raise DeploymentNotFound(
                f"{where} records {key} {mine}, but the Clearinghouse at {clearinghouse} "
                f"delegates to {address}: the manifest does not describe this deployment. "
                "Re-run the deploy to rewrite it (`ape run deploy --network <choice>`) or "
                "pass the right --deployment"
            )
    missing = [key for key in live if recorded.get(key) is None]
    if missing:
        warnings.warn(
            ManifestWarning(
                f"{where} was written before the Clearinghouse's {' and '.join(missing)} "
                "were recorded; read from the chain: "
                + ", ".join(f"{key} {live[key]}" for key in missing)
                + ". Re-run the deploy (`ape run deploy --network <choice>`) to record them: "
                "it reads them from the Clearinghouse, nothing is redeployed"
            ),
            stacklevel=3,
        )
    return live


def chain_halves(
    clearinghouse: str,
    transport: Transport | None = None,
    recorded: dict[str, str | None] | None = None,
) -> dict[str, str]:
    """The code halves the Clearinghouse at `clearinghouse` delegates to, read from the
    chain (each half's immutable pointer to the next), in delegation order by manifest
    key. With every half `recorded`, one batch asks each getter at the recorded address
    (a wrong one shows as a mismatch at the first half that differs); otherwise the
    chain is walked one call at a time. Refuses a Clearinghouse whose halves cannot name
    the next one (older contracts than this perpdex)."""
    from perpdex.sdk.transport import ApeTransport

    t = transport if transport is not None else ApeTransport()
    recorded = recorded or {}
    callers: list[str | None] = [clearinghouse]
    callers += [recorded.get(k) for k, _, _ in HALVES[:-1]]
    if all(callers):
        got = t.calls(
            [
                (getattr(t.at(contract, str(addr)), getter), ())
                for (_, contract, getter), addr in zip(HALVES, callers, strict=True)
            ],
            "latest",
        )
        if not any(isinstance(g, BaseException) for g in got):
            return {key: str(g) for (key, _, _), g in zip(HALVES, got, strict=True)}
    out: dict[str, str] = {}
    previous = clearinghouse
    for key, contract, getter in HALVES:
        try:
            previous = str(getattr(t.at(contract, previous), getter)())
        except Exception as e:  # a revert or an undecodable answer: no such getter
            raise DeploymentNotFound(
                f"the Clearinghouse at {clearinghouse} does not name its {key} "
                f"({contract} {previous}.{getter}() failed: {e}); it runs older contracts "
                "than this perpdex: redeploy (`ape run deploy --network <choice>`)"
            ) from e
        out[key] = previous
    return out


def _optional(value: Any) -> str | None:
    return str(value) if value else None


def resolve_manifest(spec: str | Path | None = None) -> Path:
    """Manifest path for a path, a network key (`local`, `arbitrum-sepolia`) or, with None,
    the connected ape network."""
    from perpdex.deploy import manifest_path, network_key

    if spec is None:
        return manifest_path(network_key())
    text = str(spec)
    if isinstance(spec, Path) or text.endswith(".json") or "/" in text or "\\" in text:
        return Path(text).expanduser()
    return manifest_path(text)
