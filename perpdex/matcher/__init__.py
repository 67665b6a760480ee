"""perpdex matcher: an off-chain order book anyone can run, settling on chain in batches.

Read in this order:
  engine.py    the pure matching engine: price-time priority per market, partial fills,
               post-only, IOC, expiry, self-trade prevention; deterministic, no I/O
  sigs.py      EIP-712 order digests and signer recovery (fast path of perpdex.sdk.orders)
  store.py     SQLAlchemy tables (SQLite by default, PostgreSQL by URL); one transaction
               per group of operations
  settler.py   all chain access behind the `Settler` protocol: an in-memory fake chain for
               tests and benchmarks, and ChainSettler (JSON-RPC to the Clearinghouse's
               `settle`, simulate-and-drop of the fills the chain would refuse)
  blame.py     which order of a refused fill is at fault (it is rejected; the other one
               gets its amount back)
  core.py      the state machine tying them together: verify -> match -> ops to commit;
               batches recorded `pending` before broadcast; restart = rebuild + reconcile
  service.py   asyncio runtime: group commit (ack after commit), settle/confirm/reconcile
               loop, fills stream
  api.py       FastAPI HTTP + websocket API; strict validation, body size limit
  cli.py       `perpdex matcher serve`
  bench.py     `python -m perpdex.matcher.bench`: orders/s and latency on loopback;
               `--settle URL`: fills/s settled into a chain (`make bench`)

Trust model: the matcher only proposes fills. The chain checks both signatures, limits,
expiry, fill amounts and margin, so a matcher cannot fill an order beyond what its owner
signed; settlement is permissionless, so a censoring matcher is routed around, and a trader
can always cancel on chain without it (the matcher follows the chain's cancel events).
"""
