// @ts-check
// Small DOM and formatting helpers. Elements are built with the DOM API, never from HTML
// strings: nothing the API or a user sends can become markup.

export const $ = (selector, root = document) => root.querySelector(selector);

/** h('a', {href: '#', class: 'x', onclick: fn}, 'text', child) -> an element. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** A probability as a short percentage: 0.934 -> "93%", 0.0123 -> "1.2%". */
export function percent(p) {
  if (typeof p !== 'number' || Number.isNaN(p)) return '–';
  const v = p * 100;
  if (v >= 10) return `${v.toFixed(0)}%`;
  if (v >= 1) return `${v.toFixed(1)}%`;
  if (v >= 0.1) return `${v.toFixed(2)}%`;
  return '<0.1%';
}

const RELATIVE = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
const ABSOLUTE = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/** An ISO time as "3 minutes ago" (recent) or a date; the exact time goes in a title. */
export function when(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return { text: '', title: '' };
  const seconds = (date.getTime() - Date.now()) / 1000;
  /** @type {[number, Intl.RelativeTimeFormatUnit, number?][]} */
  const steps = [
    [60, 'second'],
    [3600, 'minute', 60],
    [86400, 'hour', 3600],
    [86400 * 7, 'day', 86400],
  ];
  let text = ABSOLUTE.format(date);
  for (const [limit, unit, size = 1] of steps) {
    if (Math.abs(seconds) < limit) {
      text = RELATIVE.format(Math.round(seconds / size), unit);
      break;
    }
  }
  return { text, title: date.toLocaleString() };
}

/** Shows one element of a set and hides the others (by id). */
export function showOnly(ids, visible) {
  for (const id of ids) document.getElementById(id).hidden = id !== visible;
}

/** Copies text, with a fallback for browsers without the async clipboard. */
export async function copyText(text) {
  if (navigator.clipboard?.writeText) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // permission refused: fall through to the selection
    }
  }
  const area = h('textarea', { class: 'visually-hidden', 'aria-hidden': 'true' });
  area.value = text;
  document.body.append(area);
  area.select();
  const ok = document.execCommand('copy');
  area.remove();
  return ok;
}
