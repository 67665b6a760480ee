"""Risk tooling: price history, correlation, scenario design, book diffs, governance
steps and charts for the portfolio-margin risk book (docs/risk-model.md).

    history      load a daily close CSV; the seeded synthetic generator (data/prices.csv)
    correlation  returns, volatility, correlation (equal-weight or EWMA)
    scenarios    design a book's scenarios from the covariance; the margin formulas
    diff         differences between two books (data and rich tables)
    governance   plan bounded steps to a target book and push them on chain
    plots        PNG charts (correlation heatmap, scenario shocks)
"""
