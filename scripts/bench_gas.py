"""`ape run bench_gas`: gas per operation -> docs/gas.md and docs/gas.json."""

from perpdex.devtools.bench import main

if __name__ == "__main__":
    main()
