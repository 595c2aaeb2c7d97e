// @ts-check
// The result panel: rendered LaTeX with a live preview of the editable source, the confidence,
// the tokens (uncertain ones highlighted from `token_probs`), the alternatives, and feedback.
import { $, copyText, h, percent, showOnly } from './dom.js';
import { renderMath, renderOrCode } from './math.js';

const LOW = 0.5; // a token below this probability is highlighted
const VERY_LOW = 0.2;
const STATES = ['result-empty', 'result-busy', 'result-body'];

/** LaTeX compared as the user sees it: runs of spaces do not make an edit. */
const squash = (latex) => (latex || '').trim().replace(/\s+/g, ' ');

export class ResultPanel {
  /**
   * @param {import('./api.js').Api} api
   * @param {{notify: (text: string) => void, fail: (error: Error) => void, isSignedIn: () => boolean,
   *          onFeedback: (record: object) => void}} app
   */
  constructor(api, app) {
    this.api = api;
    this.app = app;
    this.record = null;
    this.latex = $('#latex');
    this.latex.addEventListener('input', () => this.#edited());
    $('#copy').addEventListener('click', () => this.#copy());
    $('#revert').addEventListener('click', () => this.#setSource(this.record.latex));
    $('#mark-correct').addEventListener('click', () => this.#send(this.record.latex));
    $('#send-correction').addEventListener('click', () => this.#send(this.latex.value));
  }

  busy() {
    $('#result').setAttribute('aria-busy', 'true');
    showOnly(STATES, 'result-busy');
  }

  /** Back to what was shown before a request that failed. */
  idle() {
    $('#result').setAttribute('aria-busy', 'false');
    showOnly(STATES, this.record ? 'result-body' : 'result-empty');
  }

  /** Shows a prediction record (from POST /recognize, /predictions or the history). */
  show(record) {
    this.record = record;
    $('#result').setAttribute('aria-busy', 'false');
    showOnly(STATES, 'result-body');
    const where = record.source === 'browser' ? 'in this browser' : 'on the server';
    const meta = [record.model_version && `model ${record.model_version}`, where, record.latency_ms != null && `${Math.round(record.latency_ms)} ms`];
    $('#result-meta').textContent = meta.filter(Boolean).join(' · ');

    const confidence = Number(record.confidence);
    $('#confidence-value').textContent = percent(confidence);
    const bar = $('#confidence-bar');
    bar.style.width = `${Math.max(2, Math.min(100, confidence * 100))}%`; // CSSOM: allowed by the CSP
    bar.dataset.level = confidence >= 0.8 ? 'high' : confidence >= 0.4 ? 'medium' : 'low';

    this.#tokens(record.tokens || [], record.token_probs || []);
    this.#alternatives(record.alternatives || []);
    const sent = feedbackOf(record);
    const corrected = sent && sent.kind !== 'confirmation' ? ` as ${sent.latex}` : '';
    $('#feedback-status').textContent = sent ? `${feedbackText(sent)}${corrected}.` : '';
    this.#setSource(record.latex || '');
    this.refreshAccount();
  }

  /** Sign-in state changed: feedback needs an account and a prediction kept in a history. */
  refreshAccount() {
    $('#result-empty-account').textContent = this.app.isSignedIn()
      ? 'Signed in: each result is kept in your history, where you can correct it to teach the model.'
      : 'Signed out, nothing is kept. Sign in to keep a history and to teach the model with your corrections.';
    if (!this.record) return;
    const live = this.record.source === 'browser';
    const canSend = this.app.isSignedIn() && this.record.source !== 'recognize' && !live;
    $('#feedback-form').hidden = !canSend;
    const anon = $('#feedback-anonymous');
    anon.hidden = canSend;
    anon.firstElementChild.textContent = live
      ? `Read in this browser and kept nowhere. Choose Recognise to ask the server${this.app.isSignedIn() ? ', which keeps it in your history, where you can correct it' : ''}.`
      : this.app.isSignedIn()
      ? 'This result was made before you signed in, so it is not in your history: recognise it again to correct it.'
      : 'Sign in to correct results and help the model learn.';
  }

  #setSource(latex) {
    this.latex.value = latex;
    this.#edited();
  }

  #edited() {
    const value = this.latex.value;
    const problem = renderMath($('#preview'), value);
    const error = $('#preview-error');
    error.hidden = !problem;
    error.textContent = problem ? `Not valid LaTeX yet: ${problem}` : '';
    this.latex.setAttribute('aria-invalid', problem ? 'true' : 'false');
    this.latex.rows = Math.min(6, Math.max(2, Math.ceil(value.length / 48)));
    const changed = this.record && squash(value) !== squash(this.record.latex);
    $('#revert').hidden = !changed;
    $('#send-correction').disabled = !changed || !squash(value) || Boolean(problem);
    $('#mark-correct').disabled = Boolean(changed);
    $('#feedback-hint').textContent = changed
      ? 'Your edit will be sent as the right answer for this input.'
      : 'Edit the LaTeX above (or pick an alternative) to send a correction.';
  }

  #tokens(tokens, probs) {
    const list = $('#tokens');
    list.replaceChildren(
      ...tokens.map((token, i) => {
        const p = probs[i];
        const level = p < VERY_LOW ? 'token-very-low' : p < LOW ? 'token-low' : '';
        const item = h('li', { class: `token ${level}`, title: `${token}: ${percent(p)}` }, token);
        if (level) item.append(h('span', { class: 'visually-hidden' }, ` (uncertain, ${percent(p)})`));
        return item;
      }),
    );
  }

  #alternatives(alternatives) {
    const list = $('#alternatives');
    $('#alternatives-count').textContent = `(${alternatives.length})`;
    $('#alternatives-block').hidden = alternatives.length === 0;
    list.replaceChildren(
      ...alternatives.map((alt) => {
        const math = h('span', { class: 'alternative-math' });
        renderOrCode(math, alt.latex, { display: false });
        const button = h(
          'button',
          {
            class: 'alternative',
            type: 'button',
            dataset: { latex: alt.latex },
            onclick: () => {
              this.#setSource(alt.latex);
              this.latex.focus();
              this.app.notify('Alternative copied into the editor: send it as a correction if it is right.');
            },
          },
          h('span', { class: 'visually-hidden' }, 'Use '),
          math,
          h('span', { class: 'alternative-confidence' }, percent(alt.confidence)),
        );
        return h('li', {}, button);
      }),
    );
  }

  async #copy() {
    const ok = await copyText(this.latex.value);
    this.app.notify(ok ? 'LaTeX copied to the clipboard.' : 'Copying failed: select the text and copy it.');
  }

  async #send(latex) {
    const record = this.record;
    const consent = $('#consent').checked;
    for (const b of [$('#mark-correct'), $('#send-correction')]) b.disabled = true;
    const status = $('#feedback-status');
    status.textContent = 'Sending…';
    try {
      const item = (await this.api.sendFeedback(record.id, latex, consent)) || {};
      const kind = item.assessment?.kind || (squash(latex) === squash(record.latex) ? 'confirmation' : 'correction');
      // What the API now keeps on the record (functions/common/feedback.py, feedback_note).
      const held = Boolean(item.held);
      record.feedback = {
        status: held ? 'held' : kind === 'confirmation' ? 'confirmed' : 'corrected',
        kind,
        latex: item.corrected_latex || latex,
        consent,
        at: item.created_at,
      };
      const words = [item.duplicate ? 'You sent this already: it is recorded.' : kind === 'confirmation' ? 'Marked as correct. Thank you!' : 'Correction recorded. Thank you!'];
      if (!consent) words.push('It will not be used for training (no consent).');
      else if (item.held && item.assessment?.suspicious) words.push(`It is kept out of training for review: ${item.assessment.reason}.`);
      else if (item.held) words.push(`It is kept out of training: ${item.held_reason || 'held'}.`);
      status.textContent = words.join(' ');
      const pending = await this.#pending();
      if (pending) status.textContent += ` ${pending}`;
      this.app.onFeedback(record);
    } catch (error) {
      status.textContent = '';
      this.app.fail(error);
    } finally {
      this.#edited();
    }
  }

  /**
   * "Examples waiting for the next retraining: 12 of 100 (...)" (GET /retraining). An example is
   * a correction or a confirmation kept for training: both count (docs/feedback-loop.md).
   */
  async #pending() {
    const info = await this.api.retraining().catch(() => null);
    if (info?.pending == null) return '';
    const count = info.threshold ? `${info.pending} of ${info.threshold}` : String(info.pending);
    return `Examples waiting for the next retraining: ${count} (corrections and confirmations both count).`;
  }
}

/**
 * A prediction's feedback: the record's own `feedback` ({status, kind, latex, consent, at}; the
 * API writes it when it accepts a correction or confirmation), or null.
 */
export function feedbackOf(item) {
  return item?.feedback || null;
}

/**
 * A feedback's status in a few words: "Marked correct" or "Corrected", and "(not for
 * training)" when it is held (sent without consent, suspicious, changed too often): a held
 * confirmation does not count towards retraining any more than a held correction.
 */
export function feedbackText(feedback) {
  if (!feedback) return '';
  const said = feedback.kind === 'confirmation' || feedback.status === 'confirmed' ? 'Marked correct' : 'Corrected';
  return feedback.status === 'held' ? `${said} (not for training)` : said;
}
