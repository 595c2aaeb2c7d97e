// @ts-check
// Live recognition: after each stroke (debounced on pen-up), the production model reads the
// drawing in a Web Worker, in this browser (live-worker.js), and the result card follows,
// saying which model answered and where. The explicit Recognise still asks the server
// (which keeps the history). The model loads on the first stroke; when the browser cannot
// run it (no WebAssembly or workers, a model that fails to load, a device slower than
// SLOW_MS on the short recognitions the worker runs as it loads), the page says so and
// recognition is the server's alone.

import { $ } from './dom.js';

const DEBOUNCE_MS = 120; // after pen-up; the next stroke cancels a pending or running read
const SLOW_MS = 1000; // a device slower than this on a short recognition is left to the server
const STORAGE_KEY = 'inktex.live';

/**
 * @typedef {import('./recognizer.js').Recognition} Recognition
 * @typedef {{isEmpty: boolean, toJSON: () => number[][][]} & EventTarget} Ink
 * @typedef {{show: (record: object) => void}} Results
 */

/** Whether this browser can run the model at all, or why not. */
function unsupported() {
  if (typeof Worker !== 'function') return 'this browser runs no Web Workers';
  if (typeof WebAssembly !== 'object') return 'this browser has no WebAssembly';
  return '';
}

export class LiveRecognition {
  /**
   * @param {Ink} ink @param {Results} results
   * @param {{apiUrl: string}} config
   */
  constructor(ink, results, config) {
    this.ink = ink;
    this.results = results;
    this.apiBase = new URL(config.apiUrl || '/', window.location.href).href.replace(/\/$/, '');
    this.toggle = /** @type {HTMLInputElement} */ ($('#live-toggle'));
    this.status = /** @type {HTMLElement} */ ($('#live-status'));
    /** @type {Worker | null} */
    this.worker = null;
    this.state = 'idle'; // idle | loading | ready | failed
    this.version = '';
    this.generation = 0; // the drawing's version: a result for an older one is dropped
    this.shown = -1; // the generation whose result (live or server) is on the card
    this.pending = 0;
    this.penUp = 0;
    this.slowMs = Number(/** @type {any} */ (window).INKTEX_LIVE_SLOW_MS ?? SLOW_MS);
    this.toggle.checked = localStorage.getItem(STORAGE_KEY) !== 'off';
    this.toggle.addEventListener('change', () => this.#toggled());
    ink.addEventListener('change', () => this.#changed());
    ink.addEventListener('inkstart', () => {
      clearTimeout(this.pending);
      this.worker?.postMessage({ type: 'cancel' });
    });
    this.#say();
  }

  /** The server answered (the explicit Recognise): a late live result must not replace it. */
  serverShown() {
    this.shown = this.generation;
  }

  #toggled() {
    localStorage.setItem(STORAGE_KEY, this.toggle.checked ? 'on' : 'off');
    if (this.toggle.checked) this.#changed();
    else clearTimeout(this.pending);
    this.#say();
  }

  #changed() {
    this.generation += 1;
    document.body.dataset.inkGeneration = String(this.generation); // tests wait for its result
    clearTimeout(this.pending);
    this.penUp = performance.now();
    if (!this.toggle.checked || this.ink.isEmpty || this.state === 'failed') return;
    this.pending = window.setTimeout(() => this.#recognise(), DEBOUNCE_MS);
  }

  #start() {
    const why = unsupported();
    if (why) return this.#fail(why);
    this.state = 'loading';
    this.#say();
    try {
      this.worker = new Worker(new URL('./live-worker.js', import.meta.url), { type: 'module' });
    } catch (error) {
      return this.#fail(`the worker did not start (${error instanceof Error ? error.message : error})`);
    }
    this.worker.addEventListener('message', (event) => this.#message(event.data));
    this.worker.addEventListener('error', (event) => this.#fail(`the worker failed (${event.message || 'it did not load'})`));
    this.worker.postMessage({
      type: 'load',
      manifestUrl: `${this.apiBase}/models/production/web`,
      apiBase: this.apiBase,
      ortBase: new URL('../vendor/onnxruntime-web/', import.meta.url).href,
    });
  }

  #recognise() {
    if (this.state === 'idle') this.#start();
    if (this.state !== 'ready' || !this.worker) return; // `ready` recognises what is drawn then
    // The worker gives up an older read when this one arrives.
    this.worker.postMessage({ type: 'recognise', id: this.generation, strokes: this.ink.toJSON() });
  }

  /** @param {any} message */
  #message(message) {
    if (message.type === 'ready') {
      if (message.probeMs > this.slowMs) {
        return this.#fail(`this device took ${Math.round(message.probeMs)} ms for a short recognition (the limit is ${this.slowMs} ms)`);
      }
      this.state = 'ready';
      this.version = message.version;
      this.#say();
      if (!this.ink.isEmpty && this.toggle.checked) this.#recognise();
    } else if (message.type === 'result') {
      const result = /** @type {Recognition} */ (message.result);
      if (message.id === this.generation && this.shown !== this.generation && this.toggle.checked) {
        this.results.show({ ...result, source: 'browser' });
        const latency = performance.now() - this.penUp; // KaTeX has rendered it (synchronously)
        this.#say(result);
        // pen-up to LaTeX on the card; the e2e tests wait for the generation and read the time
        document.body.dataset.liveLatencyMs = String(latency);
        document.body.dataset.liveWorkerMs = String(result.latency_ms); // the recognition itself
        document.body.dataset.liveGeneration = String(message.id);
      }
    } else if (message.type === 'error') {
      if (message.stage === 'load') this.#fail(message.message);
      else this.status.textContent = `Live recognition failed on this drawing (${message.message}); Recognise asks the server.`;
    }
  }

  /** @param {string} reason */
  #fail(reason) {
    this.state = 'failed';
    this.worker?.terminate();
    this.worker = null;
    document.body.dataset.live = 'failed';
    this.status.textContent = `Live recognition is off here: ${reason}. Recognise asks the server.`;
    this.status.classList.add('live-failed');
  }

  /** @param {Recognition} [result] */
  #say(result) {
    if (this.state === 'failed') return;
    document.body.dataset.live = this.toggle.checked ? this.state : 'off';
    let text;
    if (!this.toggle.checked) text = 'Live recognition is off: choose Recognise to read the drawing.';
    else if (this.state === 'idle') text = 'Live: the drawing is read in this browser as you write.';
    else if (this.state === 'loading') text = 'Live: loading the model into this browser…';
    else if (result) text = `Live, in this browser: model ${this.version}, ${Math.round(result.latency_ms)} ms.`;
    else text = `Live, in this browser: model ${this.version}.`;
    this.status.textContent = text;
  }
}
