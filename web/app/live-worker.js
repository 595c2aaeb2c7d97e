// @ts-check
// Live recognition's worker: loads the production package's graphs (GET
// /models/production/web names them, by hash: the encoder, the decoder step graph, and a
// bidirectional Transformer's read graph) into onnxruntime-web and recognises strokes
// off the page's thread, so drawing never waits for the model. Messages:
//   in:  {type: 'load', manifestUrl, apiBase, ortBase}   out: {type: 'ready', version, ...}
//   in:  {type: 'recognise', id, strokes, beam?}          out: {type: 'result', id, result}
//   in:  {type: 'cancel'}: the pen is down again
//   out: {type: 'cancelled', id} for a recognition given up for a newer one (or a cancel),
//        {type: 'error', id?, message} when loading or a recognition fails.
// A recognition is given up, between two decoder steps, as soon as a newer one (or a
// cancel) arrives: the drawing it reads is out of date.

import { BrowserRecognizer, Cancelled, configureOrt } from './recognizer.js';

/** @typedef {import('./recognizer.js').WebManifest} WebManifest */

/** @type {BrowserRecognizer | null} */
let recognizer = null;
let latest = 0; // the newest request's id; 0 after a cancel

// "x+1" drawn in CSS pixels, and how many tokens the first inference may write.
const WARM_UP = [
  [[10, 10], [40, 50]],
  [[40, 10], [10, 50]],
  [[60, 30], [90, 30]],
  [[75, 15], [75, 45]],
  [[110, 15], [120, 10], [120, 50]],
];
const WARM_UP_TOKENS = 8;

/** A graph's bytes, checked against the manifest's SHA-256. The browser's HTTP cache keeps
 * it (the API serves it immutable under its version's URL). @param {string} url @param {string} sha256 */
async function graph(url, sha256) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
  if (hex !== sha256) throw new Error(`${url} does not match the package's manifest`);
  return bytes;
}

/** @param {{manifestUrl: string, apiBase: string, ortBase: string}} message */
async function load({ manifestUrl, apiBase, ortBase }) {
  const started = performance.now();
  const response = await fetch(manifestUrl, { cache: 'no-cache' });
  if (!response.ok) throw new Error(`${manifestUrl} answered ${response.status}`);
  /** @type {WebManifest} */
  const manifest = await response.json();
  if (!manifest.browser || !manifest.files) throw new Error(manifest.reason || 'this model runs on the server only');
  const files = manifest.files;
  const ort = /** @type {import('./recognizer.js').Ort} */ (/** @type {unknown} */ (await import(`${ortBase}ort.wasm.min.mjs`)));
  configureOrt(ort, ortBase);
  // a Transformer trained both ways has a third graph: its read graph, for the rescoring
  const names = ['encoder.onnx', 'decoder_step.onnx', 'decoder_read.onnx'].filter((name) => name in files);
  const [encoder, step, reader] = await Promise.all(
    names.map((name) => graph(`${apiBase}${files[name].url}`, files[name].sha256)),
  );
  recognizer = await BrowserRecognizer.create(ort, manifest, encoder, step, reader ?? null);
  const loadMs = performance.now() - started;
  // Two short inferences on a small drawing before the first stroke: the first compiles the
  // code (and runs while the browser still optimises the WebAssembly), the second says how
  // fast this device is; the page leaves a slow one to the server.
  const first = await recognizer.recognize(WARM_UP, 1, WARM_UP_TOKENS);
  const probe = await recognizer.recognize(WARM_UP, 1, WARM_UP_TOKENS);
  const firstMs = first.latency_ms;
  const probeMs = probe.latency_ms;
  const bytes = encoder.length + step.length + (reader?.length ?? 0);
  return { version: manifest.version, bytes, loadMs, firstMs, probeMs };
}

/** @param {any} message */
async function handle(message) {
  try {
    if (message.type === 'load') {
      self.postMessage({ type: 'ready', ...(await load(message)) });
    } else if (message.type === 'recognise') {
      if (!recognizer) throw new Error('the model is not loaded');
      const stop = () => latest !== message.id;
      if (stop()) throw new Cancelled();
      const result = await recognizer.recognize(message.strokes, message.beam, undefined, stop);
      self.postMessage({ type: 'result', id: message.id, result });
    }
  } catch (error) {
    if (error instanceof Cancelled) {
      self.postMessage({ type: 'cancelled', id: message.id });
      return;
    }
    const text = error instanceof Error ? error.message : String(error);
    self.postMessage({ type: 'error', id: message.id, stage: message.type, message: text });
  }
}

// One thing at a time on the model's sessions; the newest request is known at once, so the
// one running gives up at its next step and those queued behind it never start.
let queue = Promise.resolve();
self.addEventListener('message', (event) => {
  const message = event.data;
  if (message.type === 'cancel') latest = 0;
  if (message.type === 'recognise') latest = message.id;
  if (message.type !== 'cancel') queue = queue.then(() => handle(message));
});
