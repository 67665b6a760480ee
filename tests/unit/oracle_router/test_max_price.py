"""One MAX_PRICE: the router refuses a market whose prices the clearinghouse cannot store.

The clearinghouse's mark word keeps the price in 88 bits (modules/packing.vy); the router's
own words have 96-bit price fields. Both read MAX_PRICE from modules/constants.vy, so a
market configured with `max_price` above 2**88 - 1 is refused, and no reading above it is
ever returned (a price above `max_price` is out of range).
"""

import re
from pathlib import Path

import ape
import pytest

from perpdex.constants import FLAG_DEGRADED
from perpdex.sdk import math as pm

from .helpers import MAX_PRICE, Params

ROOT = Path(__file__).resolve().parents[3]
TOO_LARGE = "oracle: max price too large"


def _constants_max_price() -> int:
    text = (ROOT / "contracts/modules/constants.vy").read_text()
    match = re.search(r"^MAX_PRICE: constant\(uint256\) = 2\*\*(\d+) - 1$", text, re.M)
    assert match, "MAX_PRICE not found in modules/constants.vy"
    return 2 ** int(match.group(1)) - 1


def test_max_price__one_value_everywhere(router):
    assert MAX_PRICE == 2**88 - 1
    assert router.MAX_PRICE() == MAX_PRICE
    assert _constants_max_price() == MAX_PRICE
    # the SDK mirror and the mark word's price field
    assert pm.MAX_PRICE == pm.MASK_88 == MAX_PRICE


def test_max_price__router_imports_the_shared_constant():
    text = (ROOT / "contracts/OracleRouter.vy").read_text()
    assert re.search(r"^MAX_PRICE: public\(constant\(uint256\)\) = c\.MAX_PRICE$", text, re.M)


def test_add_market__max_price_above_clearinghouse_bound_reverts(router, feeds, admin):
    with ape.reverts(TOO_LARGE):
        router.add_market.call(
            feeds[:2],
            [3_600, 3_600],
            *Params(max_price=MAX_PRICE + 1).args(),
            sender=admin,
            skip_trace=True,
        )


def test_add_market__max_price_at_bound_is_accepted(router, add_market, feeds):
    market = add_market(feeds[:2], Params(max_price=MAX_PRICE))

    assert router.market_config(market).max_price == MAX_PRICE


@pytest.mark.parametrize("max_price", [MAX_PRICE + 1, 2**96 - 1])
def test_set_params__max_price_above_clearinghouse_bound_reverts(
    router, add_market, feeds, admin, max_price
):
    market = add_market(feeds[:2])

    with ape.reverts(TOO_LARGE):
        router.set_params.call(
            market, *Params(max_price=max_price).args(), sender=admin, skip_trace=True
        )


@pytest.mark.parametrize("answer", [MAX_PRICE + 1, 2**96 - 1])
def test_latest__answer_above_bound_is_never_returned(router, deploy_twin, add_market, answer):
    market = add_market(deploy_twin(18, answer), Params(min_price=1, max_price=MAX_PRICE))

    assert router.latest(market) == (0, FLAG_DEGRADED)


def test_latest__answer_at_bound_is_returned(router, deploy_twin, add_market):
    market = add_market(deploy_twin(18, MAX_PRICE), Params(min_price=1, max_price=MAX_PRICE))

    assert router.latest(market) == (MAX_PRICE, 0)
