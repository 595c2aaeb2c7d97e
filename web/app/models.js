// @ts-check
// Model status: the production version and its metrics (GET /models), and the feedback loop's
// state (GET /retraining): examples waiting towards the threshold, the running job, and the
// latest promotion decisions with their scores and reasons; and, signed in, the charts of
// usage and quality over time (GET /stats, stats.js).
import { $, h, when } from './dom.js';
import { StatsView } from './stats.js';

const LABELS = {
  exprate: 'Expressions exactly right (ExpRate)',
  le1: 'At most one token wrong',
  le2: 'At most two tokens wrong',
  token_accuracy: 'Token accuracy',
  wer: 'Token error rate',
  bleu: 'BLEU',
  mean_edit_distance: 'Mean token edits per expression',
  count: 'Expressions evaluated',
  samples: 'Expressions evaluated',
  latency_ms: 'Latency',
};
// What GET /retraining counts (docs/feedback-loop.md): one example per prediction, a correction
// or a confirmation alike, kept only with consent and when not held; `pending` is what counts
// (within each person's daily share), `waiting` the rest, left for a later batch.
export const EXAMPLES_NOTE =
  'An example is a correction or a confirmation sent with consent: your input with its right LaTeX. Both teach the model; confirmations keep it from forgetting what it already reads.';
const RATES = new Set(['exprate', 'le1', 'le2', 'token_accuracy', 'wer', 'bleu']);

/** A key no table names yet, as words: "crohme2014" -> "CROHME 2014", "beam_size" -> "Beam size". */
export function nameOf(key) {
  if (LABELS[key]) return LABELS[key];
  const crohme = /^crohme[_ -]?(\d{4})$/i.exec(key);
  if (crohme) return `CROHME ${crohme[1]}`;
  const words = String(key).replace(/[_-]+/g, ' ').trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** A rate with one decimal: 0.29310 (a fraction) or 29.310 (already a percentage) -> "29.3%". */
export function rateText(value, inPercent = false) {
  return `${(inPercent ? value : value * 100).toFixed(1)}%`;
}

function valueText(key, value, inPercent) {
  if (RATES.has(key)) return rateText(value, inPercent);
  if (key === 'mean_edit_distance') return `${value.toFixed(2)} edits`;
  if (key === 'latency_ms') return `${Math.round(value).toLocaleString()} ms`;
  if (Number.isInteger(value)) return value.toLocaleString();
  return value.toLocaleString(undefined, { maximumFractionDigits: 2 });
}

/**
 * Nested metrics -> [[label, value text]], e.g. {"crohme2014": {"exprate": 29.31}}. A release's
 * metrics.json gives rates as percentages and a promotion's evaluation as fractions: a group
 * with any rate above 1 is read as percentages.
 */
export function metricRows(metrics, prefix = '') {
  const rows = [];
  const entries = Object.entries(metrics || {});
  const inPercent = entries.some(([key, value]) => RATES.has(key) && typeof value === 'number' && value > 1);
  for (const [key, value] of entries) {
    const label = prefix ? `${prefix} · ${nameOf(key)}` : nameOf(key);
    if (value && typeof value === 'object' && !Array.isArray(value)) rows.push(...metricRows(value, label));
    else if (typeof value === 'number') rows.push([label, valueText(key, value, inPercent)]);
    else if (value != null) rows.push([label, String(value)]);
  }
  return rows;
}

function table(rows, caption) {
  return h(
    'table',
    { class: 'kv' },
    h('caption', { class: 'visually-hidden' }, caption),
    h('tbody', {}, rows.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, v)))),
  );
}

function timeOf(iso) {
  const t = when(iso);
  return h('time', { datetime: iso, title: t.title }, t.text);
}

export class ModelsView {
  /** @param {import('./api.js').Api} api */
  constructor(api, app) {
    this.api = api;
    this.app = app;
    this.stats = new StatsView(api, app);
    $('#models-refresh').addEventListener('click', () => this.load());
  }

  /** Only the production version, for the footer. */
  async loadVersion() {
    const models = await this.api.models();
    if (models.production?.version) $('#footer-model').textContent = `Model ${models.production.version}.`;
  }

  async load() {
    this.stats.load();
    const [models, retraining] = await Promise.allSettled([this.api.models(), this.api.retraining()]);
    this.#production(models);
    this.#retraining(retraining, models.status === 'fulfilled' ? models.value : undefined);
    if (models.status === 'rejected') this.app.fail(models.reason);
  }

  #production(result) {
    const box = $('#production');
    if (result.status === 'rejected') {
      box.replaceChildren(h('p', { class: 'field-error' }, result.reason.message));
      return;
    }
    const { production = {}, loaded_version: loaded } = result.value;
    if (!production.version) {
      box.replaceChildren(h('p', {}, 'No model is in production yet: the API answers 503 until one is promoted.'));
      return;
    }
    $('#footer-model').textContent = `Model ${production.version}.`;
    const rows = metricRows(production.metrics);
    box.replaceChildren(
      h('p', { class: 'version' }, h('span', { class: 'muted' }, 'Version '), h('code', {}, production.version)),
      h(
        'p',
        { class: 'muted small' },
        production.since ? ['In production since ', timeOf(production.since), '. '] : null,
        loaded && loaded !== production.version ? `This API instance still serves ${loaded}; it switches within a minute.` : null,
      ),
      rows.length ? table(rows, 'Evaluation metrics') : h('p', { class: 'muted' }, 'No evaluation metrics were recorded for this version.'),
    );
  }

  #retraining(result, models) {
    const box = $('#retraining');
    const parts = [];
    let decisions = models?.latest_decision ? [models.latest_decision] : [];
    if (result.status === 'rejected') {
      const status = result.reason.status;
      const text =
        status === 401
          ? 'Sign in to see how many examples are waiting for the next retraining.'
          : status === 404 || status === 501
            ? 'This API does not report retraining yet.'
            : result.reason.message;
      parts.push(h('p', { class: 'muted' }, text));
    } else {
      const info = result.value || {};
      const pending = Number(info.pending) || 0;
      const threshold = Number(info.threshold) || 0;
      const later = Number(info.waiting) || 0; // over one person's daily share: a later batch
      parts.push(
        h('p', { id: 'pending-label', class: 'pending' }, h('strong', {}, String(pending)), threshold ? ` of ${threshold}` : '', ` ${pending === 1 && !threshold ? 'example' : 'examples'} waiting for the next retraining`),
        h('progress', { max: String(threshold || 1), value: String(Math.min(pending, threshold || 1)), 'aria-labelledby': 'pending-label' }),
        h('p', { class: 'muted small' }, EXAMPLES_NOTE, later ? ` ${later} more wait for a later one (each person's share of a day is limited).` : ''),
        this.#job(info.running_job),
      );
      if (info.decisions?.length) decisions = info.decisions;
    }
    parts.push(h('h3', {}, 'Latest decisions'));
    parts.push(
      decisions.length
        ? h('ul', { class: 'decisions' }, decisions.slice(0, 5).map((d) => this.#decision(d)))
        : h('p', { class: 'muted small' }, 'No candidate has been evaluated yet.'),
    );
    box.replaceChildren(...parts);
  }

  /** The batch being trained on ({state: claimed | training, job, started_at, size}). */
  #job(job) {
    if (!job) return h('p', { class: 'muted small' }, 'No training job is running.');
    return h(
      'p',
      {},
      job.state === 'claimed' ? 'A batch is claimed and its training job is starting' : 'Training now',
      job.job ? [': ', h('code', {}, job.job)] : '',
      job.size ? `, on ${job.size} ${job.size === 1 ? 'example' : 'examples'}` : '',
      job.started_at ? [', started ', timeOf(job.started_at)] : '',
      '.',
    );
  }

  /** A promotion decision: promoted | rejected | failed, both models' scores, the reason. */
  #decision(d) {
    const badge = { promoted: ['badge-good', 'promoted'], rejected: ['badge-neutral', 'kept production'], failed: ['badge-bad', 'training failed'] }[d.decision] || ['badge-neutral', d.decision || '?'];
    const metric = d.metric || 'exprate';
    const candidate = d.candidate?.eval?.[metric];
    const production = d.production?.eval?.[metric];
    return h(
      'li',
      { class: 'decision' },
      h('span', { class: `badge ${badge[0]}` }, badge[1]),
      ' ',
      d.candidate?.version ? h('code', {}, d.candidate.version) : d.job ? h('code', {}, d.job) : null,
      typeof candidate === 'number' && typeof production === 'number'
        ? ` ${nameOf(metric)}: ${rateText(candidate, candidate > 1)} vs ${rateText(production, production > 1)} in production`
        : '',
      d.decided_at ? h('span', { class: 'muted small' }, ' · ', timeOf(d.decided_at)) : null,
      d.reason ? h('span', { class: 'muted small decision-reason' }, d.reason) : null,
    );
  }
}
