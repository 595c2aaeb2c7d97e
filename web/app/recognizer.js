// @ts-check
// The production model package run in the browser with onnxruntime-web: the encoder once per
// drawing, the decoder step graph once per token for every beam at once, as inktex/runtime.py
// drives them on the server (each row reading its own copy of the encoder's outputs, made
// once per search; older packages' step graphs gather them by `image_index` instead). The
// preprocessing and the search are the core's, in JS (preprocess.js, search.js). No DOM: the
// live worker and the parity test both use it.

import { strokesToModelInput } from './preprocess.js';
import { beamSearch, decodeTokens, grammarFor, greedySearch } from './search.js';

/**
 * @typedef {import('./preprocess.js').PreprocessConfig} PreprocessConfig
 * @typedef {import('./preprocess.js').Strokes} Strokes
 * @typedef {{max_len?: number, beam_size?: number, length_penalty?: number}} SearchSettings
 * @typedef {{url: string, sha256: string, bytes: number}} GraphFile
 * @typedef {object} WebManifest  GET /models/production/web
 * @property {string} version
 * @property {string[]} vocab
 * @property {PreprocessConfig} preprocess
 * @property {SearchSettings} search
 * @property {Record<string, GraphFile> | null} files
 * @property {boolean} browser
 * @property {string} reason
 * @typedef {object} Recognition  as the API answers, plus where it was computed
 * @property {string} latex
 * @property {string[]} tokens
 * @property {number} confidence
 * @property {number[]} token_probs
 * @property {{latex: string, confidence: number}[]} alternatives
 * @property {string} model_version
 * @property {number} latency_ms
 * @property {{preprocess: number, encode: number, search: number, steps: number}} timing
 */

/**
 * The onnxruntime-web module's parts this file uses (ort.wasm.min.mjs).
 * @typedef {object} OrtTensor
 * @property {any} data
 * @property {readonly number[]} dims
 * @typedef {object} OrtSession
 * @property {readonly string[]} inputNames
 * @property {readonly string[]} outputNames
 * @property {(feeds: Record<string, OrtTensor>) => Promise<Record<string, OrtTensor>>} run
 * @typedef {object} Ort
 * @property {new (type: string, data: any, dims: number[]) => OrtTensor} Tensor
 * @property {{create: (model: Uint8Array, options: object) => Promise<OrtSession>}} InferenceSession
 * @property {{wasm: {numThreads?: number, wasmPaths?: string, proxy?: boolean, simd?: boolean}}} env
 */

/** @param {number} t */
const now = (t = 0) => performance.now() - t;

/** A search given up because a newer drawing is waiting. */
export class Cancelled extends Error {
  constructor() {
    super('cancelled: a newer drawing is waiting');
    this.name = 'Cancelled';
  }
}

/** Resolves after the tasks already queued (messages included) have run. */
function nextTask() {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve(undefined);
    channel.port2.postMessage(null);
  });
}

/** A whole float32 tensor copied `rows` times along its first axis (of size 1).
 * @param {Ort} ort @param {OrtTensor} tensor @param {number} rows */
function repeated(ort, tensor, rows) {
  const one = /** @type {Float32Array} */ (tensor.data);
  const data = new Float32Array(one.length * rows);
  for (let r = 0; r < rows; r++) data.set(one, r * one.length);
  return new ort.Tensor('float32', data, [rows, ...tensor.dims.slice(1)]);
}

/** The decoder step graph as search.js's StepModel, for one encoded input. */
class OnnxStepModel {
  /**
   * @param {Ort} ort @param {OrtSession} session @param {Record<string, OrtTensor>} encoded
   * @param {(() => boolean) | null} stop asked every 4 steps (other work runs first): true
   *   ends the search with a Cancelled error
   */
  constructor(ort, session, encoded, stop = null) {
    this.stop = stop;
    this.ort = ort;
    this.session = session;
    this.encoded = encoded;
    this.readsIndex = session.inputNames.includes('image_index');
    this.hidden0 = /** @type {Float32Array} */ (encoded.hidden.data);
    this.hiddenSize = this.hidden0.length;
    const dims = encoded.features.dims;
    this.gridSize = dims[2] * dims[3];
    this.grid = [dims[2], dims[3]];
    /** @type {Map<number, Record<string, OrtTensor>>} each row's copy, per row count */
    this.copies = new Map();
    this.steps = 0;
  }

  start() {
    return { hidden: Float32Array.from(this.hidden0), coverage: new Float32Array(this.gridSize), rows: 1 };
  }

  /** @param {{hidden: Float32Array, coverage: Float32Array, rows: number}} state @param {number[]} rows */
  select(state, rows) {
    const hidden = new Float32Array(rows.length * this.hiddenSize);
    const coverage = new Float32Array(rows.length * this.gridSize);
    rows.forEach((r, i) => {
      hidden.set(state.hidden.subarray(r * this.hiddenSize, (r + 1) * this.hiddenSize), i * this.hiddenSize);
      coverage.set(state.coverage.subarray(r * this.gridSize, (r + 1) * this.gridSize), i * this.gridSize);
    });
    return { hidden, coverage, rows: rows.length };
  }

  /** @param {number} rows */
  inputsFor(rows) {
    let feeds = this.copies.get(rows);
    if (!feeds) {
      feeds = {};
      for (const name of this.session.inputNames) {
        if (!(name in this.encoded) || name === 'hidden') continue;
        feeds[name] = this.readsIndex ? this.encoded[name] : repeated(this.ort, this.encoded[name], rows);
      }
      if (this.readsIndex) feeds.image_index = new this.ort.Tensor('int64', new BigInt64Array(rows), [rows]);
      this.copies.set(rows, feeds);
    }
    return feeds;
  }

  /** @param {number[]} tokens @param {{hidden: Float32Array, coverage: Float32Array, rows: number}} state */
  async step(tokens, state) {
    const rows = tokens.length;
    const T = this.ort.Tensor;
    const out = await this.session.run({
      ...this.inputsFor(rows),
      token: new T('int64', BigInt64Array.from(tokens, (t) => BigInt(t)), [rows]),
      hidden: new T('float32', state.hidden, [rows, this.hiddenSize]),
      coverage: new T('float32', state.coverage, [rows, 1, ...this.grid]),
    });
    this.steps += 1;
    if (this.stop && this.steps % 4 === 0) {
      await nextTask(); // lets a newer request's message arrive (every 4 steps: a yield costs)
      if (this.stop()) throw new Cancelled();
    }
    return {
      logp: /** @type {Float32Array} */ (out.log_probs.data),
      state: {
        hidden: /** @type {Float32Array} */ (out.hidden_out.data),
        coverage: /** @type {Float32Array} */ (out.coverage_out.data),
        rows,
      },
    };
  }
}

/** A loaded package with its two sessions: create once, recognise many times. */
export class BrowserRecognizer {
  /**
   * @param {Ort} ort @param {WebManifest} manifest
   * @param {OrtSession} encoder @param {OrtSession} step
   */
  constructor(ort, manifest, encoder, step) {
    this.ort = ort;
    this.manifest = manifest;
    this.version = manifest.version;
    this.vocab = manifest.vocab;
    this.encoder = encoder;
    this.step = step;
    this.grammar = grammarFor(this.vocab);
    this.sosId = this.vocab.indexOf('<sos>');
    this.eosId = this.vocab.indexOf('<eos>');
    this.maxLen = manifest.search.max_len ?? 200;
    this.beamSize = manifest.search.beam_size ?? 5;
    this.lengthPenalty = manifest.search.length_penalty ?? 1.0;
    this.takesMask = encoder.inputNames.includes('mask');
  }

  /**
   * Sessions for a package's two graphs, given their bytes. The encoder is optimised fully,
   * the step graph to `extended`, as the server's runtime does (its layout changes cost
   * more than they save on the small attention grid).
   * @param {Ort} ort @param {WebManifest} manifest
   * @param {Uint8Array} encoderBytes @param {Uint8Array} stepBytes
   */
  static async create(ort, manifest, encoderBytes, stepBytes) {
    const options = { executionProviders: ['wasm'], executionMode: 'sequential' };
    const encoder = await ort.InferenceSession.create(encoderBytes, { ...options, graphOptimizationLevel: 'all' });
    const step = await ort.InferenceSession.create(stepBytes, { ...options, graphOptimizationLevel: 'extended' });
    return new BrowserRecognizer(ort, manifest, encoder, step);
  }

  /**
   * LaTeX for strokes, as the server's `recognize_strokes` answers.
   * @param {Strokes} strokes @param {number} [beam] 1: greedy; default: the package's
   * @param {number} [maxLen] at most so many tokens; default: the package's
   * @param {(() => boolean) | null} [stop] true gives the search up (Cancelled)
   * @returns {Promise<Recognition>}
   */
  async recognize(strokes, beam = this.beamSize, maxLen = this.maxLen, stop = null) {
    const started = now();
    const input = strokesToModelInput(strokes, this.manifest.preprocess);
    const preprocessed = now(started);
    const T = this.ort.Tensor;
    /** @type {Record<string, OrtTensor>} */
    const feeds = { image: new T('float32', input.data, [1, 1, input.height, input.width]) };
    if (this.takesMask) feeds.mask = new T('float32', new Float32Array(input.data.length).fill(1), [1, 1, input.height, input.width]);
    const encoded = await this.encoder.run(feeds);
    const encodedAt = now(started);
    const model = new OnnxStepModel(this.ort, this.step, encoded, stop);
    const hyps =
      beam <= 1
        ? await greedySearch(model, this.sosId, this.eosId, maxLen, this.grammar)
        : await beamSearch(model, this.sosId, this.eosId, maxLen, beam, this.lengthPenalty, this.grammar);
    const total = now(started);
    const describe = (/** @type {import('./search.js').Hypothesis} */ h) => {
      const tokens = decodeTokens(this.vocab, h.ids);
      let logprob = 0;
      for (const lp of h.tokenLogprobs) logprob += lp;
      return { tokens, confidence: Math.exp(logprob) };
    };
    const best = describe(hyps[0]);
    return {
      latex: best.tokens.join(' '),
      tokens: best.tokens,
      confidence: best.confidence,
      token_probs: hyps[0].tokenLogprobs.slice(0, best.tokens.length).map(Math.exp),
      alternatives: hyps.slice(1).map((h) => {
        const alt = describe(h);
        return { latex: alt.tokens.join(' '), confidence: alt.confidence };
      }),
      model_version: this.version,
      latency_ms: Math.round(total * 100) / 100,
      timing: { preprocess: preprocessed, encode: encodedAt - preprocessed, search: total - encodedAt, steps: model.steps },
    };
  }
}

/**
 * Points onnxruntime-web at its vendored WebAssembly (web/vendor/onnxruntime-web/), with
 * threads only where the page is cross-origin isolated (SharedArrayBuffer).
 * @param {Ort} ort @param {string} base the vendored folder's URL
 */
export function configureOrt(ort, base) {
  ort.env.wasm.wasmPaths = base;
  ort.env.wasm.proxy = false;
  const isolated = /** @type {any} */ (globalThis).crossOriginIsolated === true;
  ort.env.wasm.numThreads = isolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
}
