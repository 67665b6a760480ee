"""Fixtures of the CLI tests (test_cli*.py): a manifest of the session deployment,
`cli(*args)`, which runs the `perpdex` command against it in-process, and `cli_pool`,
cash in the vault so market orders fill."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from perpdex.cli.main import app
from perpdex.sdk.client import Deployment

TRADER = "test:1"  # the `trader` fixture is ape's test account 1


@pytest.fixture(scope="session")
def manifest(protocol: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("deployments") / "local.json"
    return Deployment.from_protocol(protocol).write(path)


@pytest.fixture(scope="session")
def network_choice(networks: Any) -> str:
    return str(networks.provider.network_choice)


@pytest.fixture
def cli_pool(vault_pool: Any) -> None:
    """$2M in the vault from the admin, so market orders fill."""


@pytest.fixture
def cli(manifest: Path, network_choice: str) -> Any:
    """`cli(*args, account=..., deployment=..., columns=...)` -> click Result; `account`
    None leaves --account out."""
    runner = CliRunner()

    def invoke(
        *args: str, account: str | None = TRADER, deployment: Path = manifest, columns: int = 220
    ) -> Result:
        options = ["--network", network_choice, "--deployment", str(deployment)]
        if account is not None:
            options += ["--account", account]
        return runner.invoke(app, [*options, *args], env={"COLUMNS": str(columns)})

    return invoke
