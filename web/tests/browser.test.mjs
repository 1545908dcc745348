// The web page in a real headless Chromium (Debian's, with WebGPU on SwiftShader): it loads
// models from a local server, answers greedily as native wgquant does, and says clearly what is
// wrong with a bad URL or a broken file. Run by scripts/test-web.sh, after scripts/web.sh built
// web/pkg. A screenshot of the page after a chat reply is kept in web/tests/artifacts/.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdirSync, readFileSync, statSync, createReadStream } from "node:fs";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const ARTIFACTS = fileURLToPath(new URL("artifacts", import.meta.url));
const TINY = "tests/data/tiny/phi3.gguf";
const SMOLLM2 = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
// SwiftShader runs every kernel on the CPU: a load or an answer of the real model takes minutes.
const SLOW = 10 * 60_000;

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".wasm": "application/wasm" };

// Files under the repository, plus two broken models: a file cut in half (served whole, as a
// truncated file on a server would be), and a connection that closes before its Content-Length.
function serve(req, res) {
  const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
  const tiny = readFileSync(join(ROOT, TINY));
  if (path === "/broken/half.gguf") {
    const half = tiny.subarray(0, tiny.length >> 1);
    res.writeHead(200, { "Content-Length": half.length });
    return res.end(half);
  }
  if (path === "/broken/cut-short.gguf") {
    res.writeHead(200, { "Content-Length": tiny.length });
    res.write(tiny.subarray(0, 4096));
    return setTimeout(() => res.destroy(), 50);
  }
  const file = normalize(join(ROOT, path.endsWith("/") ? `${path}index.html` : path));
  let size;
  try {
    if (!file.startsWith(ROOT)) throw new Error("outside");
    size = statSync(file).size;
  } catch {
    res.writeHead(404, { "Content-Type": "text/plain" });
    return res.end("not found");
  }
  res.writeHead(200, { "Content-Length": size, "Content-Type": TYPES[extname(file)] ?? "application/octet-stream" });
  createReadStream(file).pipe(res);
}

let server, browser, base;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  server = createServer(serve);
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  base = `http://127.0.0.1:${server.address().port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--enable-unsafe-webgpu", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--disable-quic"],
  });
});

after(async () => {
  await browser?.close();
  server?.close();
});

// A fresh page whose console errors are kept for the failure message.
async function openPage(query) {
  const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
  page.log = [];
  page.on("console", (m) => page.log.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => page.log.push(`pageerror: ${e.message}`));
  await page.goto(`${base}/web/?${new URLSearchParams(query)}`);
  await page.waitForSelector("body[data-state=idle]");
  return page;
}

// Clicks Load and waits for the page to settle: `ready` or `error`.
async function load(page, timeout = SLOW) {
  await page.click("#load-button");
  await page.waitForSelector("body[data-state=ready], body[data-state=error]", { timeout });
  return page.evaluate(() => ({
    state: document.body.dataset.state,
    status: document.getElementById("status").textContent,
    error: document.getElementById("error").hidden ? "" : document.getElementById("error").textContent,
  }));
}

// Sends `text` greedily and waits for the whole answer: its text and token ids.
async function ask(page, text, maxTokens) {
  await page.fill("#temperature", "0");
  await page.fill("#max-tokens", String(maxTokens));
  await page.fill("#message", text);
  const answers = await page.locator(".message.assistant").count();
  await page.click("#send-button");
  const answer = page.locator(".message.assistant").nth(answers);
  await answer.and(page.locator("[data-done]")).waitFor({ timeout: SLOW });
  const error = await page.evaluate(() => document.getElementById("error").hidden ? "" : document.getElementById("error").textContent);
  assert.equal(error, "", page.log.join("\n"));
  return { text: await answer.textContent(), ids: (await answer.getAttribute("data-ids")).split(",").map(Number) };
}

describe("the web page", () => {
  test("continues text on a tiny model exactly as llama.cpp does, and reloads it from the browser's cache", async () => {
    const reference = JSON.parse(readFileSync(join(ROOT, "tests/data/tiny/phi3.greedy.json"), "utf8"));
    // llama.cpp ran it with 256 positions of context (Phi-3's long rope factors apply past 64).
    const page = await openPage({ model: `/${TINY}`, ctx: "256" });
    const loaded = await load(page);
    assert.equal(loaded.state, "ready", `${loaded.error}\n${page.log.join("\n")}`);
    assert.match(loaded.status, /^Loaded phi3\.gguf \(phi3,/);
    assert.equal(await page.isChecked("#use-template"), false, "a file without a chat template continues text");
    const answer = await ask(page, reference.prompt, reference.generated_ids.length);
    assert.deepEqual(answer.ids, reference.generated_ids, page.log.join("\n"));

    // The second load of the same URL reads the browser's cache, not the network.
    await page.reload();
    await page.waitForSelector("body[data-state=idle]");
    const again = await load(page);
    assert.equal(again.state, "ready", again.error);
    assert.match(again.status, /^Loaded phi3\.gguf from the browser's cache/);
    await page.close();
  });

  test("continues text equally with the GPU profile, the one browsers with a GPU get", async () => {
    const reference = JSON.parse(readFileSync(join(ROOT, "tests/data/tiny/phi3.greedy.json"), "utf8"));
    const page = await openPage({ model: `/${TINY}`, ctx: "256", profile: "gpu" });
    const loaded = await load(page);
    assert.equal(loaded.state, "ready", `${loaded.error}\n${page.log.join("\n")}`);
    assert.match(loaded.status, / gpu profile /);
    const answer = await ask(page, reference.prompt, reference.generated_ids.length);
    assert.deepEqual(answer.ids, reference.generated_ids, page.log.join("\n"));
    await page.close();
  });

  test("says clearly what is wrong with a bad URL or a broken file, and never hangs", async (t) => {
    const cases = [
      ["/no/such/model.gguf", /HTTP 404/],
      ["/web/index.html", /not a GGUF file/],
      ["/broken/half.gguf", /Loading failed: .*(end|past|beyond|truncat)/i],
      ["/broken/cut-short.gguf", /download (failed|ended early)/],
    ];
    for (const [url, message] of cases) {
      const page = await openPage({ model: url });
      const loaded = await load(page, 60_000);
      assert.equal(loaded.state, "error", `${url}: ${loaded.status}`);
      assert.match(loaded.error, message, url);
      t.diagnostic(`${url}: ${loaded.error}`);
      await page.close();
    }
  });

  test("chats with SmolLM2 as native wgquant does, and shows its speed", async (t) => {
    const message = "Name three primary colors.";
    const maxTokens = 12;
    // Native wgquant (on this machine's Vulkan device), the same conversation, greedy.
    const native = execFileSync(process.env.WGQUANT ?? "target/debug/wgquant",
      ["chat", "-m", SMOLLM2, "--device", "gpu", "--ctx", "1024", "--temp", "0", "-n", String(maxTokens)],
      { cwd: ROOT, input: `${message}\n`, encoding: "utf8", stdio: ["pipe", "pipe", "ignore"] }).trim();
    assert.notEqual(native, "");

    const page = await openPage({ model: `/${SMOLLM2}`, ctx: "1024" });
    const loaded = await load(page);
    assert.equal(loaded.state, "ready", `${loaded.error}\n${page.log.join("\n")}`);
    assert.equal(await page.isChecked("#use-template"), true, "SmolLM2 carries its chat template");
    // Layers are uploaded as they arrive: the page holds at most the largest tensor (the 30 MiB
    // embedding table) and a layer, never the 94 MiB file.
    const held = Number(loaded.status.match(/at most ([\d.]+) MiB of the file held/)[1]);
    const file = statSync(join(ROOT, SMOLLM2)).size / (1 << 20);
    assert.ok(held < file / 2, `held ${held} MiB of a ${file.toFixed(1)} MiB file`);
    const answer = await ask(page, message, maxTokens);
    assert.equal(answer.text.trim(), native);
    const speed = await page.textContent("#speed");
    assert.match(speed, /Answer: \d+ tokens at [\d.]+ tokens\/s/);
    t.diagnostic(loaded.status);
    t.diagnostic(speed);
    await page.screenshot({ path: join(ARTIFACTS, "chat.png") });
    await page.close();
  });
});
