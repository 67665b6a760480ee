"""Developer tools: local nodes, benchmarks and the suite's timing report (not the SDK).

    devnet         anvil for demos, test sessions, forks and `perpdex devnet up`
                   (`python -m perpdex.devtools.devnet ...`; the Makefile's entry point)
    l2dryrun       the L2 testnet deploy dry run against imitation L2 anvils
    bench          the gas benchmark (`ape run bench_gas` -> docs/gas.md, docs/gas.json)
    keeper_bench   the liquidation keeper's account-scan rate (`make bench`)
    bench_startup  the `perpdex` command's start-up time (`make bench`)
    perf           the slowest-tests table `make test` prints and docs/perf.json figures

Nothing under perpdex/sdk, perpdex/keepers or perpdex/risk imports from here; the CLI
does only for `perpdex devnet`.
"""
