"""`ape run bench_keeper`: keeper account-scan rate -> docs/perf.json."""

from perpdex.devtools.keeper_bench import main

if __name__ == "__main__":
    main()
