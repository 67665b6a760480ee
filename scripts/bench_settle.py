"""`ape run bench_settle`: fills/s the matcher settles into anvil -> docs/perf.json."""

from perpdex.matcher.bench import settle_main as main

if __name__ == "__main__":
    main()
