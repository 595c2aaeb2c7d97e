// @ts-check
// The production model package run in the browser with onnxruntime-web: the encoder once per
// drawing, the decoder step graph once per token for every beam at once, as inktex/runtime.py
// drives them on the server (step-models.js: a GRU's hidden state, or a Transformer's
// key/value cache), and a Transformer trained both ways has its beam's n-best rescored right
// to left through its read graph. The preprocessing and the search are the core's, in JS
// (preprocess.js, search.js). No DOM: the live worker and the parity test both use it.

import { strokesToModelInput } from './preprocess.js';
import { decode, decodeTokens, grammarFor } from './search.js';
import { GruStepModel, TransformerStepModel } from './step-models.js';

export { Cancelled } from './step-models.js';

/**
 * @typedef {import('./preprocess.js').PreprocessConfig} PreprocessConfig
 * @typedef {import('./preprocess.js').Strokes} Strokes
 * @typedef {{max_len?: number, beam_size?: number, length_penalty?: number, decoder?: string,
 *   bidirectional?: boolean, confidence_temperature?: number}} SearchSettings  model.json's
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

/** A loaded package with its sessions (encoder, step graph, a Transformer's read graph):
 * create once, recognise many times. */
export class BrowserRecognizer {
  /**
   * @param {Ort} ort @param {WebManifest} manifest
   * @param {OrtSession} encoder @param {OrtSession} step @param {OrtSession | null} [reader]
   */
  constructor(ort, manifest, encoder, step, reader = null) {
    this.ort = ort;
    this.manifest = manifest;
    this.version = manifest.version;
    this.vocab = manifest.vocab;
    this.encoder = encoder;
    this.step = step;
    this.reader = reader;
    this.grammar = grammarFor(this.vocab);
    this.sosId = this.vocab.indexOf('<sos>');
    this.eosId = this.vocab.indexOf('<eos>');
    this.maxLen = manifest.search.max_len ?? 200;
    this.beamSize = manifest.search.beam_size ?? 5;
    this.lengthPenalty = manifest.search.length_penalty ?? 1.0;
    // Reported probabilities are p ** (1 / T), calibrated on CROHME 2013 (model_export/calibrate.py).
    this.temperature = manifest.search.confidence_temperature ?? 1.0;
    // Trained to read both ways: the beam's n-best are rescored right to left (BTTR).
    this.bidirectional = manifest.search.bidirectional === true;
    this.takesMask = encoder.inputNames.includes('mask');
    // Which decoder a package has, its step graph's inputs say (as the server's runtime reads).
    this.readsCache = step.inputNames.includes('cache');
  }

  /**
   * Sessions for a package's graphs, given their bytes, optimised as the server's runtime
   * optimises them: the encoder fully; a GRU's step graph to `extended` (layout changes cost
   * more than they save on its small attention grid); a Transformer's step and read graphs
   * fully (its attention refinement's grouped convolution gains).
   * @param {Ort} ort @param {WebManifest} manifest
   * @param {Uint8Array} encoderBytes @param {Uint8Array} stepBytes
   * @param {Uint8Array | null} [readBytes] a Transformer's read graph (decoder_read.onnx)
   */
  static async create(ort, manifest, encoderBytes, stepBytes, readBytes = null) {
    const options = { executionProviders: ['wasm'], executionMode: 'sequential' };
    const decoderLevel = manifest.search.decoder === 'transformer' ? 'all' : 'extended';
    const session = (/** @type {Uint8Array} */ bytes, /** @type {string} */ level) =>
      ort.InferenceSession.create(bytes, { ...options, graphOptimizationLevel: level });
    const encoder = await session(encoderBytes, 'all');
    const step = await session(stepBytes, decoderLevel);
    const reader = readBytes ? await session(readBytes, 'all') : null;
    return new BrowserRecognizer(ort, manifest, encoder, step, reader);
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
    const model = this.readsCache
      ? new TransformerStepModel(this.ort, this.step, encoded, this.reader, stop)
      : new GruStepModel(this.ort, this.step, encoded, stop);
    const hyps = await decode(model, {
      sosId: this.sosId,
      eosId: this.eosId,
      maxLen,
      beam,
      lengthPenalty: this.lengthPenalty,
      grammar: this.grammar,
      bidirectional: this.bidirectional,
    });
    const total = now(started);
    const describe = (/** @type {import('./search.js').Hypothesis} */ h) => {
      const tokens = decodeTokens(this.vocab, h.ids);
      let logprob = 0;
      for (const lp of h.tokenLogprobs) logprob += lp;
      return { tokens, confidence: Math.exp(logprob / this.temperature) };
    };
    const best = describe(hyps[0]);
    return {
      latex: best.tokens.join(' '),
      tokens: best.tokens,
      confidence: best.confidence,
      token_probs: hyps[0].tokenLogprobs.slice(0, best.tokens.length).map((lp) => Math.exp(lp / this.temperature)),
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
