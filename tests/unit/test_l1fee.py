"""perpdex/sdk/l1fee.py and perpdex/sdk/feemodel.py without a chain: FastLZ against op-geth's
published vectors (core/types/rollup_cost_test.go) and a round trip, the Ecotone and Fjord
fee vectors of the same file, Arbitrum's brotli units, the signed transaction, the
per-operation model, price reading from a fake node, and `perpdex gas`.
"""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
import rlp
from eth_account import Account
from eth_utils import keccak

from perpdex.sdk import feemodel as fm
from perpdex.sdk import l1fee

# op-geth TestFlzCompressLen: an Optimism mainnet contract call (tx 0x8eb9dd4e...b594)
CONTRACT_CALL_TX = bytes.fromhex(
    "02f901550a758302df1483be21b88304743f94f80e51afb613d764fa61751affd3313c190a86bb870151bd62"
    "fd12adb8e41ef24f3f000000000000000000000000000000000000000000000000000000000000006e000000"
    "000000000000000000af88d065e77c8cc2239327c5edb3a432268e5831000000000000000000000000000000"
    "000000000000000000000000000003c1e5000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000a000"
    "000000000000000000000000000000000000000000000000000000000000148c89ed219d02f1a5be012c689b"
    "4f5b731827bebe000000000000000000000000c001a033fd89cb37c31b2cba46b6466e040c61fc9b2a3675a7"
    "f5f493ebd5ad77c497f8a07cdf65680e238392693019b4092f610222e71b7cec06449cb922b93b6a12744e"
)
# op-geth's emptyTx: NewTransaction(0, 0x095e7b..., 0, 0, 0, nil), unsigned legacy
EMPTY_TX = rlp.encode(
    [0, 0, 0, bytes.fromhex("095e7baea6a6c7c4c2dfeb977efac326af552d87"), 0, b"", 0, 0, 0]
)


@pytest.mark.parametrize(
    ("data", "size"),
    [(b"", 0), (b"\x01" * 1000, 21), (bytes(1000), 21), (EMPTY_TX, 31), (CONTRACT_CALL_TX, 202)],
)
def test_fastlz__op_geth_vectors(data, size):
    assert l1fee.flz_compress_len(data) == size
    packed = l1fee.flz_compress(data)
    assert len(packed) == size
    assert l1fee.flz_decompress(packed) == data


def test_fastlz__round_trip_and_length_agree_on_random_inputs():
    rng = random.Random(13)
    for _ in range(200):
        n = rng.randrange(0, 2_000)
        pool = [0, 0, 0, 1, 0xFF, rng.randrange(256)]
        data = bytes(
            rng.choice(pool) if rng.random() < 0.7 else rng.randrange(256) for _ in range(n)
        )
        packed = l1fee.flz_compress(data)
        assert l1fee.flz_decompress(packed) == data
        assert len(packed) == l1fee.flz_compress_len(data)
    # long runs use the 262-byte match tokens
    data = bytes(range(256)) * 3 + bytes(5_000) + bytes(range(256))
    assert l1fee.flz_decompress(l1fee.flz_compress(data)) == data


def test_fee_formulas__op_geth_vectors():
    # rollup_cost_test.go: baseFee 1000e6, blobBaseFee 10e6, scalars 2 / 3
    prices = l1fee.OpPrices(1_000 * 10**6, 10 * 10**6, 2, 3)
    assert l1fee.calldata_gas(EMPTY_TX) == 480
    assert l1fee.ecotone_fee(EMPTY_TX, prices) == 960_900
    # the emptyTx is below the regression's range: the 100-byte minimum
    assert l1fee.fjord_fee(EMPTY_TX, prices) == 3_203_000
    for size in (100, 150, 170):
        assert l1fee.fjord_fee_for_size(size, prices) == 3_203_000
    for size in (171, 175, 200):
        assert l1fee.fjord_fee_for_size(size, prices) > 3_203_000
    # TestFjordL1CostSolidityParity
    parity = l1fee.OpPrices(2 * 10**6, 3 * 10**6, 20, 15)
    assert l1fee.fjord_fee_for_size(235, parity) == 105_484


def test_arbitrum__units_are_16_per_brotli_byte():
    import brotli

    tx = CONTRACT_CALL_TX
    size = len(brotli.compress(tx, quality=1, lgwin=22))
    assert l1fee.arbitrum_units(tx) == 16 * size
    assert l1fee.arbitrum_fee(tx, 7) == 7 * 16 * size
    assert l1fee.brotli_size(bytes(5_000)) < 30  # zeros compress away
    assert l1fee.brotli_size(tx, 11) <= l1fee.brotli_size(tx, 0)


def test_signed_tx__decodes_to_the_call_and_recovers_the_model_key():
    data = fm.operation("increase").calldata
    raw = l1fee.signed_tx(fm.CLEARINGHOUSE, data, chain_id=8453, gas=300_000)
    assert raw[0] == 2
    fields = rlp.decode(raw[1:])
    assert int.from_bytes(fields[0], "big") == 8453
    assert fields[7] == data
    assert len(fields[10]) == 32 and len(fields[11]) == 32  # r, s
    sender = Account.recover_transaction(raw)
    assert sender == Account.from_key(l1fee.MODEL_KEY).address


def test_operations__calldata_is_the_abi_call():
    op = fm.operation("increase")
    data = op.calldata
    assert data[:4] == keccak(text="trade(uint256,uint256,int256,uint256)")[:4]
    assert len(data) == 4 + 4 * 32  # docs/gas.md: 132 calldata bytes for a trade
    assert len(fm.operation("deposit").calldata) == 100
    assert len(fm.operation("liquidation_start").calldata) == 68
    with pytest.raises(fm.FeeModelError, match="unknown operation 'swap'"):
        fm.operation("swap")


def test_costs__every_operation_priced_from_its_own_bytes():
    gas = {op.gas_key: 100_000 for op in fm.OPERATIONS}
    rows = fm.costs(fm.DEFAULTS, gas)
    assert len(rows) == len(fm.OPERATIONS)
    for r in rows:
        assert r.fastlz_bytes == l1fee.flz_compress_len(r.op_tx)
        assert r.fjord_fee == l1fee.fjord_fee(r.op_tx, fm.DEFAULTS.op)
        assert r.op_l2_fee == 100_000 * fm.DEFAULTS.op_l2_gas_price
    # not one minimum fee for all: the rows differ with their bytes
    assert len({r.ecotone_fee for r in rows}) > 1
    assert len({r.arb_l1_fee for r in rows}) > 1
    with pytest.raises(fm.FeeModelError, match=r"docs/gas\.json has no 'open_account'"):
        fm.costs(fm.DEFAULTS, {"deposit": 1})


class _Node(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, int]] = {}

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if req["method"] == "eth_gasPrice":
            result = hex(12_345)
        else:
            call = req["params"][0]
            key = f"{call['to'].lower()}:{call['data']}"
            value = self.answers.get(key)
            result = "0x" if value is None else "0x" + value.to_bytes(32, "big").hex()
        body = json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": result}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve(answers: dict[str, int]) -> tuple[HTTPServer, str]:
    handler = type("Node", (_Node,), {"answers": answers})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _key(to: str, sig: str) -> str:
    return f"{to.lower()}:0x{keccak(text=sig)[:4].hex()}"


def test_read_prices__op_stack_and_arbitrum_predeploys():
    gpo = fm.GAS_PRICE_ORACLE
    server, url = _serve(
        {
            _key(gpo, "l1BaseFee()"): 7 * 10**9,
            _key(gpo, "blobBaseFee()"): 3,
            _key(gpo, "baseFeeScalar()"): 2269,
            _key(gpo, "blobBaseFeeScalar()"): 1_055_762,
        }
    )
    try:
        prices, kind = fm.read_prices(url)
    finally:
        server.shutdown()
    assert kind == "op"
    assert prices.op == l1fee.OpPrices(7 * 10**9, 3, 2269, 1_055_762)
    assert prices.op_l2_gas_price == 12_345
    server, url = _serve({_key(fm.ARB_GAS_INFO, "getL1BaseFeeEstimate()"): 50_000_000})
    try:
        prices, kind = fm.read_prices(url)
    finally:
        server.shutdown()
    assert (kind, prices.arb_l1_price_per_unit, prices.arb_l2_gas_price) == (
        "arbitrum",
        50_000_000,
        12_345,
    )
    server, url = _serve({})
    try:
        with pytest.raises(fm.FeeModelError, match="answers neither the OP-stack"):
            fm.read_prices(url)
    finally:
        server.shutdown()
    with pytest.raises(fm.FeeModelError, match="could not reach"):
        fm.read_prices("http://127.0.0.1:9")


def test_cli_gas__table_and_a_day_of_rebalancing():
    from typer.testing import CliRunner

    from perpdex.cli.main import app

    runner = CliRunner()
    res = runner.invoke(
        app, ["gas", "--per-day", "24", "--l1-base-fee", "20"], env={"COLUMNS": "220"}
    )
    assert res.exit_code == 0, res.output
    assert "a day of rebalancing: 24 x increase" in res.output
    assert "L1 base fee 20 gwei" in res.output
    increase = next(r for r in fm.costs(fm.DEFAULTS) if r.op.name == "increase")
    assert f"{increase.calldata_bytes} / {len(increase.op_tx)}" in res.output
    bad = runner.invoke(app, ["gas", "--per-day", "3", "--rebalance-op", "swap"])
    assert bad.exit_code == 1 and "unknown operation 'swap'" in bad.output


def test_gas_report__prices_each_transaction_and_no_view_call(tmp_path, monkeypatch):
    """docs/gas.md's generator: rows with calldata get their own L1 fee from their signed
    bytes; view calls (GasProbe rows) show none; the assumptions are stated."""
    from perpdex.devtools import bench

    monkeypatch.setattr(bench, "DOCS", tmp_path)
    trade = fm.operation("increase").calldata
    rows = [
        bench.Row("increase", 150_000, len(trade), "", trade, fm.CLEARINGHOUSE),
        bench.Row("lp_deposit", 220_000, 68, "", fm.operation("lp_deposit").calldata, fm.VAULT),
        bench.Row("margin_check_8_portfolio", 59_000, 0, "view call via GasProbe"),
    ]
    summary = {"per_position_increase": 7_000, "per_position_increase_isolated": 6_000}
    text = bench.write(rows, summary, {"Clearinghouse": 24_000})
    lines = {ln.split(" | ")[0].lstrip("| "): ln for ln in text.splitlines() if ln.startswith("|")}
    cost = fm.cost_of(fm.operation("increase"), trade, 150_000, fm.DEFAULTS)
    assert f"| {len(cost.op_tx)} | {cost.fastlz_bytes} |" in lines["increase"]
    assert f"{fm.DEFAULTS.usd(cost.fjord_fee):.5f}" in lines["increase"]
    assert lines["margin_check_8"].count("| - |") >= 1
    assert lines["increase"] != lines["lp_deposit"].replace("lp_deposit", "increase")
    assert "## L1 data fee: model and assumptions" in text
    assert "FastLZ" in text and "brotli" in text and "zlib" not in text


def test_every_operation_reads_a_key_make_bench_writes() -> None:
    """`perpdex gas` prices each operation with its docs/gas.json row: a bench rename
    (`open` became `open_first_trade_of_market` / `open_new_account`) must not leave an
    operation without its measured gas."""
    measured = fm.measured_gas()
    missing = [op.gas_key for op in fm.OPERATIONS if op.gas_key not in measured]
    assert not missing, f"docs/gas.json lacks {missing}: re-run `make bench`"
