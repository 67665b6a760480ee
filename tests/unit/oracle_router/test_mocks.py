"""The test doubles the router tests (and other suites) rely on."""

import ape
import pytest

from .helpers import USD


def test_mock_aggregator__constructor_sets_round_one(deploy_feed, chain):
    feed = deploy_feed(8, 2_000 * USD)

    round_id, answer, started_at, updated_at, answered_in = feed.latestRoundData()

    now = chain.blocks.head.timestamp
    assert (round_id, answer, started_at, updated_at, answered_in) == (1, 2_000 * USD, now, now, 1)
    assert feed.decimals() == 8
    assert feed.version() == 4
    assert feed.description() == "perpdex mock aggregator"


def test_mock_aggregator__set_answer_starts_new_round(deploy_feed, stranger, chain):
    feed = deploy_feed(8, 2_000 * USD)

    tx = feed.set_answer(-5, sender=stranger)

    now = chain.blocks[tx.block_number].timestamp
    assert feed.latestRoundData() == (2, -5, now, now, 2)


def test_mock_aggregator__set_round_data(deploy_feed, stranger):
    feed = deploy_feed(18, 1)

    feed.set_round_data(7, 11, 22, sender=stranger)

    assert feed.latestRoundData() == (2, 7, 11, 22, 2)


def test_mock_aggregator__timestamp_too_large_reverts(deploy_feed, stranger):
    feed = deploy_feed(8, 1)

    with ape.reverts("mock: timestamp too large"):
        feed.set_round_data(1, 2**64, 0, sender=stranger)


def test_mock_erc20__anyone_mints_and_transfers(project, admin, stranger, keeper):
    token = project.MockERC20.deploy("USD Coin", "USDC", 6, sender=admin)

    token.mint(stranger, 1_000, sender=stranger)
    token.transfer(keeper, 400, sender=stranger)

    assert (token.name(), token.symbol(), token.decimals()) == ("USD Coin", "USDC", 6)
    assert token.balanceOf(stranger) == 600
    assert token.balanceOf(keeper) == 400
    assert token.totalSupply() == 1_000


@pytest.mark.parametrize("fee_bps", [0, 100, 10_000])
def test_mock_fee_token__burns_fee_on_transfer_from(project, admin, stranger, keeper, fee_bps):
    token = project.MockFeeToken.deploy("Fee Token", "FEE", 18, fee_bps, sender=admin)
    token.mint(stranger, 10_000, sender=admin)
    token.approve(keeper, 5_000, sender=stranger)

    tx = token.transferFrom(stranger, keeper, 5_000, sender=keeper)

    fee = 5_000 * fee_bps // 10_000
    assert token.balanceOf(stranger) == 5_000
    assert token.balanceOf(keeper) == 5_000 - fee
    assert token.totalSupply() == 10_000 - fee
    assert token.allowance(stranger, keeper) == 0
    assert len(tx.events) == (2 if fee else 1)


def test_mock_fee_token__transfer_exceeding_balance_reverts(project, admin, stranger, keeper):
    token = project.MockFeeToken.deploy("Fee Token", "FEE", 18, 100, sender=admin)

    with ape.reverts("mock: transfer amount exceeds balance"):
        token.transfer(keeper, 1, sender=stranger)


def test_gas_probe__measure_emits_measured(project, admin, deploy_feed):
    probe = project.GasProbe.deploy(sender=admin)
    feed = deploy_feed(8, 1)

    tx = probe.measure(feed, feed.set_answer.encode_input(5), sender=admin)

    assert tx.return_value > 0
    assert tx.events[-1] == probe.Measured(target=feed.address, gas_used=tx.return_value)
    assert feed.latestRoundData()[1] == 5


def test_gas_probe__measure_bubbles_revert(project, admin, deploy_feed):
    probe = project.GasProbe.deploy(sender=admin)
    feed = deploy_feed(8, 1)

    with ape.reverts("mock: timestamp too large"):
        probe.measure(feed, feed.set_round_data.encode_input(1, 2**64, 0), sender=admin)
