// @ts-check
// The signed-in user's history (GET /predictions, newest first, cursor-paginated): a thumbnail
// of each input (GET /predictions/{id}/input, fetched with the token, shown from a blob URL),
// the rendered LaTeX, the feedback status; open an entry to correct it, or delete it.
import { $, h, percent, showOnly, when } from './dom.js';
import { renderOrCode } from './math.js';
import { feedbackOf, feedbackText } from './result.js';

const PAGE_SIZE = 10;
const STATES = ['history-signed-out', 'history-empty', 'history-busy'];

export class HistoryView {
  /**
   * @param {import('./api.js').Api} api
   * @param {{fail: (error: Error) => void, notify: (text: string) => void, isSignedIn: () => boolean,
   *          open: (record: object) => void, confirm: (text: string) => Promise<boolean>}} app
   */
  constructor(api, app) {
    this.api = api;
    this.app = app;
    this.cursors = [null]; // cursors[i] starts page i
    this.page = 0;
    this.next = null;
    this.urls = []; // thumbnails' blob URLs, revoked when the page changes
    this.loading = 0;
    $('#history-older').addEventListener('click', () => this.#go(this.page + 1));
    $('#history-newer').addEventListener('click', () => this.#go(this.page - 1));
    $('#history-refresh').addEventListener('click', () => this.reload());
  }

  /** From the first page again (after a new prediction, a sign-in, a refresh). */
  reload() {
    this.cursors = [null];
    return this.#go(0);
  }

  async #go(page) {
    if (!this.app.isSignedIn()) {
      this.#clear();
      showOnly(STATES, 'history-signed-out');
      this.#pager(false);
      return;
    }
    if (page > 0 && this.cursors[page] == null) return;
    const ticket = ++this.loading;
    showOnly(STATES, 'history-busy');
    this.#clear(); // no acting on rows that the answer may replace
    let answer;
    try {
      answer = await this.api.history(PAGE_SIZE, this.cursors[page]);
    } catch (error) {
      if (ticket === this.loading) {
        showOnly(STATES, null);
        this.app.fail(error);
      }
      return;
    }
    if (ticket !== this.loading) return; // a later request superseded this one
    this.page = page;
    this.next = answer.next_cursor || null;
    this.cursors[page + 1] = this.next;
    this.#clear();
    const items = answer.items || [];
    showOnly(STATES, items.length || page > 0 ? null : 'history-empty');
    $('#history-list').replaceChildren(...items.map((item) => this.#row(item)));
    this.#pager(true);
  }

  #pager(active) {
    /** @type {HTMLElement} */ (document.querySelector('.pager')).hidden = !active || (this.page === 0 && !this.next);
    $('#history-newer').disabled = !active || this.page === 0;
    $('#history-older').disabled = !active || !this.next;
    $('#history-page').textContent = active && (this.page > 0 || this.next) ? `Page ${this.page + 1}` : '';
  }

  #clear() {
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
    $('#history-list').replaceChildren();
  }

  #row(item) {
    const time = when(item.created_at);
    const thumb = h('img', { class: 'thumb', alt: 'Input', width: THUMB_WIDTH, height: THUMB_HEIGHT, decoding: 'async' });
    const math = h('div', { class: 'history-math' });
    if (item.status === 'error') {
      math.append(h('p', { class: 'field-error' }, item.error || 'This input could not be recognised.'));
    } else {
      renderOrCode(math, item.latex, { display: false });
    }
    const badges = [h('span', { class: `badge badge-${sourceKind(item)}` }, sourceLabel(item))];
    const feedback = feedbackOf(item);
    if (feedback) badges.push(h('span', { class: 'badge badge-feedback', title: feedback.latex || '' }, feedbackText(feedback)));
    if (item.confidence != null) badges.push(h('span', { class: 'badge' }, `confidence ${percent(item.confidence)}`));

    const row = h(
      'li',
      { class: 'history-item card', dataset: { id: item.id } },
      h('div', { class: 'thumb-frame' }, thumb),
      h(
        'div',
        { class: 'history-body' },
        math,
        h('code', { class: 'history-source' }, item.latex || ''),
        h('p', { class: 'history-meta muted small' }, h('time', { datetime: item.created_at, title: time.title }, time.text), ...badges),
      ),
      h(
        'div',
        { class: 'history-actions' },
        item.status === 'error'
          ? null
          : h('button', { class: 'button', type: 'button', 'aria-label': `Open ${item.latex || 'this prediction'} to correct it`, onclick: () => this.app.open(item) }, 'Open'),
        h('button', { class: 'button button-quiet button-danger-text', type: 'button', 'aria-label': `Delete ${item.latex || 'this prediction'}`, onclick: () => this.#delete(item, row) }, 'Delete'),
      ),
    );
    this.#thumbnail(item, thumb);
    return row;
  }

  async #thumbnail(item, img) {
    try {
      const blob = await thumbnailOf(await this.api.inputImage(item.id));
      const url = URL.createObjectURL(blob);
      this.urls.push(url);
      img.src = url;
      img.alt = item.input_kind === 'image' ? 'The uploaded image' : 'The handwriting, as drawn';
    } catch {
      img.replaceWith(h('span', { class: 'thumb-missing muted small' }, 'no preview'));
    }
  }

  async #delete(item, row) {
    const yes = await this.app.confirm(item.latex ? `“${item.latex}” and its input will be erased.` : 'Its input and result will be erased.');
    if (!yes) return;
    try {
      await this.api.deletePrediction(item.id);
    } catch (error) {
      this.app.fail(error);
      return;
    }
    row.remove();
    this.app.notify('Deleted.');
    if (!$('#history-list').children.length) this.#go(this.page > 0 ? this.page - 1 : 0);
  }
}

function sourceKind(item) {
  if (item.source === 'upload') return 'upload';
  return item.input_kind === 'image' ? 'image' : 'ink';
}

function sourceLabel(item) {
  return { upload: 'large photo', image: 'image', ink: item.input_kind === 'inkml' ? 'InkML' : 'drawn' }[sourceKind(item)];
}

/**
 * A thumbnail of an input: its writing (dark on light: rendered ink, a scan, a photo of paper)
 * cropped out, then scaled to fit whole inside a THUMB_WIDTH x THUMB_HEIGHT picture (the
 * frame's shape, at twice its CSS size for sharp screens), aspect kept, centred on white. So a
 * wide formula fills its frame and a tall one is never cut off. Anything it cannot read is
 * shown as it is.
 */
export const THUMB_WIDTH = 160; // CSS px: .thumb-frame's size (styles/app.css)
export const THUMB_HEIGHT = 64;
const THUMB_DENSITY = 2;
const THUMB_WORK = 640; // the longest side the ink is looked for at
const THUMB_PAD = 0.08; // of the thumbnail's height, left free around the ink

async function thumbnailOf(blob) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob);
  } catch {
    return blob;
  }
  const scale = Math.min(1, THUMB_WORK / Math.max(bitmap.width, bitmap.height));
  const width = Math.max(1, Math.round(bitmap.width * scale));
  const height = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = h('canvas', { width, height });
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, width, height);
  ctx.drawImage(bitmap, 0, 0, width, height);
  bitmap.close();
  const ink = inkBox(ctx.getImageData(0, 0, width, height)) || { left: 0, top: 0, right: width - 1, bottom: height - 1 };
  const inkWidth = ink.right - ink.left + 1;
  const inkHeight = ink.bottom - ink.top + 1;
  const [outWidth, outHeight] = [THUMB_WIDTH * THUMB_DENSITY, THUMB_HEIGHT * THUMB_DENSITY];
  const pad = Math.round(outHeight * THUMB_PAD);
  const fit = Math.min((outWidth - 2 * pad) / inkWidth, (outHeight - 2 * pad) / inkHeight);
  const [drawWidth, drawHeight] = [inkWidth * fit, inkHeight * fit];
  const out = h('canvas', { width: outWidth, height: outHeight });
  const octx = out.getContext('2d');
  octx.fillStyle = '#fff';
  octx.fillRect(0, 0, outWidth, outHeight);
  octx.imageSmoothingQuality = 'high';
  octx.drawImage(canvas, ink.left, ink.top, inkWidth, inkHeight, (outWidth - drawWidth) / 2, (outHeight - drawHeight) / 2, drawWidth, drawHeight);
  return new Promise((resolve) => out.toBlob((b) => resolve(b || blob), 'image/png'));
}

/** The box of the dark pixels ({left, top, right, bottom}, inclusive), or null when blank. */
function inkBox({ data, width, height }) {
  let [left, top, right, bottom] = [width, height, -1, -1];
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      if (data[(y * width + x) * 4] < 160) {
        left = Math.min(left, x);
        right = Math.max(right, x);
        top = Math.min(top, y);
        bottom = Math.max(bottom, y);
      }
    }
  }
  return right < 0 ? null : { left, top, right, bottom };
}
