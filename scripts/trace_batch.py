"""`ape run trace_batch`: the signed-batch bench rows alone, with their gas breakdown.

Deploys on a fresh local chain, runs perpdex/devtools/bench.py `signed_batches` (20 fills
between 40 accounts; the measured batch is each account's second order) and prints
perpdex/devtools/trace.py's per-fill breakdown of `batch_fill_20` (and, with
TRACE_FIRST=1, of `batch_fill_20_first`; with TRACE_LINES=1 also the compute per source
line). Much faster than the full `ape run bench_gas`.
"""

import os

from perpdex.deploy import deploy_system
from perpdex.devtools import trace
from perpdex.devtools.bench import BATCH_FILLS, Bench
from perpdex.sdk.manifest import CODE_HALVES
from perpdex.sdk.orders import WORDS_PER_FILL


def main() -> None:
    from ape import accounts, chain, project

    p = deploy_system(accounts.test_accounts[0], key="local", manifest=None)
    bench = Bench(p, accounts.test_accounts, chain, project)
    # as in the full bench: the vault holds a book, so the pool sums are not zero
    lp, trader = accounts.test_accounts[3], accounts.test_accounts[9]
    units = bench.fund(lp, 50_000_000)
    p.vault.deposit(units // 2, lp, sender=lp)
    bench.fund(trader, 1_000_000)
    acct = int(p.clearinghouse.open_account("t", False, sender=trader).return_value)
    p.ops.deposit(acct, p.token, 100_000 * bench.unit, sender=trader)
    bench.tick()
    bench.trade(trader, acct, 0, bench.size("BTC", 50_000))
    bench.signed_batches([accounts.test_accounts[i] for i in range(1, 9)])
    for row in bench.rows:
        print(f"{row.key}: {row.gas:,} gas/fill, {row.calldata // BATCH_FILLS} calldata B/fill")
    keys = ["batch_fill_20"] + (["batch_fill_20_first"] if os.environ.get("TRACE_FIRST") else [])
    vars_ = trace.layout()
    request = chain.provider.make_request
    for key in keys:
        tx = bench.txs[key]
        h = tx.txn_hash if isinstance(tx.txn_hash, str) else tx.txn_hash.hex()
        words = p.orders.settle.decode_input(bytes(tx.data))[1]["batch"]
        accts = [words[i + k] for i in range(0, len(words), WORDS_PER_FILL) for k in (0, 5)]
        b = trace.breakdown(request, h)
        print(f"\n=== {key} ===")
        print(trace.report(b, trace.slot_labels(vars_, accts), per=BATCH_FILLS))
        fns = trace.by_function(b, request, CODE_HALVES)
        print("\ngas per function (per fill): storage+logs+calls, other opcodes")
        for fn, (heavy, other) in sorted(fns.items(), key=lambda kv: -sum(kv[1]))[:40]:
            print(f"  {fn:<45} {heavy / BATCH_FILLS:>9,.0f} {other / BATCH_FILLS:>9,.0f}")
        if os.environ.get("TRACE_LINES"):
            by_line = trace.by_function(b, request, CODE_HALVES, lines=True)
            print("\nother opcodes per source line (per fill), top 60")
            for ln, (_heavy, other) in sorted(by_line.items(), key=lambda kv: -kv[1][1])[:60]:
                print(f"  {ln:<60} {other / BATCH_FILLS:>9,.0f}")


if __name__ == "__main__":
    main()
