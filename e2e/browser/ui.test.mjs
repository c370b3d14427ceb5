// ui.test.mjs: the web UI in headless Chromium, against a running `vitrine up --demo`.
//
// Run by e2e/browser.rs (which starts the stack and passes the variables below); by hand:
//   WEB_URL=http://127.0.0.1:8080 DEMO_FOLDER_URL='<Drive URL>' DEMO_DROPBOX_URL='<Dropbox URL>' \
//   DEMO_IMAGES=300 node e2e/browser/ui.test.mjs
//
// Scenarios, in order, as one seller: sign in; import the demo Drive folder and watch it
// reach 100 %; import the same folder over Dropbox; the gallery, its source filter and
// its pages; upload an image and create a product with it; uploads refused by the app
// (not an image type) and by storage (bytes that are not the declared type), explained;
// the phone-width layout; sign out. Screenshots of each screen go to SCREENSHOTS_DIR.
// Any page error, CSP violation or unexpected console error fails the run.

import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { crc32, deflateSync } from "node:zlib";
import { chromium } from "playwright-core";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is required`);
  return value;
};
const WEB_URL = env("WEB_URL");
const DRIVE_URL = env("DEMO_FOLDER_URL");
const DROPBOX_URL = env("DEMO_DROPBOX_URL");
// What the demo folder holds (src/demo.rs): DEMO_IMAGES images, 3 PDFs, 2 Google Docs
// (Drive only) and one broken .jpg.
const IMAGES = Number(env("DEMO_IMAGES"));
const SCREENSHOTS = env("SCREENSHOTS_DIR", "target/browser-screenshots");
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const WORK = env("BROWSER_WORK_DIR", "target/browser-work");
// A new seller each run, so a stack that already ran the scenarios starts from nothing.
const SELLER = `browser-${Date.now().toString(36)}`;
const TIMEOUT = 60_000;

mkdirSync(SCREENSHOTS, { recursive: true });
mkdirSync(WORK, { recursive: true });

// ---------------------------------------------------------------- fixtures

/** A real PNG (RGB gradient, IEND and all), built here so no binary is committed. */
function gradientPng(width, height) {
  const chunk = (type, data) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // RGB
  const rows = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    rows[row] = 0; // filter: none
    for (let x = 0; x < width; x++) {
      const i = row + 1 + x * 3;
      rows[i] = 60 + Math.round((150 * x) / width);
      rows[i + 1] = 90 + Math.round((100 * y) / height);
      rows[i + 2] = 220 - Math.round((80 * x) / width);
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(rows)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

const productPng = join(WORK, "blue-mug.png");
writeFileSync(productPng, gradientPng(640, 480));

// ---------------------------------------------------------------- the browser

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: "light" });
context.setDefaultTimeout(TIMEOUT);
const page = await context.newPage();

// Failures the page reports itself. Error responses (4xx) that a scenario provokes are
// logged by Chromium as "Failed to load resource"; those are expected and listed per step.
const problems = [];
let expectedFailedLoads = 0;
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("console", (message) => {
  if (message.type() !== "error") return;
  const text = message.text();
  if (/Failed to load resource: the server responded with a status of 4\d\d/.test(text) && expectedFailedLoads > 0) {
    expectedFailedLoads -= 1;
    return;
  }
  problems.push(`console error: ${text}`);
});
page.on("requestfailed", (request) => {
  const failure = request.failure()?.errorText ?? "";
  // Aborted fetches (a view unmounting, an SSE stream closed) are not failures.
  if (!failure.includes("ERR_ABORTED")) problems.push(`request failed: ${request.method()} ${request.url()} ${failure}`);
});

let step = "start";
const passed = [];
async function scenario(name, body) {
  step = name;
  const started = Date.now();
  await body();
  assert.deepEqual(problems, [], `problems reported by the page during "${name}"`);
  passed.push(name);
  console.log(`ok - ${name} (${Date.now() - started} ms)`);
}
const shot = (name, options = {}) =>
  page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), animations: "disabled", ...options });
const text = (locator) => locator.innerText();

try {
  await scenario("sign in with the development issuer", async () => {
    await page.goto(WEB_URL);
    await page.getByRole("heading", { name: "Sign in to Vitrine" }).waitFor();
    assert.equal(await page.title(), "Sign in · Vitrine");
    await shot("sign-in");

    // An id the app would refuse is explained before anything is sent.
    await page.getByLabel("Seller id").fill("not valid!");
    await page.getByRole("button", { name: "Sign in" }).click();
    const fieldError = page.locator("#seller-error");
    await fieldError.waitFor();
    assert.match(await text(fieldError), /letters, digits/);
    assert.equal(await page.getByLabel("Seller id").getAttribute("aria-invalid"), "true");

    await page.getByLabel("Seller id").fill(SELLER);
    await page.getByLabel("Seller id").press("Enter");
    await page.getByRole("heading", { name: "Import", exact: true }).waitFor();
    assert.equal(await text(page.locator("[data-seller-id]")), SELLER);
    assert.ok(await page.getByRole("navigation", { name: "Main" }).isVisible());
  });

  await scenario("a link that is not a shared folder is explained before submitting", async () => {
    const input = page.getByLabel("Shared folder link");
    await input.fill("https://example.com/drive/folders/abc");
    await page.getByRole("button", { name: "Import folder" }).click();
    const error = page.locator("#folder-error");
    await error.waitFor();
    assert.ok((await text(error)).length > 10, "a sentence, not a code");
    assert.equal(await page.locator("article.job").count(), 0, "no job was started");
    await input.fill("");
  });

  const finishedJob = async (jobCard) => {
    await jobCard.locator(".badge.completed").waitFor({ timeout: 120_000 });
    const bar = jobCard.getByRole("progressbar");
    assert.equal(await bar.getAttribute("aria-valuenow"), "100");
    return text(jobCard.locator(".counts"));
  };

  await scenario(`import the nested ${IMAGES}-image Drive folder and watch it reach 100 %`, async () => {
    await page.getByLabel("Shared folder link").fill(DRIVE_URL);
    // Progress is followed live: the first answer (listing), then SSE updates.
    const progress = [];
    await page.exposeFunction("recordProgress", (value) => progress.push(Number(value)));
    await page.evaluate(() => {
      new MutationObserver((records) => {
        for (const r of records) {
          if (r.attributeName === "aria-valuenow") window.recordProgress(r.target.getAttribute("aria-valuenow"));
        }
      }).observe(document.querySelector("main"), { attributes: true, subtree: true, attributeFilter: ["aria-valuenow"] });
    });
    await page.getByRole("button", { name: "Import folder" }).click();
    const job = page.locator("article.job").first();
    await job.waitFor();
    const counts = await finishedJob(job);
    assert.match(counts, new RegExp(`${IMAGES}\\s+imported`), counts);
    assert.match(counts, /5\s+skipped/, counts); // 3 PDFs, 2 Google Docs
    assert.match(counts, /1\s+failed/, counts); // the broken .jpg
    assert.match(counts, /100%/, counts);
    assert.ok(progress.includes(100), `progress seen: ${progress}`);
    assert.ok(progress.every((v, i) => i === 0 || v >= progress[i - 1]), `progress never goes back: ${progress}`);

    // The failed item, with its reason, and a retry button.
    const failures = job.locator(".failures table");
    await failures.waitFor();
    const failedRow = await text(failures.locator("tbody tr"));
    assert.match(failedRow, /not-an-image/, failedRow);
    assert.ok(await job.getByRole("button", { name: /Retry 1 failed/ }).isVisible());
    await shot("import");
  });

  await scenario("retry puts the failed item back in line; it fails again with its reason", async () => {
    const job = page.locator("article.job").first();
    await job.getByRole("button", { name: /Retry 1 failed/ }).click();
    await page.locator("[data-toasts]").getByText(/Retrying 1 item/).waitFor();
    const counts = await finishedJob(job);
    assert.match(counts, /1\s+failed/, counts);
    await job.locator(".failures table code").getByText("not-an-image", { exact: true }).waitFor();
  });

  await scenario("import the same folder over Dropbox; past jobs are listed", async () => {
    await page.getByLabel("Shared folder link").fill(DROPBOX_URL);
    await page.getByRole("button", { name: "Import folder" }).click();
    await page.locator("article.job").nth(1).waitFor();
    const counts = await finishedJob(page.locator("article.job").first());
    assert.match(counts, new RegExp(`${IMAGES}\\s+imported`), counts);
    assert.match(await text(page.locator("article.job").first()), /Dropbox/);

    // A reload lists both jobs from GET /imports, newest first.
    await page.reload();
    await page.locator("article.job").nth(1).waitFor();
    assert.equal(await page.locator("article.job").count(), 2);
    assert.match(await text(page.locator("article.job").nth(0)), /Dropbox/);
    assert.match(await text(page.locator("article.job").nth(1)), /Google Drive/);
  });

  await scenario("the gallery shows every image, with working thumbnails and facts", async () => {
    await page.getByRole("link", { name: "Images" }).click();
    const tiles = page.locator("li.tile");
    await tiles.first().waitFor();
    // Pages load as the end of the grid scrolls into view.
    for (let i = 0; i < 20 && (await tiles.count()) < 2 * IMAGES; i++) {
      await page.locator("li.tile").last().scrollIntoViewIfNeeded();
      await page.waitForTimeout(300);
    }
    assert.equal(await tiles.count(), 2 * IMAGES);
    await page.getByRole("status").filter({ hasText: `${2 * IMAGES} images shown.` }).waitFor();
    // textContent: tiles off screen skip rendering (content-visibility), so innerText is empty.
    const facts = await tiles.first().textContent();
    assert.match(facts, /KiB/);
    assert.match(facts, /JPEG|PNG/);
    assert.match(facts, /\d+×\d+/);
    // The thumbnails really load from storage's signed URLs (allowed by the page's CSP).
    await page.evaluate(() => window.scrollTo(0, 0));
    const firstImage = tiles.first().locator("img");
    await firstImage.evaluate((img) => img.complete || new Promise((r) => img.addEventListener("load", r, { once: true })));
    assert.ok(await firstImage.evaluate((img) => img.naturalWidth > 0), "the first thumbnail loaded");
    await page.waitForFunction(() => [...document.querySelectorAll("li.tile img")].slice(0, 12).every((i) => i.complete && i.naturalWidth > 0));
    await shot("images");
  });

  await scenario("the source filter shows one provider's images", async () => {
    for (const [value, label] of [["dropbox", "Dropbox"], ["google_drive", "Google Drive"]]) {
      await page.getByLabel("Source").selectOption(value);
      await page.getByRole("status").filter({ hasText: "images shown" }).waitFor();
      const tiles = page.locator("li.tile");
      await tiles.first().waitFor();
      const sources = await tiles.evaluateAll((els) => els.map((e) => e.dataset.source));
      assert.ok(sources.length >= Math.min(IMAGES, 60), `${sources.length} ${label} tiles`);
      assert.ok(sources.every((s) => s === value), `only ${value}: ${[...new Set(sources)]}`);
      assert.match(await tiles.first().textContent(), new RegExp(label));
    }
    await shot("images-filtered");
    await page.getByLabel("Source").selectOption("");
  });

  await scenario("upload an image and create a product with it", async () => {
    await page.getByRole("link", { name: "Upload & products" }).click();
    await page.getByRole("heading", { name: "Upload & products" }).waitFor();
    assert.ok(await page.getByLabel("Name").isDisabled(), "the product form waits for an image");
    await page.locator("#image-file").setInputFiles(productPng);
    const stored = page.locator(".notice.ok").filter({ hasText: "Stored as image" });
    await stored.waitFor();
    assert.match(await text(stored), /PNG, 640×480/);
    assert.equal(await page.getByRole("progressbar", { name: "Upload progress" }).getAttribute("aria-valuenow"), "100");
    assert.match(await text(page.locator("[data-sha256]")), /^[0-9a-f]{64}$/);

    await page.getByLabel("Name").fill("Blue mug");
    await page.getByLabel("Description").fill("Stoneware, 350 ml. Dishwasher safe.");
    await page.getByLabel("Price").fill("12,50");
    await page.getByLabel("Currency").selectOption("EUR");
    await shot("upload");
    await page.getByRole("button", { name: "Create product" }).click();
    const product = page.locator("li.product").filter({ hasText: "Blue mug" });
    await product.waitFor();
    assert.match(await text(product), /12[.,]50/);
    await product.locator("img").evaluate((img) => img.complete || new Promise((r) => img.addEventListener("load", r, { once: true })));
    assert.ok(await product.locator("img").evaluate((img) => img.naturalWidth === 640), "the product shows its image");

    // It is there after a reload too (GET /products).
    await page.reload();
    await page.locator("li.product").filter({ hasText: "Blue mug" }).waitFor();
    assert.equal(await page.locator("li.product").count(), 1);
    await shot("products", { fullPage: true });
  });

  await scenario("a file that is not an image type is refused by the app, explained", async () => {
    expectedFailedLoads = 1; // POST /uploads → 4xx
    await page.locator("#image-file").setInputFiles({ name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("not an image\n") });
    const error = page.locator(".notice.error").first();
    await error.waitFor();
    const message = await text(error);
    assert.doesNotMatch(message, /[{}"]/, `readable, not raw JSON: ${message}`);
    assert.match(message, /\(unsupported-content-type\)/, message);
    await page.getByText("Nothing was stored.").waitFor();
    assert.ok(await page.getByLabel("Name").isDisabled(), "no product can be made from it");
  });

  await scenario("bytes that are not the declared type are refused by storage, explained", async () => {
    expectedFailedLoads = 1; // PUT → 415
    await page.locator("#image-file").setInputFiles({
      // A GIF's signature, declared as a PNG.
      name: "holiday.png", mimeType: "image/png", buffer: Buffer.from("GIF89a and then some bytes that are no picture at all. ".repeat(40)),
    });
    // The app issues an upload URL (the metadata is fine); storage reads the bytes and refuses.
    const error = page.locator(".notice.error").first();
    await error.waitFor();
    const message = await text(error);
    assert.doesNotMatch(message, /[{}"]/, `readable, not raw JSON: ${message}`);
    assert.match(message, /\(content-type-mismatch\)/, message);
    assert.equal(await page.getByRole("progressbar", { name: "Upload progress" }).getAttribute("class"), "progress failed");
    await page.getByText("Nothing was stored.").waitFor();
    await shot("upload-rejected");
    assert.equal(expectedFailedLoads, 0, "the refusal came from the storage PUT");
  });

  await scenario("phone width: one column, nothing wider than the screen", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.getByRole("link", { name: "Images" }).click();
    await page.locator("li.tile").first().waitFor();
    await page.waitForFunction(() => [...document.querySelectorAll("li.tile img")].slice(0, 4).every((i) => i.complete && i.naturalWidth > 0));
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
    await shot("images-phone");
    await page.getByRole("link", { name: "Import" }).click();
    await page.locator("article.job").first().waitFor();
    assert.ok((await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)) <= 0);
    await page.setViewportSize({ width: 1280, height: 860 });
  });

  await scenario("keyboard: the skip link, the nav and sign out are reachable with Tab", async () => {
    // From a fresh load of a view that focuses nothing itself, Tab starts at the top.
    await page.goto(`${WEB_URL}/#/images`);
    await page.reload();
    await page.locator("li.tile").first().waitFor();
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement?.outerHTML), '<a class="skip-link" href="#main">Skip to content</a>');
    const reached = [];
    for (let i = 0; i < 8; i++) {
      await page.keyboard.press("Tab");
      reached.push(await page.evaluate(() => document.activeElement?.textContent?.trim()));
    }
    for (const name of ["Import", "Images", "Upload & products", "Sign out"]) {
      assert.ok(reached.includes(name), `${name} not reached by Tab: ${reached}`);
    }
    await page.getByRole("button", { name: "Sign out" }).focus();
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Sign in to Vitrine" }).waitFor();
    assert.ok(await page.getByRole("navigation", { name: "Main" }).isHidden());
  });
} catch (error) {
  await shot(`failed-${step.replace(/[^a-z0-9]+/gi, "-")}`, { fullPage: true }).catch(() => {});
  console.error(`not ok - ${step}\n${error.stack || error}`);
  if (problems.length) console.error(`page problems:\n  ${problems.join("\n  ")}`);
  await browser.close();
  process.exit(1);
}

await browser.close();
console.log(`all ${passed.length} browser scenarios passed; screenshots in ${SCREENSHOTS}`);
