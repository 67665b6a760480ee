"""The rebalancer's rules (a YAML file) and its decisions, without a chain.

A strategy is one sub-account of the owner. Its rule says what "inside its band" means
and what to do when it is not:

    owner: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"   # whose sub-accounts
    bot: "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"     # the operator that signs (optional)
    strategies:
      pair:                      # a name for the logs
        sub: 1                   # the strategy's sub-account index
        reserve: 0               # the sub-account top-ups come from
        health: {low: 1.5, high: 3.0}   # equity / maintenance requirement
        max_leverage: 5          # gross notional / equity (optional)
        target_leverage: 4       # where a leverage fix lands (default 80% of the max)
        hedge: {legs: [ETH, SOL], ratio: 1.0, tolerance: 0.1}   # |ETH| / |SOL| notional
        prefer: top-up           # or reduce
        max_top_up: 25000        # USD per top-up (optional)

A strategy breaches its rule when its health is below the band's low edge, its leverage
is above `max_leverage`, or its hedge ratio is outside `ratio ± tolerance`. `decide`
turns one strategy's figures (`StrategyState`) into the actions that would bring it back,
in the order the rule prefers (`Decision.plans`); the keeper (perpdex/keepers/
rebalance.py) takes the first one the chain accepts:

    top-up   move collateral from the reserve: enough for health at the middle of the
             band and leverage at `target_leverage`; capped by what the reserve may send
             (its margin and loss cap) and `max_top_up` (then a partial top-up comes last).
             Never for a strategy whose loss cap has fired (equity below its floor).
    reduce   ONE multi-leg reduce-only order: first the over-weight hedge leg down to the
             ratio, then every leg scaled down by the same factor until health is back at
             the middle of the band and leverage at the target. Sized through a margin
             model: the SDK's mirror of `trade_multi` on the chain, `LinearModel` here.
             A leg left under the minimum position ($100) is closed whole.

A hedge drift is fixed by a reduce only (a top-up changes no ratio). A strategy above its
band is left alone (the bot never moves collateral out of a strategy), and so is one in
liquidation (the liquidation keeper's) or one with no positions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from perpdex.errors import ConfigError

__all__ = [
    "MIN_POSITION_USD",
    "Band",
    "Breach",
    "Decision",
    "Hedge",
    "Leg",
    "LinearModel",
    "MarginAfter",
    "Plan",
    "Rule",
    "Rules",
    "StrategyState",
    "decide",
    "load_rules",
    "parse_rules",
]

Prefer = Literal["top-up", "reduce"]
PREFERENCES: tuple[Prefer, ...] = ("top-up", "reduce")
#: Where a leverage fix lands when the rule names no `target_leverage`: this share of the max.
TARGET_LEVERAGE_SHARE = Decimal("0.8")
#: The Clearinghouse's minimum position (MIN_POSITION_NOTIONAL): a smaller leg is closed.
MIN_POSITION_USD = Decimal(100)
#: Reduce sizes are cut to this many base-unit decimals (toward a larger reduce).
SIZE_PLACES = 6
#: Top-ups are rounded up to whole cents.
CENT = Decimal("0.01")
#: Bisection steps of the reduce factor (2**-40: far below a size step).
SEARCH_STEPS = 40
ZERO = Decimal(0)
ONE = Decimal(1)

RULE_KEYS = frozenset(
    {
        "sub",
        "reserve",
        "health",
        "max_leverage",
        "target_leverage",
        "hedge",
        "prefer",
        "max_top_up",
    }
)
TOP_KEYS = frozenset({"owner", "bot", "strategies"})


# --- rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    """The target health band (equity / maintenance requirement)."""

    low: Decimal
    high: Decimal

    @property
    def mid(self) -> Decimal:
        return (self.low + self.high) / 2


@dataclass(frozen=True)
class Hedge:
    """|notional of legs[0]| / |notional of legs[1]| should stay within ratio ± tolerance."""

    legs: tuple[str, str]
    ratio: Decimal
    tolerance: Decimal

    def outside(self, value: Decimal | None) -> bool:
        return value is not None and abs(value - self.ratio) > self.tolerance


@dataclass(frozen=True)
class Rule:
    name: str
    sub: int
    reserve: int
    band: Band
    max_leverage: Decimal | None = None
    target_leverage: Decimal | None = None
    hedge: Hedge | None = None
    prefer: Prefer = "top-up"
    max_top_up: Decimal | None = None


@dataclass(frozen=True)
class Rules:
    owner: str
    strategies: tuple[Rule, ...]
    bot: str | None = None
    path: Path | None = None

    def managed_subs(self) -> list[int]:
        """Every sub-account the bot acts on: the strategies and their reserves, sorted."""
        return sorted({r.sub for r in self.strategies} | {r.reserve for r in self.strategies})


def load_rules(path: Path, markets: Sequence[str]) -> Rules:
    """The rules in `path`, validated against the deployment's `markets`; a `ConfigError`
    naming the file, the field and what to write instead for anything invalid."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(
            f"cannot read the rebalancer rules {path} ({e.strerror or e}); write one like "
            "config/rebalance.example.yaml"
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML ({str(e).splitlines()[0]})") from None
    return parse_rules(raw, markets, path)


def parse_rules(raw: Any, markets: Sequence[str], path: Path | None = None) -> Rules:
    """`load_rules` of an already parsed document."""
    where = str(path) if path is not None else "rules"

    def bad(field_: str, why: str) -> ConfigError:
        return ConfigError(f"{where}: {field_}: {why}")

    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with `owner` and `strategies`")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise bad(", ".join(sorted(map(str, unknown))), f"unknown key; use {sorted(TOP_KEYS)}")
    owner = _address(raw.get("owner"), "owner", bad, required=True)
    assert owner is not None
    bot = _address(raw.get("bot"), "bot", bad, required=False)
    if bot is not None and bot.lower() == owner.lower():
        raise bad("bot", "is the owner; the bot signs as an operator the owner can revoke")
    strategies = raw.get("strategies")
    if not isinstance(strategies, dict) or not strategies:
        raise bad("strategies", "give at least one strategy (name: {sub: N, reserve: M, ...})")
    symbols = [m.upper() for m in markets]
    rules = tuple(_rule(str(n), body, symbols, bad) for n, body in strategies.items())
    subs: dict[int, str] = {}
    for r in rules:
        if r.sub in subs:
            raise bad(
                f"strategies.{r.name}.sub",
                f"sub-account {r.sub} is also strategy {subs[r.sub]!r}; one rule per sub-account",
            )
        subs[r.sub] = r.name
    for r in rules:
        if r.reserve in subs:
            raise bad(
                f"strategies.{r.name}.reserve",
                f"sub-account {r.reserve} is strategy {subs[r.reserve]!r}; a reserve must be "
                "a sub-account no rule manages (topping up one strategy would drain another)",
            )
    return Rules(owner=owner, strategies=rules, bot=bot, path=path)


def _address(
    value: Any, name: str, bad: Callable[[str, str], ConfigError], required: bool
) -> str | None:
    if value is None:
        if required:
            raise bad(name, "missing; write the address (0x followed by 40 hex digits)")
        return None
    text = str(value)
    body = text.removeprefix("0x")
    if not text.startswith("0x") or len(body) != 40 or any(c not in HEXDIGITS for c in body):
        raise bad(name, f"{text!r} is not an address (0x followed by 40 hex digits)")
    return text


HEXDIGITS = frozenset("0123456789abcdefABCDEF")


def _rule(name: str, body: Any, symbols: list[str], bad: Callable[[str, str], ConfigError]) -> Rule:
    at = f"strategies.{name}"
    if not isinstance(body, dict):
        raise bad(at, "expected a mapping (sub, reserve, health, ...)")
    unknown = set(body) - RULE_KEYS
    if unknown:
        raise bad(f"{at}.{sorted(map(str, unknown))[0]}", f"unknown key; use {sorted(RULE_KEYS)}")
    sub = _index(body.get("sub"), f"{at}.sub", bad)
    reserve = _index(body.get("reserve"), f"{at}.reserve", bad)
    if reserve == sub:
        raise bad(f"{at}.reserve", f"is the strategy itself (sub-account {sub}); name another")
    health = body.get("health")
    if not isinstance(health, dict) or set(health) != {"low", "high"}:
        raise bad(f"{at}.health", "write the band as {low: 1.5, high: 3.0}")
    low = _number(health["low"], f"{at}.health.low", bad)
    high = _number(health["high"], f"{at}.health.high", bad)
    if low < 0 or high < 0:
        raise bad(f"{at}.health", f"a band cannot be negative (low {low}, high {high})")
    if low <= 1:
        raise bad(
            f"{at}.health.low",
            f"{low} is at or below 1, where the account is already liquidatable; use e.g. 1.5",
        )
    if low >= high:
        raise bad(f"{at}.health", f"low {low} must be below high {high}")
    max_lev = _optional_positive(body.get("max_leverage"), f"{at}.max_leverage", bad)
    target_lev = _optional_positive(body.get("target_leverage"), f"{at}.target_leverage", bad)
    if target_lev is not None:
        if max_lev is None:
            raise bad(f"{at}.target_leverage", "needs max_leverage")
        if target_lev > max_lev:
            raise bad(f"{at}.target_leverage", f"{target_lev} is above max_leverage {max_lev}")
    elif max_lev is not None:
        target_lev = max_lev * TARGET_LEVERAGE_SHARE
    prefer = body.get("prefer", "top-up")
    if prefer not in PREFERENCES:
        raise bad(f"{at}.prefer", f"{prefer!r}; use top-up or reduce")
    return Rule(
        name=name,
        sub=sub,
        reserve=reserve,
        band=Band(low, high),
        max_leverage=max_lev,
        target_leverage=target_lev,
        hedge=_hedge(body.get("hedge"), f"{at}.hedge", symbols, bad),
        prefer=prefer,
        max_top_up=_optional_positive(body.get("max_top_up"), f"{at}.max_top_up", bad),
    )


def _hedge(
    raw: Any, at: str, symbols: list[str], bad: Callable[[str, str], ConfigError]
) -> Hedge | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"legs", "ratio", "tolerance"} or "legs" not in raw:
        raise bad(at, "write it as {legs: [ETH, SOL], ratio: 1.0, tolerance: 0.1}")
    legs = raw["legs"]
    if not isinstance(legs, list) or len(legs) != 2:
        raise bad(f"{at}.legs", "name two markets, e.g. [ETH, SOL]")
    names = tuple(str(x).upper().removesuffix("-PERP") for x in legs)
    for s in names:
        if s not in symbols:
            raise bad(
                f"{at}.legs", f"unknown market {s!r}; the deployment lists {', '.join(symbols)}"
            )
    if names[0] == names[1]:
        raise bad(f"{at}.legs", f"{names[0]} twice; a hedge is between two markets")
    ratio = _number(raw.get("ratio", 1), f"{at}.ratio", bad)
    tolerance = _number(raw.get("tolerance", "0.1"), f"{at}.tolerance", bad)
    if ratio <= 0:
        raise bad(f"{at}.ratio", f"{ratio} must be above zero")
    if not 0 <= tolerance < ratio:
        raise bad(f"{at}.tolerance", f"{tolerance} must be at least 0 and below the ratio {ratio}")
    return Hedge((names[0], names[1]), ratio, tolerance)


def _index(value: Any, at: str, bad: Callable[[str, str], ConfigError]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad(at, f"{value!r}; give the sub-account's index (0, 1, ...)")
    return value


def _number(value: Any, at: str, bad: Callable[[str, str], ConfigError]) -> Decimal:
    if isinstance(value, bool):
        raise bad(at, f"{value!r} is not a number")
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise bad(at, f"{value!r} is not a number") from None
    if not d.is_finite():
        raise bad(at, f"{value!r} is not a finite number")
    return d


def _optional_positive(
    value: Any, at: str, bad: Callable[[str, str], ConfigError]
) -> Decimal | None:
    if value is None:
        return None
    d = _number(value, at, bad)
    if d <= 0:
        raise bad(at, f"{d} must be above zero")
    return d


# --- a strategy's figures -------------------------------------------------------------------


@dataclass(frozen=True)
class Leg:
    """One position: signed size (base units) and the price it is valued at (USD)."""

    symbol: str
    size: Decimal
    price: Decimal

    @property
    def notional(self) -> Decimal:
        return abs(self.size) * self.price


@dataclass(frozen=True)
class StrategyState:
    """A strategy's figures at one block, in dollars (the keeper reads them at fresh
    oracle prices; tests write them by hand)."""

    equity: Decimal
    maintenance: Decimal
    positions: tuple[Leg, ...] = ()
    notional: Decimal | None = None  # gross notional; default: the legs' sum
    loss_cap: Decimal = ZERO  # the equity floor (0: none)
    in_liquidation: bool = False
    reserve_available: Decimal = ZERO  # what the reserve may send now (USD)

    @property
    def gross(self) -> Decimal:
        return self.notional if self.notional is not None else _gross(self.positions)

    @property
    def health(self) -> Decimal | None:
        return _health(self.equity, self.maintenance)

    @property
    def leverage(self) -> Decimal | None:
        return _leverage(self.gross, self.equity)

    @property
    def loss_cap_fired(self) -> bool:
        """Equity below the floor: anyone may close it, it may only reduce."""
        return self.loss_cap > 0 and self.equity < self.loss_cap

    def leg(self, symbol: str) -> Leg | None:
        return next((p for p in self.positions if p.symbol == symbol), None)

    def hedge_ratio(self, hedge: Hedge) -> Decimal | None:
        a, b = self.leg(hedge.legs[0]), self.leg(hedge.legs[1])
        return _ratio(a.notional if a else ZERO, b.notional if b else ZERO)


def _gross(legs: Sequence[Leg]) -> Decimal:
    return sum((p.notional for p in legs), ZERO)


def _health(equity: Decimal, maintenance: Decimal) -> Decimal | None:
    return None if maintenance <= 0 else equity / maintenance


def _leverage(notional: Decimal, equity: Decimal) -> Decimal | None:
    if notional <= 0:
        return None
    return notional / equity if equity > 0 else Decimal("Infinity")


def _ratio(a: Decimal, b: Decimal) -> Decimal | None:
    if a == 0 and b == 0:
        return None
    return a / b if b > 0 else Decimal("Infinity")


# --- margin after a reduce ------------------------------------------------------------------


@dataclass(frozen=True)
class MarginAfter:
    """Equity, maintenance and gross notional after an order (USD); `refusal`: the
    chain's reason when it would refuse the order."""

    equity: Decimal
    maintenance: Decimal
    notional: Decimal
    refusal: str | None = None

    @property
    def health(self) -> Decimal | None:
        return _health(self.equity, self.maintenance)

    @property
    def leverage(self) -> Decimal | None:
        return _leverage(self.notional, self.equity)


#: The figures after the positions go to `sizes` (symbol -> signed size after the order).
MarginModel = Callable[[Mapping[str, Decimal]], MarginAfter]


@dataclass(frozen=True)
class LinearModel:
    """A model without a chain: each leg's share of the maintenance requirement is its
    share of the notional, and a reduce costs `fee` of the notional it trades."""

    state: StrategyState
    fee: Decimal = ZERO

    def __call__(self, sizes: Mapping[str, Decimal]) -> MarginAfter:
        s = self.state
        before = _gross(s.positions)
        traded = sum(
            (abs(p.size - sizes.get(p.symbol, p.size)) * p.price for p in s.positions), ZERO
        )
        after = sum((abs(sizes.get(p.symbol, p.size)) * p.price for p in s.positions), ZERO)
        maintenance = s.maintenance * after / before if before > 0 else ZERO
        return MarginAfter(s.equity - traded * self.fee, maintenance, after)


# --- decisions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Breach:
    what: Literal["health", "leverage", "hedge"]
    text: str


@dataclass(frozen=True)
class Plan:
    """One action: a top-up of `amount` USD from the reserve, or a reduce-only order of
    `legs` (symbol -> signed size delta, each against its position)."""

    kind: Literal["top-up", "reduce"]
    why: str
    amount: Decimal = ZERO
    legs: dict[str, Decimal] = field(default_factory=dict)
    partial: bool = False  # a top-up short of the target (the reserve or max_top_up)
    expect: MarginAfter | None = None  # the model's figures after it

    def describe(self) -> str:
        if self.kind == "top-up":
            return f"top-up ${self.amount:,.2f}" + (" (partial)" if self.partial else "")
        return "reduce " + ", ".join(f"{s} {d:+f}" for s, d in self.legs.items())


@dataclass(frozen=True)
class Decision:
    strategy: str
    breaches: tuple[Breach, ...] = ()
    plans: tuple[Plan, ...] = ()  # in the order to try
    blocked: tuple[str, ...] = ()  # why an action was ruled out
    note: str = ""  # why nothing is needed (healthy, no positions...)

    @property
    def reason(self) -> str:
        return "; ".join(b.text for b in self.breaches) or self.note


def decide(rule: Rule, state: StrategyState, model: MarginModel | None = None) -> Decision:
    """What to do about one strategy now (see the module docstring)."""
    model = model or LinearModel(state)
    if not state.positions or state.gross <= 0:
        return Decision(rule.name, note="no positions")
    if state.in_liquidation:
        return Decision(
            rule.name,
            blocked=("in liquidation: the liquidation keeper's, the chain refuses trades",),
            note="in liquidation",
        )
    breaches = _breaches(rule, state)
    if not breaches:
        health = state.health
        note = "within its band" if health is None or health <= rule.band.high else "above its band"
        return Decision(rule.name, note=note)
    kinds = {b.what for b in breaches}
    blocked: list[str] = []
    top_ups: list[Plan] = []
    if kinds & {"health", "leverage"}:
        top_ups = _top_ups(rule, state, blocked)
    reduce = _reduce(rule, state, model, kinds, blocked)
    full = [p for p in top_ups if not p.partial]
    partial = [p for p in top_ups if p.partial]
    reduces = [reduce] if reduce is not None else []
    if "hedge" in kinds and not kinds & {"health", "leverage"}:
        plans = reduces  # a top-up changes no ratio
    elif rule.prefer == "top-up":
        plans = full + reduces + partial
    else:
        plans = reduces + full + partial
    return Decision(rule.name, tuple(breaches), tuple(plans), tuple(blocked))


def _breaches(rule: Rule, s: StrategyState) -> list[Breach]:
    out = []
    health = s.health
    if health is not None and health < rule.band.low:
        out.append(
            Breach("health", f"health {health:.3f} below the band's low edge {rule.band.low}")
        )
    lev = s.leverage
    if rule.max_leverage is not None and lev is not None and lev > rule.max_leverage:
        out.append(Breach("leverage", f"leverage {lev:.2f}x above the max {rule.max_leverage}x"))
    if rule.hedge is not None:
        ratio = s.hedge_ratio(rule.hedge)
        if rule.hedge.outside(ratio):
            a, b = rule.hedge.legs
            out.append(
                Breach(
                    "hedge",
                    f"hedge {a}/{b} {ratio:.3f} outside {rule.hedge.ratio} ± "
                    f"{rule.hedge.tolerance}",
                )
            )
    return out


def _top_ups(rule: Rule, s: StrategyState, blocked: list[str]) -> list[Plan]:
    """The full top-up (and a partial one when the reserve or max_top_up fall short)."""
    need = ZERO
    whys = []
    if s.health is not None and s.health < rule.band.low:
        need = max(need, rule.band.mid * s.maintenance - s.equity)
        whys.append(f"health to {rule.band.mid}")
    lev = s.leverage
    if rule.max_leverage is not None and rule.target_leverage and lev and lev > rule.max_leverage:
        need = max(need, s.gross / rule.target_leverage - s.equity)
        whys.append(f"leverage to {rule.target_leverage:f}x")
    need = need.quantize(CENT, rounding=ROUND_CEILING)
    if need <= 0:
        return []
    if s.loss_cap_fired:
        blocked.append(
            f"top-up refused: the loss cap fired (equity ${s.equity:,.2f} below its floor "
            f"${s.loss_cap:,.2f}); a stopped strategy is never topped up"
        )
        return []
    room = s.reserve_available
    if rule.max_top_up is not None:
        room = min(room, rule.max_top_up)
    room = room.quantize(CENT, rounding=ROUND_DOWN)
    why = f"top-up ${need:,.2f} brings {' and '.join(whys)}"
    if room >= need:
        return [Plan("top-up", why, amount=need)]
    if room <= 0:
        blocked.append("top-up impossible: the reserve may send nothing now")
        return []
    capped = "max_top_up" if rule.max_top_up is not None and room == rule.max_top_up else "reserve"
    blocked.append(f"full top-up of ${need:,.2f} impossible: the {capped} allows ${room:,.2f}")
    return [Plan("top-up", why + f" (only ${room:,.2f}: {capped})", amount=room, partial=True)]


def _reduce(
    rule: Rule,
    s: StrategyState,
    model: MarginModel,
    kinds: set[Literal["health", "leverage", "hedge"]],
    blocked: list[str],
) -> Plan | None:
    """One reduce-only order: the hedge leg to the ratio, then every leg scaled by one
    factor until health >= the band's middle and leverage <= the target."""
    base = {p.symbol: p.size for p in s.positions}
    whys = []
    if rule.hedge is not None and "hedge" in kinds:
        a, b = rule.hedge.legs
        la, lb = s.leg(a), s.leg(b)
        na, nb = (la.notional if la else ZERO), (lb.notional if lb else ZERO)
        t = rule.hedge.ratio
        if la is not None and na > t * nb:
            base[a] = la.size * (t * nb / na)
        elif lb is not None and nb * t > na:
            base[b] = lb.size * (na / t / nb)
        whys.append(f"{a}/{b} to {t}")
    need_health = "health" in kinds
    need_lev = "leverage" in kinds

    def ok(m: MarginAfter) -> bool:
        if m.refusal is not None:
            return False
        h = m.health
        if h is not None and (need_health or h < rule.band.low) and h < rule.band.mid:
            return False
        lev = m.leverage
        if rule.target_leverage is not None and lev is not None:
            limit = rule.target_leverage if need_lev else rule.max_leverage
            assert limit is not None
            if lev > limit:
                return False
        return True

    def sizes(f: Decimal) -> dict[str, Decimal]:
        out = {}
        for p in s.positions:
            target = base[p.symbol] * f
            cut = _cut(target, p.price)
            out[p.symbol] = p.size if target == p.size or abs(cut) >= abs(p.size) else cut
        return out

    first = sizes(ONE)
    if ok(model(first)):
        chosen = first
    else:
        lo, hi = ZERO, ONE  # ok(lo) assumed (flat), not ok(hi)
        for _ in range(SEARCH_STEPS):
            mid = (lo + hi) / 2
            if ok(model(sizes(mid))):
                lo = mid
            else:
                hi = mid
        chosen = sizes(lo)
        if need_health:
            whys.append(f"health to {rule.band.mid}")
        if need_lev and rule.target_leverage is not None:
            whys.append(f"leverage to {rule.target_leverage:f}x")
    legs = {p.symbol: chosen[p.symbol] - p.size for p in s.positions if chosen[p.symbol] != p.size}
    if not legs:
        blocked.append("reduce: nothing to reduce")
        return None
    for p in s.positions:  # reduce-only by construction
        d = legs.get(p.symbol, ZERO)
        assert d == 0 or ((d > 0) != (p.size > 0) and abs(d) <= abs(p.size)), (p, d)
    expect = model(chosen)
    return Plan("reduce", "reduce brings " + " and ".join(whys), legs=legs, expect=expect)


def _cut(size: Decimal, price: Decimal) -> Decimal:
    """A size after a reduce: toward zero on the size grid; under the minimum position,
    zero (the leg is closed whole)."""
    q = size.quantize(Decimal(1).scaleb(-SIZE_PLACES), rounding=ROUND_DOWN)
    return ZERO if abs(q) * price < MIN_POSITION_USD else q
