// gallery-scroll.mjs: how the Images screen holds up with a large catalogue. Scrolls the
// gallery to the end in headless Chromium, timing every keyset page (request → tiles in
// the grid), and reports the page's JS heap and DOM size at the end. Not a test: a
// measurement, recorded in docs/web.md.
//
//   WEB_URL=http://127.0.0.1:8080 SELLER=<a seller with many imported images> \
//   node e2e/browser/gallery-scroll.mjs
//
// (`vitrine up --demo` with DEMO_IMAGES=10000, then import the demo folder as SELLER.)

import { chromium } from "playwright-core";

const WEB_URL = process.env.WEB_URL ?? "http://127.0.0.1:8080";
const SELLER = process.env.SELLER;
if (!SELLER) throw new Error("SELLER is required");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-precise-memory-info"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
page.setDefaultTimeout(30_000);

await page.goto(WEB_URL);
await page.getByLabel("Seller id").fill(SELLER);
await page.getByLabel("Seller id").press("Enter");
await page.getByRole("heading", { name: "Import", exact: true }).waitFor();

const pageTimes = [];
const pending = new Map();
page.on("request", (r) => r.url().includes("/images?") && pending.set(r, performance.now()));
page.on("requestfinished", (r) => {
  if (!pending.has(r)) return;
  pageTimes.push(performance.now() - pending.get(r));
  pending.delete(r);
});

const started = performance.now();
await page.getByRole("link", { name: "Images" }).click();
await page.locator("li.tile").first().waitFor();
const firstTiles = performance.now() - started;

// Scroll like a reader who holds End: each step jumps to the bottom and waits for the
// next page to arrive, until the status says there is nothing more below.
const stepTimes = [];
for (;;) {
  await page.waitForFunction(() => !document.querySelector(".gallery-status").textContent.startsWith("Loading"));
  const before = await page.locator("li.tile").count();
  const status = await page.locator(".gallery-status").textContent();
  if (!status.includes("more below")) break;
  const t = performance.now();
  await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
  await page.waitForFunction((n) => document.querySelectorAll("li.tile").length > n, before);
  stepTimes.push(performance.now() - t);
}
const total = performance.now() - started;
const tiles = await page.locator("li.tile").count();
const memory = await page.evaluate(() => ({
  heapMiB: performance.memory ? performance.memory.usedJSHeapSize / 1048576 : null,
  domNodes: document.getElementsByTagName("*").length,
}));
// Responsiveness at the end: a filter change empties the grid and shows the first page again.
const t = performance.now();
await page.getByLabel("Source").selectOption("google_drive");
await page.locator(".gallery-status").filter({ hasText: "images shown" }).waitFor();
const filterMs = performance.now() - t;

const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
};
const ms = (v) => `${v.toFixed(0)} ms`;
console.log(`tiles: ${tiles} in ${pageTimes.length} pages, ${ms(total)} in all (first tiles after ${ms(firstTiles)})`);
console.log(`GET /images per page: p50 ${ms(quantile(pageTimes, 0.5))}, p99 ${ms(quantile(pageTimes, 0.99))}, max ${ms(Math.max(...pageTimes))}`);
console.log(`scroll step (End → next page in the grid): p50 ${ms(quantile(stepTimes, 0.5))}, p99 ${ms(quantile(stepTimes, 0.99))}, max ${ms(Math.max(...stepTimes))}`);
console.log(`at the end: JS heap ${memory.heapMiB?.toFixed(1)} MiB, ${memory.domNodes} DOM nodes; filter change → first page in ${ms(filterMs)}`);
await browser.close();
