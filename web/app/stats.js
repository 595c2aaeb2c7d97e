// @ts-check
// Usage and quality over time on the Model page: GET /stats?hours=N (signed in; the durable
// metrics' hourly sums, oldest first) drawn as small SVG charts (charts.js): predictions per
// hour, online accuracy (the share of feedback that confirms the prediction), the API's p95
// latency and the model's mean confidence. Redrawn at the container's width when it changes.
import { $, h, percent, when } from './dom.js';
import { hourlyChart } from './charts.js';

const count = (v) => Math.round(v).toLocaleString();
/** "1 error", "2 errors", "1,204 predictions". */
export const counted = (v, one, many = `${one}s`) => `${count(v)} ${Math.round(v) === 1 ? one : many}`;
const rate = (v) => (v === 0 || v === 1 ? `${v * 100}%` : percent(v));

/** Seconds as "850 ms" or "1.2 s". */
export function duration(seconds) {
  if (seconds === 0) return '0';
  if (seconds < 1) return `${Math.round(seconds * 1000).toLocaleString()} ms`;
  return `${seconds.toLocaleString(undefined, { maximumFractionDigits: 1 })} s`;
}

const sum = (rows, key) => rows.reduce((total, row) => total + (Number(row[key]) || 0), 0);

function latest(rows, key) {
  for (let i = rows.length - 1; i >= 0; i -= 1) if (rows[i][key] != null) return rows[i][key];
  return null;
}

function highest(rows, key) {
  const values = rows.map((row) => row[key]).filter((v) => typeof v === 'number');
  return values.length ? Math.max(...values) : null;
}

/**
 * The four charts' specifications; their summaries are the charts' text alternatives.
 * @param {any[]} rows
 * @returns {({id: string, kind: 'bar' | 'line', label: string, value: (row: any) => number | null,
 *             format: (v: number) => string, summary: string, max?: number, integer?: boolean})[]}
 */
export function chartSpecs(rows) {
  const predictions = sum(rows, 'predictions');
  const accuracy = latest(rows, 'online_accuracy');
  const p95 = latest(rows, 'latency_p95_s');
  const confidence = latest(rows, 'mean_confidence');
  return [
    {
      id: 'predictions',
      kind: 'bar',
      label: 'Predictions per hour',
      value: (row) => row.predictions,
      format: count,
      integer: true,
      summary: predictions
        ? `${count(predictions)} in all, at most ${count(highest(rows, 'predictions'))} in an hour`
        : 'none in this period',
    },
    {
      id: 'accuracy',
      kind: 'line',
      label: 'Online accuracy',
      value: (row) => row.online_accuracy,
      format: rate,
      max: 1,
      summary: accuracy == null ? 'no feedback in this period' : `latest ${rate(accuracy)} of feedback confirmed the prediction`,
    },
    {
      id: 'latency',
      kind: 'line',
      label: 'Latency, 95th percentile',
      value: (row) => row.latency_p95_s,
      format: duration,
      summary: p95 == null ? 'no requests in this period' : `latest ${duration(p95)}, highest ${duration(highest(rows, 'latency_p95_s'))}`,
    },
    {
      id: 'confidence',
      kind: 'line',
      label: 'Mean confidence',
      value: (row) => row.mean_confidence,
      format: rate,
      max: 1,
      summary: confidence == null ? 'no predictions in this period' : `latest ${rate(confidence)}`,
    },
  ];
}

export class StatsView {
  /** @param {import('./api.js').Api} api */
  constructor(api, app) {
    this.api = api;
    this.app = app;
    this.data = null;
    this.width = 0;
    this.ticket = 0;
    $('#stats-hours').addEventListener('change', () => this.load());
    if (window.ResizeObserver) {
      this.resize = new ResizeObserver(() => {
        const width = this.#chartWidth();
        if (this.data && width && Math.abs(width - this.width) > 16) this.#draw();
      });
      this.resize.observe($('#stats'));
    }
  }

  async load() {
    const note = $('#stats-note');
    const box = $('#stats');
    if (!this.app.isSignedIn()) {
      this.data = null;
      note.textContent = 'Sign in to see predictions, online accuracy and latency over time.';
      box.replaceChildren();
      return;
    }
    const hours = Number($('#stats-hours').value) || 24;
    const ticket = ++this.ticket;
    box.setAttribute('aria-busy', 'true');
    let data;
    try {
      data = await this.api.stats(hours);
    } catch (error) {
      if (ticket !== this.ticket) return;
      box.removeAttribute('aria-busy');
      this.data = null;
      box.replaceChildren();
      note.textContent =
        error.status === 404 || error.status === 501 ? 'This API does not report usage over time.' : error.message;
      return;
    }
    if (ticket !== this.ticket) return; // a later request superseded this one
    box.removeAttribute('aria-busy');
    this.data = data;
    const rows = data.hours || [];
    const updated = data.updated_at ? when(data.updated_at) : null;
    note.replaceChildren(
      `${counted(sum(rows, 'predictions'), 'prediction')}, ${counted(sum(rows, 'errors'), 'error')} and ${counted(sum(rows, 'feedback'), 'correction or confirmation', 'corrections or confirmations')} in the last ${counted(rows.length, 'hour')}.`,
      ...(updated?.text ? [' Updated ', h('time', { datetime: data.updated_at, title: updated.title }, updated.text), '.'] : []),
    );
    this.#draw();
  }

  /** A chart's width: its figure's, from the grid's first cell (all cells are equal). */
  #chartWidth() {
    const first = $('#stats .chart-figure');
    const box = $('#stats');
    return Math.floor((first || box).getBoundingClientRect().width) || 0;
  }

  #draw() {
    const rows = this.data?.hours || [];
    const box = $('#stats');
    if (!box.children.length) {
      // Figures first (empty), so the grid decides their width before the charts are drawn.
      box.replaceChildren(
        ...chartSpecs(rows).map((spec) =>
          h('figure', { class: 'chart-figure', dataset: { chart: spec.id } }, h('figcaption', {}, h('span', { class: 'chart-title' }, spec.label), h('span', { class: 'chart-summary muted small' }))),
        ),
      );
    }
    this.width = this.#chartWidth() || 560;
    for (const spec of chartSpecs(rows)) {
      const figure = box.querySelector(`[data-chart="${spec.id}"]`);
      figure.querySelector('.chart-summary').textContent = spec.summary;
      const chart = hourlyChart(rows, spec, this.width);
      const old = figure.querySelector('svg');
      if (old) old.replaceWith(chart);
      else figure.append(chart);
    }
  }
}
