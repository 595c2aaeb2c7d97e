// @ts-check
// A package's decoder graphs as search.js's StepModel, for one encoded input, as the server's
// runtime drives them: the GRU's step graph (hidden state and coverage; inktex/runtime.py)
// and the Transformer's (a time-first key/value cache and coverage, plus its teacher-forcing
// read graph for the right-to-left rescoring; inktex/transformer_runtime.py). Each row reads
// its own copy of the encoder's outputs, made once per row count; older GRU packages' step
// graphs gather them by `image_index` instead.

/**
 * @typedef {import('./recognizer.js').Ort} Ort
 * @typedef {import('./recognizer.js').OrtTensor} OrtTensor
 * @typedef {import('./recognizer.js').OrtSession} OrtSession
 * @typedef {{hidden: Float32Array, coverage: Float32Array, rows: number}} GruState
 * @typedef {{slot: number, t: number, rows: number, coverage: Float32Array, serial: number}} CacheState
 */

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

/** Rows `rows` of a row-major array of rows of `size` floats (repeats allowed).
 * @param {Float32Array} data @param {number} size @param {number[]} rows @param {Float32Array} [out] */
function gather(data, size, rows, out = new Float32Array(rows.length * size)) {
  rows.forEach((r, i) => out.set(data.subarray(r * size, (r + 1) * size), i * size));
  return out;
}

/** What both step models share: the encoder's outputs repeated per row count, the step
 * count, and giving the search up when a newer drawing waits. */
class EncodedRows {
  /**
   * @param {Ort} ort @param {OrtSession} session the step graph
   * @param {Record<string, OrtTensor>} encoded the encoder's outputs (one input)
   * @param {(() => boolean) | null} stop asked every 4 steps (other work runs first): true
   *   ends the search with a Cancelled error
   */
  constructor(ort, session, encoded, stop) {
    this.ort = ort;
    this.session = session;
    this.encoded = encoded;
    this.stop = stop;
    this.steps = 0;
    /** @type {Map<OrtSession, Map<number, Record<string, OrtTensor>>>} */
    this.copies = new Map();
  }

  /** Each of `rows` rows' copy of what `session` reads of the encoder's outputs, but `skip`.
   * @param {OrtSession} session @param {number} rows @param {string[]} skip */
  rowsFor(session, rows, skip = []) {
    let bySession = this.copies.get(session);
    if (!bySession) this.copies.set(session, (bySession = new Map()));
    let feeds = bySession.get(rows);
    if (!feeds) {
      feeds = {};
      for (const name of session.inputNames) {
        if (name in this.encoded && !skip.includes(name)) feeds[name] = repeated(this.ort, this.encoded[name], rows);
      }
      bySession.set(rows, feeds);
    }
    return feeds;
  }

  /** Counts a step, and every 4 lets a newer request's message arrive (a yield costs). */
  async stepped() {
    this.steps += 1;
    if (this.stop && this.steps % 4 === 0) {
      await nextTask();
      if (this.stop()) throw new Cancelled();
    }
  }
}

/** The GRU's step graph: state is the hidden state and the coverage, one row each. */
export class GruStepModel extends EncodedRows {
  /** @param {Ort} ort @param {OrtSession} session @param {Record<string, OrtTensor>} encoded
   * @param {(() => boolean) | null} [stop] */
  constructor(ort, session, encoded, stop = null) {
    super(ort, session, encoded, stop);
    this.readsIndex = session.inputNames.includes('image_index');
    this.hidden0 = /** @type {Float32Array} */ (encoded.hidden.data);
    this.hiddenSize = this.hidden0.length;
    const dims = encoded.features.dims;
    this.grid = [dims[2], dims[3]];
    this.gridSize = dims[2] * dims[3];
  }

  /** @returns {GruState} */
  start() {
    return { hidden: Float32Array.from(this.hidden0), coverage: new Float32Array(this.gridSize), rows: 1 };
  }

  /** @param {GruState} state @param {number[]} rows @returns {GruState} */
  select(state, rows) {
    return {
      hidden: gather(state.hidden, this.hiddenSize, rows),
      coverage: gather(state.coverage, this.gridSize, rows),
      rows: rows.length,
    };
  }

  /** @param {number} rows */
  inputsFor(rows) {
    if (!this.readsIndex) return this.rowsFor(this.session, rows, ['hidden']);
    /** @type {Record<string, OrtTensor>} */
    const feeds = {};
    for (const name of this.session.inputNames) {
      if (name in this.encoded && name !== 'hidden') feeds[name] = this.encoded[name];
    }
    feeds.image_index = new this.ort.Tensor('int64', new BigInt64Array(rows), [rows]);
    return feeds;
  }

  /** @param {number[]} tokens @param {GruState} state */
  async step(tokens, state) {
    const rows = tokens.length;
    const T = this.ort.Tensor;
    const out = await this.session.run({
      ...this.inputsFor(rows),
      token: new T('int64', BigInt64Array.from(tokens, (t) => BigInt(t)), [rows]),
      hidden: new T('float32', state.hidden, [rows, this.hiddenSize]),
      coverage: new T('float32', state.coverage, [rows, 1, ...this.grid]),
    });
    await this.stepped();
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

/**
 * The Transformer's step graph (model_export/transformer_graphs.py). Its key/value cache is
 * laid out time first, (t, rows, 2 x layers, heads, k), so the cache of t tokens is the
 * first t entries of a buffer: a step reads that prefix and its new token's entry
 * (`cache_new`) is written after it. Two buffers, each grown by doubling: a beam's
 * reordering (`select`) writes the chosen rows into the other one. So a state is valid as
 * input to the next call only, as the searches use it; passing an older one throws.
 */
export class TransformerStepModel extends EncodedRows {
  /**
   * @param {Ort} ort @param {OrtSession} session @param {Record<string, OrtTensor>} encoded
   * @param {OrtSession | null} reader the package's read graph, if it has one (then
   *   `readAll` reads whole sequences at once)
   * @param {(() => boolean) | null} [stop]
   */
  constructor(ort, session, encoded, reader, stop = null) {
    super(ort, session, encoded, stop);
    this.reader = reader;
    /** @type {((tokens: number[][]) => Promise<Float32Array>) | null} */
    this.readAll = reader ? (tokens) => this.read(tokens) : null;
    const layers = session.inputNames.filter((name) => name.startsWith('keys_')).length;
    const [, heads, k] = encoded.keys_0.dims; // (1, heads, k, L)
    this.entry = [2 * layers, heads, k]; // one token's cache entry for one row
    this.entrySize = 2 * layers * heads * k;
    const [, , h, w] = encoded.feature_mask.dims;
    this.coverageDims = [layers * heads, h, w];
    this.coverageSize = layers * heads * h * w;
    this.buffers = [new Float32Array(0), new Float32Array(0)];
    this.serial = 0; // of the latest state this model returned
  }

  /** @returns {CacheState} */
  start() {
    return { slot: 0, t: 0, rows: 1, coverage: new Float32Array(this.coverageSize), serial: 0 };
  }

  /** Buffer `slot`, grown (keeping its first `keep` floats) to hold `size`.
   * @param {number} slot @param {number} size @param {number} keep */
  hold(slot, size, keep) {
    const buffer = this.buffers[slot];
    if (size <= buffer.length) return buffer;
    let capacity = Math.max(buffer.length, 32 * this.entrySize);
    while (capacity < size) capacity *= 2;
    const grown = new Float32Array(capacity);
    grown.set(buffer.subarray(0, keep));
    this.buffers[slot] = grown;
    return grown;
  }

  /** @param {CacheState} state */
  owned(state) {
    if (state.serial !== 0 && state.serial !== this.serial) {
      throw new Error('a decoder state is valid as input to the next call only');
    }
  }

  /** @param {number} slot @param {number} t @param {number} rows @param {Float32Array} coverage
   * @returns {CacheState} */
  latest(slot, t, rows, coverage) {
    this.serial += 1;
    return { slot, t, rows, coverage, serial: this.serial };
  }

  /** @param {CacheState} state @param {number[]} rows @returns {CacheState} */
  select(state, rows) {
    this.owned(state);
    const n = rows.length;
    const size = n * this.entrySize;
    const slot = 1 - state.slot;
    const from = this.buffers[state.slot];
    const cache = this.hold(slot, (state.t + 1) * size, 0); // room for the next token
    for (let t = 0; t < state.t; t++) {
      const past = from.subarray(t * state.rows * this.entrySize, (t + 1) * state.rows * this.entrySize);
      gather(past, this.entrySize, rows, cache.subarray(t * size, (t + 1) * size));
    }
    return this.latest(slot, state.t, n, gather(state.coverage, this.coverageSize, rows));
  }

  /** @param {number[]} tokens @param {CacheState} state */
  async step(tokens, state) {
    this.owned(state);
    const rows = tokens.length;
    const used = state.t * rows * this.entrySize;
    const T = this.ort.Tensor;
    const out = await this.session.run({
      ...this.rowsFor(this.session, rows),
      token: new T('int64', BigInt64Array.from(tokens, (t) => BigInt(t)), [rows]),
      cache: new T('float32', this.buffers[state.slot].subarray(0, used), [state.t, rows, ...this.entry]),
      coverage: new T('float32', state.coverage, [rows, ...this.coverageDims]),
    });
    this.hold(state.slot, used + rows * this.entrySize, used).set(/** @type {Float32Array} */ (out.cache_new.data), used);
    await this.stepped();
    return {
      logp: /** @type {Float32Array} */ (out.log_probs.data),
      state: this.latest(state.slot, state.t + 1, rows, /** @type {Float32Array} */ (out.coverage_out.data)),
    };
  }

  /** Log-probabilities (N x T x V, row-major) of the token after each of `tokens` (N rows of
   * T), read from the start by teacher forcing, in one call of the read graph.
   * @param {number[][]} tokens */
  async read(tokens) {
    const reader = /** @type {OrtSession} */ (this.reader);
    const rows = tokens.length;
    const T = this.ort.Tensor;
    const flat = BigInt64Array.from(tokens.flat(), (t) => BigInt(t));
    const out = await reader.run({ ...this.rowsFor(reader, rows), tokens: new T('int64', flat, [rows, tokens[0].length]) });
    return /** @type {Float32Array} */ (out.log_probs.data);
  }
}
