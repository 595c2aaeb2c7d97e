// @ts-check
// Small SVG charts, no library: bars for counts per hour, lines for rates and latencies (with
// gaps where an hour has no value). Built with the DOM API (createElementNS + attributes),
// never from markup, and styled by classes in app.css: the CSP allows no inline style, and
// the colours follow the light and dark themes. Each chart is an image with a text summary
// for screen readers; every bar and point has a tooltip (<title>).

const NS = 'http://www.w3.org/2000/svg';
const HEIGHT = 168;
const MARGIN = { top: 12, right: 12, bottom: 26, left: 46 };
const HOUR = new Intl.DateTimeFormat(undefined, { hour: 'numeric' });
const DAY = new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric' });
const FULL = new Intl.DateTimeFormat(undefined, { weekday: 'short', hour: 'numeric', minute: '2-digit' });

/** s('rect', {x: 1}, child...) -> an SVG element. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value != null) el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child != null) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/**
 * The smallest "round" number (1, 2, 2.5, 5 x 10^n) at or above x; for counts, one whose half
 * is a whole number too (2, 4, 6, 8, 10, 20, 40, 50, ...), as the middle grid line shows it.
 */
export function niceCeil(x, integer = false) {
  if (!(x > 0)) return integer ? 2 : 1;
  const power = 10 ** Math.floor(Math.log10(x));
  const steps = !integer ? [1, 2, 2.5, 5, 10] : power === 1 ? [2, 4, 6, 8, 10] : [1, 2, 4, 5, 6, 8, 10];
  for (const m of steps) if (m * power >= x * (1 - 1e-9)) return m * power;
  return 10 * power;
}

/** Which hours get a label: every k hours, k chosen so that labels do not crowd. */
function tickEvery(count, width) {
  const room = Math.max(2, Math.floor(width / 64));
  for (const k of [1, 2, 3, 6, 12, 24, 48, 72, 168]) if (count / k <= room) return k;
  return 168;
}

function tickText(date, every) {
  if (every >= 24 || date.getHours() === 0) return DAY.format(date);
  return HOUR.format(date);
}

/**
 * One chart of hourly rows (oldest first).
 * @param {object[]} rows          GET /stats's `hours`
 * @param {object} spec
 * @param {'bar'|'line'} spec.kind
 * @param {(row: object) => number|null} spec.value
 * @param {(v: number) => string} spec.format   a value as text (ticks, tooltips)
 * @param {string} spec.label                   what the chart shows (its accessible name)
 * @param {string} [spec.summary]               the text alternative's details
 * @param {number} [spec.max]                   a fixed top (1 for rates)
 * @param {boolean} [spec.integer]              whole numbers (counts)
 * @param {number} [width]                      in CSS pixels (the container's width)
 * @returns {SVGSVGElement}
 */
export function hourlyChart(rows, spec, width = 560) {
  const W = Math.max(240, Math.round(width));
  const plotW = W - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const values = rows.map((row) => {
    const v = spec.value(row);
    return typeof v === 'number' && Number.isFinite(v) ? v : null;
  });
  const present = values.filter((v) => v != null);
  const top = spec.max ?? niceCeil(Math.max(0, ...present), spec.integer);
  const step = plotW / Math.max(1, rows.length);
  const x = (i) => MARGIN.left + (i + 0.5) * step;
  const y = (v) => MARGIN.top + plotH * (1 - Math.min(v, top) / top);
  const times = rows.map((row) => new Date(row.hour));

  const svg = s('svg', {
    class: `chart chart-kind-${spec.kind}`,
    viewBox: `0 0 ${W} ${HEIGHT}`,
    width: W,
    height: HEIGHT,
    role: 'img',
    'aria-label': spec.summary ? `${spec.label}: ${spec.summary}` : spec.label,
  });

  // Horizontal grid with the value scale (0, half, top).
  for (const v of [0, top / 2, top]) {
    svg.append(
      s('line', { class: v === 0 ? 'chart-axis' : 'chart-grid', x1: MARGIN.left, x2: W - MARGIN.right, y1: y(v), y2: y(v) }),
      s('text', { class: 'chart-tick', x: MARGIN.left - 6, y: y(v), dy: '0.32em', 'text-anchor': 'end' }, spec.format(v)),
    );
  }

  // Time labels, on round hours of the local clock.
  const every = tickEvery(rows.length, plotW);
  let midnights = 0;
  times.forEach((date, i) => {
    const onTick = every >= 24 ? date.getHours() === 0 && midnights++ % (every / 24) === 0 : date.getHours() % every === 0;
    if (!onTick) return;
    svg.append(
      s('line', { class: 'chart-grid', x1: x(i), x2: x(i), y1: MARGIN.top + plotH, y2: MARGIN.top + plotH + 4 }),
      s('text', { class: 'chart-tick', x: x(i), y: HEIGHT - 8, 'text-anchor': 'middle' }, tickText(date, every)),
    );
  });

  const tip = (i) => `${FULL.format(times[i])}: ${values[i] == null ? 'no data' : spec.format(values[i])}`;
  if (spec.kind === 'bar') {
    const barW = Math.max(1, step * 0.72);
    values.forEach((v, i) => {
      if (!v) return;
      svg.append(
        s('rect', { class: 'chart-bar', x: x(i) - barW / 2, y: y(v), width: barW, height: Math.max(1, y(0) - y(v)), rx: Math.min(2, barW / 4) }, s('title', {}, tip(i))),
      );
    });
  } else {
    // One path per run of hours with a value; a point on each (a lone hour is a point only).
    let d = '';
    values.forEach((v, i) => {
      if (v == null) return;
      d += `${i > 0 && values[i - 1] != null ? 'L' : 'M'}${x(i).toFixed(1)} ${y(v).toFixed(1)}`;
    });
    if (d) svg.append(s('path', { class: 'chart-line', d }));
    const r = rows.length > 96 ? 2 : 3;
    values.forEach((v, i) => {
      if (v != null) svg.append(s('circle', { class: 'chart-dot', cx: x(i), cy: y(v), r }, s('title', {}, tip(i))));
    });
  }

  if (!present.length || (spec.kind === 'bar' && !present.some((v) => v > 0))) {
    svg.append(s('text', { class: 'chart-empty', x: MARGIN.left + plotW / 2, y: MARGIN.top + plotH / 2, 'text-anchor': 'middle' }, 'No data in this period'));
  }
  return svg;
}
