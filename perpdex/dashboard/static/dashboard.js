// perpdex dashboard: renders the server's document (GET /api/state, pushed on
// /api/events). Plain JS, no build step. Every figure cell carries the exact decimal
// string of the document in data-value and shows it rounded half-up on the string itself
// (never through a float), so the page shows the SDK's figures.
"use strict";

// --- decimal strings -----------------------------------------------------------------------

function roundDec(text, places) {
  // "-1234.5678", 2 -> {neg: true, int: "1234", frac: "57"} (half-up on the magnitude)
  let s = String(text);
  const neg = s.startsWith("-");
  if (neg) s = s.slice(1);
  const [ip, fp = ""] = s.split(".");
  const padded = fp.padEnd(places + 1, "0");
  let n = BigInt((ip || "0") + padded.slice(0, places));
  if (padded.charCodeAt(places) - 48 >= 5) n += 1n;
  const t = n.toString().padStart(places + 1, "0");
  return {
    neg: neg && n !== 0n,
    int: t.slice(0, t.length - places),
    frac: places ? t.slice(t.length - places) : "",
  };
}

function grouped(int) {
  return int.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

function fixed(text, places, group = true) {
  const r = roundDec(text, places);
  const body = (group ? grouped(r.int) : r.int) + (places ? "." + r.frac : "");
  return (r.neg ? "-" : "") + body;
}

function isNeg(text) { return text !== null && String(text).startsWith("-") && Number(text) !== 0; }
function isPos(text) { return text !== null && !String(text).startsWith("-") && Number(text) !== 0; }
function absText(text) { return String(text).replace(/^-/, ""); }
function negate(text) {
  const s = String(text);
  return s.startsWith("-") ? s.slice(1) : Number(s) === 0 ? s : "-" + s;
}

const fmt = {
  usd(v) {
    if (v === null || v === undefined) return "-";
    const r = roundDec(v, 2);
    return (r.neg ? "-" : "") + "$" + grouped(r.int) + "." + r.frac;
  },
  pnl(v) {
    if (v === null || v === undefined) return "-";
    const r = roundDec(v, 2);
    const body = "$" + grouped(r.int) + "." + r.frac;
    if (r.int === "0" && /^0*$/.test(r.frac)) return body;
    return (r.neg ? "-" : "+") + body;
  },
  price(v) {
    if (v === null || v === undefined) return "-";
    const a = Number(absText(v));
    const places = a >= 1000 ? 2 : a >= 1 ? 4 : 6;
    const r = roundDec(v, places);
    return (r.neg ? "-" : "") + "$" + grouped(r.int) + "." + r.frac;
  },
  health(v) { return v === null || v === undefined ? "-" : fixed(v, 2, true) + "×"; },
  pct(v, places = 2) {
    if (v === null || v === undefined) return "-";
    const r = roundDec(shift(v, 2), places);
    return (r.neg ? "-" : "") + grouped(r.int) + (places ? "." + r.frac : "") + "%";
  },
  size(v) {
    if (v === null || v === undefined) return "-";
    return (isPos(v) ? "+" : "") + v;
  },
  corr(v) {
    if (v === null || v === undefined) return "-";
    const r = roundDec(v, 2);
    return (r.neg ? "-" : "+") + r.int + "." + r.frac;
  },
  bp(bp) { return bp === 0 ? "0%" : (bp > 0 ? "+" : "") + (bp / 100) + "%"; },
};

function shift(text, digits) {
  // the decimal string times 10**digits, exactly
  let s = String(text);
  const neg = s.startsWith("-");
  if (neg) s = s.slice(1);
  let [ip, fp = ""] = s.split(".");
  fp = fp.padEnd(digits, "0");
  ip = (ip + fp.slice(0, digits)).replace(/^0+(?=\d)/, "");
  const rest = fp.slice(digits);
  return (neg ? "-" : "") + ip + (rest ? "." + rest : "");
}

// --- DOM helpers -------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "data") for (const [dk, dv] of Object.entries(v)) {
      if (dv !== null && dv !== undefined) el.dataset[dk] = dv;
    }
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function figure(field, value, text, extra = {}, cls = "num") {
  // a <td> holding one figure: data-field, data-value (exact), and the shown text
  // colour by the sign of what is shown (a figure that rounds to $0.00 stays plain)
  const sign = String(text).replace(/^[^-+]*/, "").charAt(0);
  const tone = extra.tone === "pnl" ? (sign === "-" ? " neg" : sign === "+" ? " pos" : "")
    : extra.tone === "neg" && String(text).startsWith("-") ? " neg" : "";
  return h("td", {
    class: cls + tone + (extra.cls ? " " + extra.cls : ""),
    data: { field, value: value === null ? "null" : value, account: extra.account,
            market: extra.market, scenario: extra.scenario },
  }, text);
}

function table(headers, rows) {
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map(([t, num]) => h("th", { class: num ? "num" : "" }, t)))),
    h("tbody", {}, rows));
}

function empty(text) { return h("p", { class: "empty" }, text); }

function put(id, ...nodes) {
  const el = document.getElementById(id);
  el.replaceChildren(...nodes);
}

function label(acct) { return "#" + acct.index + " " + acct.name; }

function healthCell(field, value, acct, margin) {
  let cls = "";
  let text = fmt.health(value);
  if (acct.in_liquidation) { cls = "neg"; text = value === null ? "in liquidation" : text + " in liquidation"; }
  else if (value === null) text = "no positions";
  else if (Number(margin.equity) < Number(margin.maintenance)) { cls = "neg"; text += " liquidatable"; }
  else if (Number(margin.equity) < Number(margin.initial)) { cls = "warn"; text += " below initial"; }
  return figure(field, value, text, { account: acct.id, cls });
}

// --- sections ------------------------------------------------------------------------------

function renderAccounts(doc) {
  const book = doc.strategies;
  if (!book.accounts.length) {
    put("accounts", empty(doc.owner + " has no sub-account yet; open one with `perpdex open-account NAME`"));
    return;
  }
  const caps = Object.fromEntries(doc.accounts.map(a => [a.account.id, a.loss_cap]));
  const rows = book.accounts.map(a => h("tr", { data: { account: a.id } },
    h("td", {}, label(a)),
    h("td", {}, a.mode),
    figure("equity", a.equity, fmt.usd(a.equity), { account: a.id, tone: "neg" }),
    figure("margin_used", a.margin_used, fmt.usd(a.margin_used), { account: a.id }),
    figure("maintenance", a.maintenance, fmt.usd(a.maintenance), { account: a.id }),
    figure("free", a.free, fmt.usd(a.free), { account: a.id, tone: "neg" }),
    healthCell("health", a.health, a, { equity: a.equity, initial: a.margin_used, maintenance: a.maintenance }),
    figure("loss_cap", caps[a.id], caps[a.id] ? fmt.usd(caps[a.id]) : "-", { account: a.id }),
    figure("realized", a.pnl.realized, fmt.pnl(a.pnl.realized), { account: a.id, tone: "pnl" }),
    figure("unrealized", a.pnl.unrealized, fmt.pnl(a.pnl.unrealized), { account: a.id, tone: "pnl" }),
    figure("funding", a.pnl.funding, fmt.pnl(a.pnl.funding), { account: a.id, tone: "pnl" }),
    figure("fees", a.pnl.fees, fmt.pnl(negate(a.pnl.fees)), { account: a.id, cls: isPos(a.pnl.fees) ? "neg" : "" }),
    figure("total_pnl", a.pnl.total, fmt.pnl(a.pnl.total), { account: a.id, tone: "pnl" }),
  ));
  const t = book.totals;
  rows.push(h("tr", { class: "total" },
    h("td", {}, "total"), h("td", {}, ""),
    figure("equity", t.equity, fmt.usd(t.equity), { account: "total", tone: "neg" }),
    figure("margin_used", t.margin_used, fmt.usd(t.margin_used), { account: "total" }),
    figure("maintenance", t.maintenance, fmt.usd(t.maintenance), { account: "total" }),
    figure("free", t.free, fmt.usd(t.free), { account: "total", tone: "neg" }),
    figure("health", t.health, fmt.health(t.health), { account: "total" }),
    h("td", {}, ""),
    figure("realized", t.pnl.realized, fmt.pnl(t.pnl.realized), { account: "total", tone: "pnl" }),
    figure("unrealized", t.pnl.unrealized, fmt.pnl(t.pnl.unrealized), { account: "total", tone: "pnl" }),
    figure("funding", t.pnl.funding, fmt.pnl(t.pnl.funding), { account: "total", tone: "pnl" }),
    figure("fees", t.pnl.fees, fmt.pnl(negate(t.pnl.fees)), { account: "total", cls: isPos(t.pnl.fees) ? "neg" : "" }),
    figure("total_pnl", t.pnl.total, fmt.pnl(t.pnl.total), { account: "total", tone: "pnl" }),
  ));
  put("accounts", table([
    ["sub-account"], ["mode"], ["equity", 1], ["margin used", 1], ["maint.", 1], ["free", 1],
    ["health", 1], ["loss cap", 1], ["realised", 1], ["unrealised", 1], ["funding", 1],
    ["fees", 1], ["total P&L", 1],
  ], rows));
}

function renderPositions(doc) {
  const rows = [];
  for (const a of doc.accounts) {
    for (const p of a.positions) {
      const ctx = { account: a.account.id, market: p.symbol };
      const near = p.liquidation_distance !== null && Number(p.liquidation_distance) < 0.05;
      rows.push(h("tr", { data: ctx },
        h("td", {}, label(a.account)),
        h("td", {}, p.symbol),
        h("td", { class: p.side === "long" ? "pos" : "neg" }, p.side),
        figure("size", p.size, fmt.size(p.size), ctx),
        figure("entry_price", p.entry_price, fmt.price(p.entry_price), ctx),
        figure("mark_price", p.mark_price, fmt.price(p.mark_price), ctx),
        figure("notional", p.notional, fmt.usd(p.notional), ctx),
        figure("unrealized_pnl", p.unrealized_pnl, fmt.pnl(p.unrealized_pnl), { ...ctx, tone: "pnl" }),
        figure("funding_pnl", p.funding_pnl, fmt.pnl(p.funding_pnl), { ...ctx, tone: "pnl" }),
        figure("liquidation_price", p.liquidation_price,
          p.liquidation_price === null ? "none" : fmt.price(p.liquidation_price), ctx),
        figure("liquidation_distance", p.liquidation_distance, fmt.pct(p.liquidation_distance),
          { ...ctx, cls: near ? "neg" : "" }),
      ));
    }
  }
  if (!rows.length) { put("positions", empty("no open positions")); return; }
  put("positions", table([
    ["sub-account"], ["market"], ["side"], ["size", 1], ["entry", 1], ["mark", 1], ["notional", 1],
    ["uPnL", 1], ["funding", 1], ["liq. price", 1], ["to liq.", 1],
  ], rows));
}

const COLORS = ["#58a6ff", "#3fb950", "#d29922", "#f778ba", "#a371f7", "#ff7b72", "#39c5cf", "#e3b341"];

function renderChart(doc) {
  const series = doc.strategies.accounts.map((a, k) => ({
    name: label(a), color: COLORS[k % COLORS.length],
    points: (doc.series[a.id] || []).map(p => [p.block_number, Number(p.pnl)]),
  })).filter(s => s.points.length);
  if (!series.length) { put("pnl-chart", empty("no sub-accounts")); return; }
  const W = 900, H = 240, L = 80, R = 16, T = 12, B = 28;
  const xs = series.flatMap(s => s.points.map(p => p[0]));
  const ys = series.flatMap(s => s.points.map(p => p[1])).concat([0]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const X = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const Y = y => T + (y1 - y) / (y1 - y0) * (H - T - B);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("width", "100%");
  svg.setAttribute("id", "pnl-svg");
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.append(el);
    return el;
  };
  add("line", { x1: L, x2: W - R, y1: Y(0), y2: Y(0), stroke: "#26303b" });
  add("line", { x1: L, x2: L, y1: T, y2: H - B, stroke: "#26303b" });
  for (const y of new Set([y1, 0, y0])) {  // the top, zero and the bottom
    if (y !== 0 && Math.abs(Y(y) - Y(0)) < 14) continue;  // too close to the zero line's label
    add("text", { x: L - 6, y: Y(y) + 4, "text-anchor": "end" }, y === 0 ? "$0" : fmt.usd(y.toFixed(2)));
  }
  add("text", { x: L, y: H - 8 }, "block " + x0);
  add("text", { x: W - R, y: H - 8, "text-anchor": "end" }, "block " + x1);
  for (const s of series) {
    // a step line: the P&L holds between its events
    const pts = [];
    let prev = null;
    for (const [x, y] of s.points) {
      if (prev !== null) pts.push([X(x), Y(prev)]);
      pts.push([X(x), Y(y)]);
      prev = y;
    }
    add("polyline", { points: pts.map(p => p.join(",")).join(" "), fill: "none",
      stroke: s.color, "stroke-width": 2 });
    const [lx, ly] = s.points[s.points.length - 1];
    add("circle", { cx: X(lx), cy: Y(ly), r: 3, fill: s.color });
  }
  const legend = h("div", { class: "legend" },
    series.map(s => h("span", {}, h("i", { style: "background:" + s.color }), s.name)));
  put("pnl-chart", svg, legend);
}

function corrTable(names, matrix, kind) {
  const tint = r => {
    if (r === null) return "";
    const v = Math.max(-1, Math.min(1, Number(r)));
    const a = Math.abs(v) * 0.55;
    return v >= 0 ? `background: rgba(248,81,73,${a})` : `background: rgba(88,166,255,${a})`;
  };
  return table([[""], ...names.map(n => [n, 1])], matrix.map((row, i) => h("tr", {},
    h("th", {}, names[i]),
    row.map((r, j) => {
      const td = figure("correlation", r, fmt.corr(r), { account: kind + ":" + i + ":" + j });
      td.setAttribute("style", tint(r));
      return td;
    }))));
}

function renderCorrelations(doc) {
  const c = doc.strategies.correlation;
  const names = Object.fromEntries(doc.strategies.accounts.map(a => [a.id, label(a)]));
  if (c.accounts.length < 2) put("strategy-corr", empty("needs two sub-accounts or more"));
  else if (!c.enough_history) put("strategy-corr",
    empty(`not enough history: ${c.points} block(s) with P&L events, needs 3`));
  else put("strategy-corr", corrTable(c.accounts.map(a => names[a]), c.matrix, "strategy"),
    h("p", { class: "note" }, `changes of cumulative P&L at ${c.points} blocks; - : a series that never moves`));
  const m = doc.market_correlation;
  if (!m.enough_history) put("market-corr",
    empty(`not enough history: ${m.points} block(s) where a mark moved, needs ${m.needed}`));
  else put("market-corr", corrTable(m.symbols, m.matrix, "market"),
    h("p", { class: "note" }, `returns of the cached marks at ${m.points} blocks since block ${doc.from_block}`));
}

function renderScenarios(doc) {
  const book = doc.risk_book;
  if (!book) { put("scenarios", empty("no risk book published on this deployment")); return; }
  const held = doc.accounts.filter(a => a.positions.length);
  const symbols = doc.markets.map(m => m.symbol);
  const rows = book.scenarios.map(sc => h("tr", { data: { scenario: sc.index } },
    h("td", { class: "num" }, sc.index),
    h("td", {}, sc.name),
    symbols.map(s => h("td", { class: "num" }, fmt.bp(sc.shocks_bp[s] ?? 0))),
    held.map(a => {
      const s = a.scenarios.find(x => x.index === sc.index);
      if (!s) return h("td", {}, "");
      return figure("scenario_loss", s.loss, fmt.usd(s.loss) + (s.binding ? " ◀" : ""),
        { account: a.account.id, scenario: sc.index, cls: s.binding ? "binding" : "" });
    })));
  const req = (title, field, f) => h("tr", { class: "total" },
    h("td", {}, ""), h("td", {}, title), symbols.map(() => h("td", {}, "")),
    held.map(a => f(a)));
  rows.push(req("requirement binds", "binds", a => h("td", {
    class: "num", data: { field: "binds", account: a.account.id, value: a.requirement.binds } },
    a.requirement.binds)));
  rows.push(req("portfolio requirement", "portfolio", a => figure("portfolio_requirement",
    a.requirement.portfolio, fmt.usd(a.requirement.portfolio), { account: a.account.id })));
  rows.push(req("margin saved vs isolated", "saved", a => figure("margin_saved",
    a.requirement.margin_saved, fmt.usd(a.requirement.margin_saved), { account: a.account.id })));
  put("scenarios", table([
    ["#", 1], ["scenario"], ...symbols.map(s => [s, 1]),
    ...held.map(a => [label(a.account) + " (" + a.margin.mode + ")", 1]),
  ], rows), held.length ? "" : empty("no sub-account holds a position: no losses to show"));
}

function renderLiquidations(doc) {
  const q = doc.liquidations;
  if (!q.auction) { put("liquidations", empty("the manifest records no auction contract")); return; }
  if (!q.running.length) {
    put("liquidations", empty("none running (yours, or any account seen starting one since block " + doc.from_block + ")"));
    return;
  }
  put("liquidations", table([
    ["account"], ["owner"], ["equity", 1], ["maint.", 1], ["health", 1], ["tranche", 1],
    ["lot left", 1], ["lot notional", 1], ["discount now", 1], ["backstop in", 1],
  ], q.running.map(r => h("tr", { class: r.own ? "neg" : "" },
    h("td", {}, (r.own ? "yours: " : "") + label(r)),
    h("td", {}, h("code", {}, r.owner.slice(0, 10) + "…")),
    figure("liq_equity", r.equity, fmt.usd(r.equity), { account: r.id }),
    figure("liq_maintenance", r.maintenance, fmt.usd(r.maintenance), { account: r.id }),
    figure("liq_health", r.health, fmt.health(r.health), { account: r.id }),
    h("td", { class: "num" }, r.tranche || "-"),
    figure("lot_left", r.lot_left, fmt.pct(r.lot_left, 1), { account: r.id }),
    figure("lot_notional", r.lot_notional, fmt.usd(r.lot_notional), { account: r.id }),
    figure("discount", r.discount, fmt.pct(r.discount), { account: r.id }),
    h("td", { class: "num" }, r.seconds_left === null ? "-" : r.seconds_left + " s"),
  ))));
}

function renderCaps(doc) {
  const c = doc.loss_caps;
  if (!c.accounts.length) put("loss-caps", empty("no sub-account has a loss cap (`perpdex loss-cap set USD`)"));
  else put("loss-caps", table([
    ["sub-account"], ["floor", 1], ["equity", 1], ["headroom", 1], ["status"],
  ], c.accounts.map(a => h("tr", {},
    h("td", {}, label(a)),
    figure("cap_floor", a.floor, fmt.usd(a.floor), { account: a.id }),
    figure("cap_equity", a.equity, fmt.usd(a.equity), { account: a.id }),
    figure("cap_headroom", a.headroom, fmt.usd(a.headroom) +
      (a.headroom_share === null ? "" : " (" + fmt.pct(a.headroom_share) + ")"), { account: a.id, tone: "neg" }),
    h("td", { class: a.triggerable ? "neg" : isNeg(a.headroom) ? "warn" : "pos" },
      a.triggerable ? "triggerable: anyone may close it for " + fmt.usd(c.trigger_fee)
        : isNeg(a.headroom) ? "below the floor, nothing to close" : "above the floor"),
  ))));
  const r = doc.rebalancer;
  const rows = [h("tr", {}, h("td", {}, "status"),
    h("td", { id: "rebalancer-status", class: r.status === "running" ? "pos" : "muted" }, r.status))];
  rows.push(h("tr", {}, h("td", {}, "state file"), h("td", {}, h("code", {}, r.state_file || "-"))));
  if (r.updated) rows.push(h("tr", {}, h("td", {}, "last written"),
    h("td", {}, new Date(r.updated * 1000).toLocaleString())));
  for (const [k, v] of Object.entries(r.fields || {})) rows.push(h("tr", {}, h("td", {}, k), h("td", {}, String(v))));
  put("rebalancer", table([["rebalancer (`perpdex keeper rebalance`)"], [""]], rows));
}

function renderMarkets(doc) {
  put("markets", table([
    ["market"], ["oracle", 1], ["mark", 1], ["funding / day", 1], ["long OI", 1], ["short OI", 1],
    ["skew", 1], ["status"],
  ], doc.markets.map(m => h("tr", {},
    h("td", {}, m.symbol),
    figure("oracle_price", m.oracle_price, fmt.price(m.oracle_price), { market: m.symbol }),
    figure("market_mark", m.mark_price, fmt.price(m.mark_price), { market: m.symbol }),
    figure("funding_rate", m.funding_rate_per_day, fmt.pct(m.funding_rate_per_day, 4), { market: m.symbol }),
    figure("long_oi", m.long_oi, m.long_oi, { market: m.symbol }),
    figure("short_oi", m.short_oi, m.short_oi, { market: m.symbol }),
    figure("skew", m.skew, fmt.size(m.skew), { market: m.symbol }),
    h("td", { class: m.paused ? "neg" : m.oracle_price === null ? "warn" : "" },
      m.paused ? "paused" : m.oracle_price === null ? "no oracle price" : "open"),
  ))));
}

// --- state and live updates ----------------------------------------------------------------

let current = null;

function render(doc) {
  current = doc;
  document.getElementById("owner").textContent = doc.owner;
  document.getElementById("network").textContent = doc.network;
  const block = document.getElementById("block");
  block.textContent = doc.block_number;
  block.dataset.value = doc.block_number;
  document.getElementById("block-time").textContent =
    "at " + new Date(doc.block_time * 1000).toLocaleString();
  document.getElementById("from-block").textContent = doc.from_block;
  renderAccounts(doc);
  renderPositions(doc);
  renderChart(doc);
  renderCorrelations(doc);
  renderScenarios(doc);
  renderLiquidations(doc);
  renderCaps(doc);
  renderMarkets(doc);
  document.body.dataset.version = doc.version;
  document.body.dataset.ready = "1";
  if (doc.status) renderStatus(doc.status);
}

function renderStatus(status) {
  const live = document.getElementById("live");
  const banner = document.getElementById("banner");
  document.body.dataset.head = status.head ?? "";
  if (status.ok) {
    live.className = "badge ok";
    live.textContent = "live";
    banner.hidden = true;
  } else if (status.error) {
    live.className = "badge down";
    live.textContent = "node unreachable";
    banner.hidden = false;
    banner.textContent = "The last read failed (figures below are from block " +
      (current ? current.block_number : "-") + "): " + status.error;
  }
}

function connect() {
  const es = new EventSource("/api/events");
  es.addEventListener("state", e => render(JSON.parse(e.data)));
  es.addEventListener("status", e => renderStatus(JSON.parse(e.data)));
  es.onerror = () => {
    const live = document.getElementById("live");
    live.className = "badge wait";
    live.textContent = "reconnecting";
  };
}

fetch("/api/state").then(r => r.ok ? r.json() : null).then(doc => { if (doc && !current) render(doc); })
  .catch(() => {});
connect();
