"""What `make demo` shows: the end-to-end demo (`demo`), the README's worked $100k example
(`worked_example`) and the crash replay (`crash`). Entry points: scripts/demo.py and
scripts/crash.py (`ape run demo`, `ape run crash`)."""
