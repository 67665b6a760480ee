"""Deployment manifests: `deployments/<network>.json` (written by `perpdex.deploy`) read
into a `Deployment`, checked against the connected chain, and resolved from a path, a
network key or the connected network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perpdex.errors import DeploymentNotFound

if TYPE_CHECKING:
    from perpdex.deploy import Protocol
    from perpdex.sdk.transport import Transport

from perpdex.sdk.handles import _at


@dataclass(frozen=True)
class Deployment:
    """The addresses of one deployment, as recorded in `deployments/<network>.json`."""

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

    def check_chain(self, transport: Transport | None = None) -> None:
        """Refuses a manifest written on another chain than the node `transport` reaches
        (default: ape's connected provider): `check_chain` below."""
        check_chain(
            self.path or self.network, self.chain_id, self.genesis, self.clearinghouse, transport
        )

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

        ops_half = str(protocol.clearinghouse.OPS())
        return cls(
            network=protocol.network,
            chain_id=chain.chain_id,
            token=str(protocol.token.address),
            oracle=str(protocol.oracle.address),
            clearinghouse=str(protocol.clearinghouse.address),
            clearinghouse_ops=ops_half,
            # read on the Ops half itself: values do not come back through the proxy
            clearinghouse_admin=str(_at("ClearinghouseOps", ops_half).ADMIN()),
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
