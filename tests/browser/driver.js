// A headless Chromium driven through playwright-core, one JSON command a line on stdin,
// one JSON answer a line on stdout (tests/integration/test_dashboard.py drives it):
//
//   {"op": "open", "url": U}                  load U, wait for body[data-ready="1"]
//   {"op": "figures"}                         every [data-field] cell, the block, marks
//   {"op": "wait_head", "above": N, "timeout_ms": T}
//                                             wait until the page shows a block above N
//                                             (pushed by the server: no reload), then figures
//   {"op": "mark"}                            set window.__perpdexMark (lost on a reload)
//   {"op": "screenshot", "path": P}           full-page PNG
//   {"op": "close"}
//
// Every answer is {"ok": true, ...} or {"ok": false, "error": text}; page errors and
// console errors are collected and returned with each figures answer.
// Launch: CHROMIUM (default /usr/bin/chromium), headless. No browser is downloaded.
"use strict";

const readline = require("readline");
const { chromium } = require("playwright-core");

let browser = null;
let page = null;
const errors = [];

async function figures() {
  return page.evaluate(() => ({
    block: Number(document.getElementById("block").dataset.value),
    version: Number(document.body.dataset.version),
    mark: window.__perpdexMark === true,
    live: document.getElementById("live").textContent,
    rebalancer: (document.getElementById("rebalancer-status") || {}).textContent || null,
    cells: Array.from(document.querySelectorAll("[data-field]")).map(el => ({
      field: el.dataset.field,
      account: el.dataset.account || null,
      market: el.dataset.market || null,
      scenario: el.dataset.scenario === undefined ? null : Number(el.dataset.scenario),
      value: el.dataset.value === "null" ? null : el.dataset.value,
      text: el.textContent,
      cls: el.className,
    })),
  }));
}

const ops = {
  async open({ url, timeout_ms = 15000 }) {
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
    });
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.on("pageerror", e => errors.push("pageerror: " + String(e)));
    page.on("console", m => { if (m.type() === "error") errors.push("console: " + m.text()); });
    await page.goto(url);
    await page.waitForSelector('body[data-ready="1"]', { timeout: timeout_ms });
    return { title: await page.title() };
  },
  async figures() {
    return { ...(await figures()), errors };
  },
  async wait_head({ above, timeout_ms = 15000 }) {
    await page.waitForFunction(
      n => Number(document.getElementById("block").dataset.value) > n, above,
      { timeout: timeout_ms, polling: 100 });
    return { ...(await figures()), errors };
  },
  async mark() {
    await page.evaluate(() => { window.__perpdexMark = true; });
    return {};
  },
  async screenshot({ path }) {
    await page.screenshot({ path, fullPage: true });
    return { path };
  },
  async close() {
    if (browser) await browser.close();
    browser = null;
    return {};
  },
};

const rl = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on("line", line => {
  queue = queue.then(async () => {
    let answer;
    try {
      const cmd = JSON.parse(line);
      answer = { ok: true, ...(await ops[cmd.op](cmd)) };
    } catch (e) {
      answer = { ok: false, error: String(e && e.stack || e) };
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
  });
});
rl.on("close", () => { queue.then(() => browser && browser.close()).then(() => process.exit(0)); });
