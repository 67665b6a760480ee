"""Local fixtures for the OracleRouter unit tests.

Time: view calls run against the latest mined block, so tests that check staleness move
time with `warp` (mines a block at the given timestamp); transactions that must land at a
given time set `chain.pending_timestamp` first. Feeds are built with explicit timestamps
relative to `chain.blocks.head.timestamp`, so wall-clock drift of anvil never matters.

Speed: expected reverts of calls (views and `.call()` simulations of setters) pass ape's
`skip_trace=True`, so ape does not fetch a call trace and build a source traceback for each
(~0.3 s apiece); reverting transactions (role checks, `observe`) still go through the full
path.
"""

from collections.abc import Callable

import pytest

from .helpers import DEFAULT_PARAMS, MAX_AGE, USD, Params, Twin

# Actors `admin` (deployer), `keeper` and `stranger` come from tests/conftest.py.


@pytest.fixture(scope="session")
def risk_manager(accounts):
    """Granted RISK_ROLE only (not DEFAULT_ADMIN_ROLE), by `admin`, in `router`."""
    return accounts[8]


@pytest.fixture(scope="module")
def router(project, admin, risk_manager, keeper, stranger):
    """OracleRouter deployed by `admin`, with RISK_ROLE also granted to `risk_manager`."""
    # Every actor is requested here so that ape's snapshot isolation sees the session
    # fixtures before the module ones.
    del keeper, stranger
    contract = project.OracleRouter.deploy(sender=admin)
    contract.grantRole(contract.RISK_ROLE(), risk_manager, sender=admin)
    return contract


@pytest.fixture(scope="module")
def deploy_feed(project, admin) -> Callable:
    """Deploys a MockAggregator: `deploy_feed(decimals, answer)`."""

    def _deploy(decimals: int = 8, answer: int = 2_000 * USD):
        return project.MockAggregator.deploy(decimals, answer, sender=admin)

    return _deploy


@pytest.fixture(scope="module")
def deploy_twin(deploy_feed) -> Callable:
    """`deploy_twin(decimals, answer)`: two feeds answering alike (see helpers.Twin)."""

    def _deploy(decimals: int = 8, answer: int = 2_000 * USD) -> Twin:
        return Twin([deploy_feed(decimals, answer), deploy_feed(decimals, answer)])

    return _deploy


@pytest.fixture(scope="module")
def feeds(deploy_feed):
    """Three 8-decimal USD feeds answering 2,000, 2,010 and 2,020."""
    return [deploy_feed(8, (2_000 + 10 * i) * USD) for i in range(3)]


@pytest.fixture(scope="module")
def add_market(router, admin) -> Callable:
    """`add_market(sources, params=DEFAULT_PARAMS, max_ages=None)` -> market id."""

    def _add(sources, params: Params = DEFAULT_PARAMS, max_ages=None):
        if isinstance(sources, Twin):
            sources = sources.feeds
        ages = max_ages if max_ages is not None else [MAX_AGE] * len(sources)
        tx = router.add_market(sources, ages, *params.args(), sender=admin)
        return tx.return_value

    return _add


@pytest.fixture(scope="module")
def sequencer_feed(deploy_feed):
    """An uptime feed: answer 0 (up), `startedAt` set by each test."""
    return deploy_feed(0, 0)


@pytest.fixture
def warp(chain) -> Callable:
    """Mines a block at `timestamp` (views then run at that time)."""

    def _warp(timestamp: int) -> int:
        chain.mine(timestamp=timestamp)
        return timestamp

    return _warp


@pytest.fixture
def head_time(chain) -> Callable:
    """Timestamp of the latest block."""
    return lambda: chain.blocks.head.timestamp


@pytest.fixture
def set_round(admin) -> Callable:
    """`set_round(feed, answer, updated_at, started_at=None)`."""

    def _set(feed, answer: int, updated_at: int, started_at: int | None = None):
        started = updated_at if started_at is None else started_at
        feed.set_round_data(answer, started, updated_at, sender=admin)

    return _set
