"""`perpdex dashboard`: a local web page for one owner, updated live from the chain.

    state.py    what the page shows: `Tracker.read` builds one JSON document from the SDK's
                results and the CLI's `--json` builders (the figures are the SDK's)
    server.py   FastAPI: the page, /api/state, /api/events (server-sent events pushed when
                a new block changes the figures), and the thread that polls the node
    static/     index.html, dashboard.js, dashboard.css: plain JS, no build step

The command is perpdex/cli/dashboard.py; the browser test tests/integration/test_dashboard.py.
"""
