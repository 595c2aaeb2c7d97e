// @ts-check
// Greedy and beam search under the LaTeX grammar, for one input: inktex/search.py and
// inktex/grammar.py written once more for the browser's live recognition. The step model is
// asynchronous (onnxruntime-web runs a graph in a promise); everything else follows the
// Python line by line, so that the same log-probabilities give the same tokens: the same
// tie-breaking (the first best token), the same beam bookkeeping (2k candidates, <eos>
// picks finishing a hypothesis, a beam done after k of them), the same length-normalised
// scores, the same right-to-left rescoring of a bidirectional model's n-best.
// tests/e2e/test_live.py holds the two to the same answers.

/**
 * @typedef {{ids: number[], tokenLogprobs: number[], score: number, rightToLeft?: number}} Hypothesis
 * @typedef {{open: string[], expect: string | null, scripts: string | null}} GrammarState
 * @typedef {object} StepModel
 * @property {() => any} start the state of one encoded input (one row)
 * @property {(tokens: number[], state: any) => Promise<{logp: Float32Array, state: any}>} step
 *   log-probabilities (rows x vocabulary, row-major) after `tokens`, and the next state
 * @property {(state: any, rows: number[]) => any} select the state of these rows (repeats allowed)
 * @property {((tokens: number[][]) => Promise<Float32Array>) | null} [readAll] log-probabilities
 *   (rows x tokens x vocabulary, row-major) after each of the tokens, by teacher forcing in one
 *   call: a backend that reads whole sequences at once (the rescoring reads through it)
 */

const SPECIALS = ['<pad>', '<sos>', '<eos>', '<unk>'];
const GROUP = 'group';
const NUMERATOR = 'numerator';
const DENOMINATOR = 'denominator';
const RADICAND = 'radicand';
const SUB = 'sub';
const SUP = 'sup';
const INDEX = 'index';

/** The canonical form as token masks (inktex/grammar.py's LatexGrammar). */
export class LatexGrammar {
  /** @param {string[]} tokens the vocabulary */
  constructor(tokens) {
    /** @type {Map<string, number>} */
    const index = new Map(tokens.map((t, i) => [t, i]));
    const id = (/** @type {string} */ t) => index.get(t) ?? -1;
    this.size = tokens.length;
    this.openId = id('{');
    this.closeId = id('}');
    this.eosId = id('<eos>');
    this.ids = { sup: id('^'), sub: id('_'), frac: id('\\frac'), sqrt: id('\\sqrt'), lbracket: id('['), rbracket: id(']') };
    this.base = new Uint8Array(this.size).fill(1);
    for (const t of ['<pad>', '<sos>']) if (index.has(t)) this.base[id(t)] = 0;
    /** @type {Map<string, Uint8Array>} */
    this.cache = new Map();
  }

  /** @returns {GrammarState} */
  start() {
    return { open: [], expect: null, scripts: null };
  }

  /** @param {number[]} ids */
  only(...ids) {
    const allowed = new Uint8Array(this.size);
    for (const i of ids) if (i >= 0) allowed[i] = 1;
    return allowed;
  }

  /** Allowed next tokens (1 allowed, 0 not). @param {GrammarState} state */
  mask(state) {
    const key = `${state.open.join(',')}|${state.expect}|${state.scripts}`;
    let allowed = this.cache.get(key);
    if (allowed) return allowed;
    if (state.expect === 'root') {
      allowed = this.only(this.openId, this.ids.lbracket);
    } else if (state.expect !== null) {
      allowed = this.only(this.openId);
    } else {
      allowed = this.base.slice();
      const inner = state.open.length ? state.open[state.open.length - 1] : null;
      if (inner === null || inner === INDEX) allowed[this.closeId] = 0;
      if (inner !== null) allowed[this.eosId] = 0;
      if (state.scripts !== null) {
        const done = state.scripts === SUB ? ['sub'] : ['sub', 'sup'];
        for (const name of done) {
          const i = this.ids[/** @type {'sub' | 'sup'} */ (name)];
          if (i >= 0) allowed[i] = 0;
        }
      }
    }
    this.cache.set(key, allowed);
    return allowed;
  }

  /** The state after `token`. @param {GrammarState} state @param {number} token @returns {GrammarState} */
  advance(state, token) {
    const ids = this.ids;
    const at = (/** @type {string[]} */ open, expect = /** @type {string | null} */ (null), scripts = /** @type {string | null} */ (null)) => ({ open, expect, scripts });
    if (token === this.openId) {
      const kind = state.expect !== null && state.expect !== 'root' ? state.expect : GROUP;
      return at([...state.open, kind]);
    }
    if (state.expect === 'root' && token === ids.lbracket) return at([...state.open, INDEX]);
    if (token === this.closeId && state.open.length) {
      const kind = state.open[state.open.length - 1];
      const rest = state.open.slice(0, -1);
      if (kind === NUMERATOR) return at(rest, DENOMINATOR);
      return at(rest, null, kind === SUB || kind === SUP ? kind : null);
    }
    if (token === ids.rbracket && state.open.length && state.open[state.open.length - 1] === INDEX) {
      return at(state.open.slice(0, -1), RADICAND);
    }
    if (token === ids.sub) return at(state.open, SUB);
    if (token === ids.sup) return at(state.open, SUP);
    if (token === ids.frac) return at(state.open, NUMERATOR);
    if (token === ids.sqrt) return at(state.open, 'root');
    return at(state.open);
  }
}

/** The grammar of a vocabulary, or null for one without braces (nothing to keep balanced).
 * @param {string[]} tokens */
export function grammarFor(tokens) {
  return ['{', '}', '<eos>'].every((t) => tokens.includes(t)) ? new LatexGrammar(tokens) : null;
}

/** @param {number[]} values */
function sum(values) {
  let s = 0;
  for (const v of values) s += v;
  return s;
}

/**
 * The most likely allowed token at each step.
 * @param {StepModel} model @param {number} sosId @param {number} eosId @param {number} maxLen
 * @param {LatexGrammar | null} grammar @returns {Promise<Hypothesis[]>}
 */
export async function greedySearch(model, sosId, eosId, maxLen, grammar) {
  let state = model.start();
  let g = grammar ? grammar.start() : null;
  let token = sosId;
  const ids = [];
  const logps = [];
  let length = maxLen;
  for (let t = 0; t < maxLen; t++) {
    const out = await model.step([token], state);
    state = out.state;
    const allowed = grammar && g ? grammar.mask(g) : null;
    let best = -1;
    let bestValue = -Infinity;
    for (let v = 0; v < out.logp.length; v++) {
      const value = !allowed || allowed[v] ? out.logp[v] : -Infinity;
      if (best < 0 || value > bestValue) {
        best = v;
        bestValue = value;
      }
    }
    token = best;
    if (grammar && g) g = grammar.advance(g, token);
    ids.push(token);
    logps.push(out.logp[token]);
    if (token === eosId) {
      length = t;
      break;
    }
  }
  // The <eos> probability belongs to the confidence: stopping is a decision too.
  const lp = length < maxLen ? logps.slice(0, length + 1) : logps.slice(0, length);
  return [{ ids: ids.slice(0, length), tokenLogprobs: lp, score: sum(lp) }];
}

/**
 * Beam search, hypotheses ranked by log-probability / length ** lengthPenalty.
 * @param {StepModel} model @param {number} sosId @param {number} eosId @param {number} maxLen
 * @param {number} k @param {number} lengthPenalty @param {LatexGrammar | null} grammar
 * @returns {Promise<Hypothesis[]>} the best first
 */
export async function beamSearch(model, sosId, eosId, maxLen, k, lengthPenalty, grammar) {
  let state = model.select(model.start(), Array(k).fill(0));
  let tokens = Array(k).fill(sosId);
  let scores = [0, ...Array(k - 1).fill(-Infinity)]; // the other beams start as copies
  const start = grammar ? grammar.start() : null;
  /** @type {{ids: number[], lps: number[], g: GrammarState | null}[]} */
  let history = Array.from({ length: k }, () => ({ ids: [], lps: [], g: start }));
  /** @type {Hypothesis[]} */
  const finished = [];
  let done = false;
  for (let step = 0; step < maxLen; step++) {
    const out = await model.step(tokens, state);
    state = out.state;
    const logp = out.logp;
    const vocab = logp.length / k;
    const total = new Float64Array(k * vocab);
    const candidates = [];
    for (let beam = 0; beam < k; beam++) {
      const allowed = grammar ? grammar.mask(/** @type {GrammarState} */ (history[beam].g)) : null;
      for (let v = 0; v < vocab; v++) {
        const flat = beam * vocab + v;
        total[flat] = scores[beam] + (!allowed || allowed[v] ? logp[flat] : -Infinity);
        if (Number.isFinite(total[flat])) candidates.push(flat);
      }
    }
    candidates.sort((a, b) => total[b] - total[a] || a - b);
    const top = candidates.slice(0, 2 * k); // room for k live ones after <eos> picks
    /** @type {{ids: number[], lps: number[], g: GrammarState | null}[]} */
    const kept = [];
    const rows = [];
    const nextTokens = [];
    const nextScores = [];
    for (const flat of top) {
      const beam = Math.floor(flat / vocab);
      const token = flat % vocab;
      const score = total[flat];
      const prev = history[beam];
      const lps = [...prev.lps, logp[beam * vocab + token]];
      if (token === eosId) {
        if (!done) {
          const norm = score / Math.max(prev.ids.length + 1, 1) ** lengthPenalty;
          finished.push({ ids: [...prev.ids], tokenLogprobs: lps, score: norm });
        }
        continue;
      }
      if (kept.length < k) {
        const g = grammar && prev.g ? grammar.advance(prev.g, token) : null;
        kept.push({ ids: [...prev.ids, token], lps, g });
        rows.push(beam);
        nextTokens.push(token);
        nextScores.push(score);
      }
      if (kept.length === k) break;
    }
    while (kept.length < k) {
      // dead rows, so that the model always runs k rows
      kept.push({ ids: [], lps: [], g: start });
      rows.push(0);
      nextTokens.push(eosId);
      nextScores.push(-Infinity);
    }
    if (finished.length >= k) done = true;
    if (done) break;
    history = kept;
    scores = nextScores;
    tokens = nextTokens;
    state = model.select(state, rows);
  }
  const hyps = finished;
  if (hyps.length === 0) {
    // nothing ended within maxLen: the live beams as they are
    for (const { ids, lps } of history) {
      if (lps.length) hyps.push({ ids, tokenLogprobs: lps, score: sum(lps) / lps.length ** lengthPenalty });
    }
  }
  hyps.sort((a, b) => b.score - a.score); // stable, as Python's sort
  return hyps.slice(0, k);
}

/**
 * The hypotheses ranked by BTTR's rule (inktex/search.py's rescore_right_to_left): the mean
 * of the two directions' length-normalised log-likelihoods. The right-to-left one is read by
 * teacher forcing, one decoder row per hypothesis: inputs <eos> then the reversed ids,
 * targets the reversed ids then <sos>. The token log-probabilities, hence the confidence,
 * stay the left-to-right ones: the reversed reading only ranks.
 * @param {StepModel} model @param {Hypothesis[]} hyps @param {number} sosId @param {number} eosId
 * @param {number} lengthPenalty @returns {Promise<Hypothesis[]>} the best first
 */
export async function rescoreRightToLeft(model, hyps, sosId, eosId, lengthPenalty) {
  if (hyps.length === 0) return hyps;
  const lengths = hyps.map((h) => h.ids.length + 1); // the reversed ids, then <sos>
  const width = Math.max(...lengths);
  const targets = hyps.map((h) => [...[...h.ids].reverse(), ...Array(width - h.ids.length).fill(sosId)]);
  const inputs = targets.map((row) => [eosId, ...row.slice(0, -1)]);
  const total = new Float64Array(hyps.length);
  if (model.readAll) {
    const every = await model.readAll(inputs);
    const vocab = every.length / (hyps.length * width);
    for (let t = 0; t < width; t++) {
      hyps.forEach((_, row) => {
        if (t < lengths[row]) total[row] += every[(row * width + t) * vocab + targets[row][t]];
      });
    }
  } else {
    let state = model.select(model.start(), Array(hyps.length).fill(0));
    for (let t = 0; t < width; t++) {
      // a row past its <sos> reads on, unscored
      const out = await model.step(inputs.map((row) => row[t]), state);
      state = out.state;
      const vocab = out.logp.length / hyps.length;
      hyps.forEach((_, row) => {
        if (t < lengths[row]) total[row] += out.logp[row * vocab + targets[row][t]];
      });
    }
  }
  const rescored = hyps.map((h, row) => ({
    ...h,
    score: (h.score + total[row] / lengths[row] ** lengthPenalty) / 2,
    rightToLeft: total[row],
  }));
  return rescored.sort((a, b) => b.score - a.score); // stable, as Python's sort
}

/**
 * How every backend decodes (inktex/search.py's decode): greedy (beam <= 1) or beam search,
 * under the grammar; a beam's n-best rescored right to left for a model trained both ways.
 * @param {StepModel} model @param {{sosId: number, eosId: number, maxLen: number, beam: number,
 *   lengthPenalty: number, grammar: LatexGrammar | null, bidirectional: boolean}} how
 * @returns {Promise<Hypothesis[]>} the best first
 */
export async function decode(model, { sosId, eosId, maxLen, beam, lengthPenalty, grammar, bidirectional }) {
  if (beam <= 1) return greedySearch(model, sosId, eosId, maxLen, grammar);
  const hyps = await beamSearch(model, sosId, eosId, maxLen, beam, lengthPenalty, grammar);
  return bidirectional ? rescoreRightToLeft(model, hyps, sosId, eosId, lengthPenalty) : hyps;
}

/** Tokens up to the first <eos>, without specials (inktex/vocab.py's decode).
 * @param {string[]} vocab @param {number[]} ids */
export function decodeTokens(vocab, ids) {
  const out = [];
  for (const i of ids) {
    if (vocab[i] === '<eos>') break;
    if (i >= SPECIALS.length) out.push(vocab[i]);
  }
  return out;
}
