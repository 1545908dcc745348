// The chat page: streams a GGUF file into the WebAssembly module, which uploads each layer to
// the browser's WebGPU device as soon as it has arrived, and streams answers. The page's state is on <body data-state>, each answer's
// token ids on its element (data-ids), for people and for the browser tests alike.
import init, { Chat, ModelStream } from "./pkg/wgquant_web.js";

const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
const CACHE = "wgquant-models";
let chat = null;

function setState(state) {
  document.body.dataset.state = state;
  $("load-button").disabled = state === "loading" || state === "generating";
  $("send-button").disabled = state !== "ready";
  $("stop-button").disabled = state !== "generating";
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function mib(bytes) {
  return bytes < 1 << 20 ? `${(bytes / 1024).toFixed(0)} KiB` : `${(bytes / (1 << 20)).toFixed(1)} MiB`;
}

// The model's response: from the browser's cache when it is there, else from the network (and
// then copied into the cache as it streams). For a file that failed to load, `stop()` ends the
// download and `forget()` removes the file from the cache once its copy has ended.
async function open(url, useCache) {
  const cache = useCache && "caches" in self ? await caches.open(CACHE).catch(() => null) : null;
  const cached = await cache?.match(url);
  const forget = async (stored) => {
    await stored?.catch(() => {});
    await cache?.delete(url).catch(() => {});
  };
  if (cached) return { response: cached, fromCache: true, forget: () => forget(null), stop: () => {} };
  const controller = new AbortController();
  let response;
  try {
    response = await fetch(url, { signal: controller.signal });
  } catch (e) {
    throw new Error(`could not fetch ${url}: ${e.message}`);
  }
  if (!response.ok) throw new Error(`could not fetch ${url}: HTTP ${response.status} ${response.statusText}`);
  const stored = cache?.put(url, response.clone());
  stored?.catch(() => {}); // an aborted download fails to store: that is the point
  return { response, fromCache: false, forget: () => forget(stored), stop: () => controller.abort() };
}

// Loads the model at `url` as it downloads: each chunk goes to the module, which uploads every
// layer once it has arrived (the page never holds the whole file). Resolves to the chat.
async function download(url, useCache) {
  const { response, fromCache, forget, stop } = await open(url, useCache);
  const fail = async (e) => {
    stop();
    await forget();
    throw e;
  };
  const total = Number(response.headers.get("Content-Length") ?? 0);
  if (!total || response.headers.get("Content-Encoding")) {
    return fail(new Error(`${url}: the server did not say how long the file is (Content-Length)`));
  }
  const stream = new ModelStream(total);
  let uploaded = 0;
  let received = 0;
  const show = () => {
    $("progress").value = received / total;
    $("status").textContent = `Reading ${url}${fromCache ? " from the browser's cache" : ""}: ` +
      `${mib(received)} of ${mib(total)}, ${mib(uploaded)} uploaded to the GPU`;
  };
  // The load runs beside the download loop below; a failed load also fails the next push.
  const loading = Chat.load(stream, Number($("n-ctx").value), query.get("profile") ?? "", (done) => {
    uploaded = done;
    show();
  });
  loading.catch(() => {}); // awaited below; this only marks its failure as handled
  const reader = response.body.getReader();
  try {
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        throw new Error(`the download failed after ${mib(received)}: ${e.message}`);
      }
      if (chunk.done) break;
      stream.push(chunk.value);
      received += chunk.value.length;
      show();
    }
    stream.finish();
  } catch (e) {
    // The load ends with the download; its own complaint is the same or a consequence.
    stream.fail(e.message ?? String(e));
    reader.cancel().catch(() => {});
    await loading.catch(() => {});
    return fail(e);
  }
  $("status").textContent = "Building the kernels…";
  try {
    return { chat: await loading, fromCache, peakHeld: stream.peak_held() };
  } catch (e) {
    return fail(new Error(e.message ?? String(e)));
  } finally {
    stream.free();
  }
}

async function load(event) {
  event?.preventDefault();
  const url = $("model-url").value.trim();
  if (chat) {
    // A page holds one model: another one loads in a fresh page.
    location.search = new URLSearchParams({ ...Object.fromEntries(query), model: url, autoload: "1" }).toString();
    return;
  }
  $("error").hidden = true;
  setState("loading");
  const started = performance.now();
  try {
    let fromCache, peakHeld;
    ({ chat, fromCache, peakHeld } = await download(url, $("use-cache").checked));
    const info = JSON.parse(chat.info());
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const slow = info.fallback_adapter ? " (a software fallback adapter: expect it to be slow)" : "";
    $("status").textContent =
      `Loaded ${url.split("/").pop()}${fromCache ? " from the browser's cache" : ""} (${info.arch}, ${info.layers} layers, ${info.n_ctx} tokens of context) ` +
      `in ${seconds} s on ${info.adapter || "the browser's WebGPU adapter"}${slow}, ${info.profile} profile ` +
      `(${features(info)}), ` +
      `${info.gpu_memory} on the GPU (at most ${mib(peakHeld)} of the file held in the page at once). ` +
      (info.template ? `Chat template: ${info.template}.` : "The file has no chat template: the page continues text.");
    $("use-template").checked = Boolean(info.template);
    $("progress").value = 1;
    $("chat").hidden = false;
    setState("ready");
    $("message").focus();
  } catch (e) {
    showError(`Loading failed: ${e.message ?? e}`);
    $("status").textContent = "No model loaded.";
    $("progress").value = 0;
    setState("error");
  }
}

// The optional WebGPU features the kernels use, as the device has them.
function features(info) {
  const [min, max] = info.subgroup_sizes;
  const subgroups = info.subgroups ? `subgroups of ${min === max ? min : `${min}-${max}`}` : "no subgroups";
  return `${info.shader_f16 ? "shader-f16" : "no shader-f16"}, ${subgroups}`;
}

function addMessage(role, text) {
  const el = document.createElement("div");
  el.className = `message ${role}`;
  el.textContent = text;
  $("log").append(el);
  return el;
}

async function send(event) {
  event?.preventDefault();
  const text = $("message").value;
  if (!chat || !text.trim() || document.body.dataset.state !== "ready") return;
  $("message").value = "";
  $("error").hidden = true;
  addMessage("user", text);
  const answer = addMessage("assistant", "");
  answer.classList.add("generating");
  setState("generating");
  const log = $("log");
  try {
    const reply = JSON.parse(
      await chat.send(text, $("use-template").checked, Number($("max-tokens").value), Number($("temperature").value),
        (piece) => {
          answer.textContent += piece;
          log.scrollTop = log.scrollHeight;
        }),
    );
    answer.dataset.ids = reply.ids.join(",");
    $("speed").textContent =
      `Prompt: ${reply.prompt_tokens} tokens at ${reply.prompt_tps.toFixed(1)} tokens/s. ` +
      `Answer: ${reply.generated_tokens} tokens at ${reply.decode_tps.toFixed(1)} tokens/s` +
      `${reply.stop_reason ? ` (${reply.stop_reason})` : ""}. Context: ${reply.context_used} tokens.`;
  } catch (e) {
    showError(`Generation failed: ${e.message ?? e}`);
  } finally {
    answer.classList.remove("generating");
    answer.dataset.done = "1";
    setState("ready");
  }
}

function reset() {
  try {
    chat?.reset();
    $("log").replaceChildren();
    addMessage("notice", "New conversation.");
  } catch (e) {
    showError(e.message ?? String(e));
  }
}

async function main() {
  setState("starting");
  if (query.has("model")) $("model-url").value = query.get("model");
  if (query.has("ctx")) $("n-ctx").value = query.get("ctx");
  $("load-form").addEventListener("submit", load);
  $("send-form").addEventListener("submit", send);
  $("stop-button").addEventListener("click", () => chat?.stop());
  $("reset-button").addEventListener("click", reset);
  $("message").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) send(e);
  });
  if (!navigator.gpu) {
    showError("This browser has no WebGPU (navigator.gpu is missing). Chrome, Edge and Safari 26 have it; " +
      "Firefox has it from version 141 on Windows. Linux Chrome needs --enable-unsafe-webgpu or " +
      "chrome://flags/#enable-unsafe-webgpu.");
  }
  await init();
  setState("idle");
  if (query.get("autoload") === "1") load();
}

main().catch((e) => {
  showError(`The page could not start: ${e.message ?? e}`);
  setState("error");
});
