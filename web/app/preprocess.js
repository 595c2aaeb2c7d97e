// @ts-check
// Pen strokes -> the model's input, in the browser: the same pixels as the server's
// `inktex.inputs.from_strokes` (inktex/scale.py, inktex/render.py, inktex/preprocess.py),
// written once more only because it runs in another language. Live recognition must read
// what the server would read, so this copies the Python step by step, including what
// numpy and Pillow do underneath: round half to even (np.round), float32 arithmetic where
// the Python works on float32 arrays, Bresenham lines as Pillow draws them, Pillow's
// resampling filters, its max filter and its box blur. tests/e2e/test_live.py compares
// the two pixel by pixel. No DOM: it runs in a worker and in Node alike.

/**
 * @typedef {number[][][]} Strokes  strokes of [x, y] points, y down (CSS pixels or any unit)
 * @typedef {{height: number, width: number, margin: number, ink_threshold: number,
 *            symbol_height?: number, line_width?: number}} PreprocessConfig  preprocess.json
 * @typedef {{data: Float32Array, height: number, width: number}} ModelInput  ink 1 on 0
 */

export const STRIDE = 16; // the encoder downsamples 16x (inktex/preprocess.py)
const LINE_WIDTH = 2; // px (inktex/render.py)
const CORE_MARGIN = 5;
const FLAT = 0.3; // a mark is flat under this height/width (inktex/scale.py)
const BLUR = [0.00398, 0.1056, 0.7849, 0.1056, 0.00398];
const f32 = Math.fround;

/** np.round: half to even. @param {number} x */
export function rint(x) {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** np.median of float64 values. @param {number[]} values */
function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/**
 * np.percentile(a, q) of a float32 array (linear method), computed in float32 as numpy does
 * for a Python number q.
 * @param {Float32Array} values @param {number} q
 */
export function percentile32(values, q) {
  const s = Float32Array.from(values);
  const n = s.length;
  const p = q / 100;
  const virtual = n * p + (1 + p * -1) - 1;
  let prev = Math.floor(virtual);
  let next = prev + 1;
  if (virtual >= n - 1) prev = next = n - 1;
  else if (virtual < 0) prev = next = 0;
  const gamma = virtual - Math.floor(virtual);
  const a = select(s, prev);
  let b = a;
  if (next !== prev) {
    b = Infinity; // the smallest value right of `prev` after the partition
    for (let i = prev + 1; i < n; i++) if (s[i] < b) b = s[i];
  }
  const diff = f32(b - a);
  if (gamma >= 0.5) return f32(b - f32(diff * f32(1 - gamma)));
  return f32(a + f32(diff * f32(gamma)));
}

/** The k-th smallest value, `a` partitioned around it (Hoare's quickselect, in place).
 * @param {Float32Array} a @param {number} k */
function select(a, k) {
  let lo = 0;
  let hi = a.length - 1;
  while (hi > lo) {
    const pivot = a[(lo + hi) >> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break;
  }
  return a[k];
}

/** Non-empty strokes as float64 point lists; refuses what the renderer refuses. @param {Strokes} strokes */
function checked(strokes) {
  const drawn = strokes.filter((s) => s.length > 0);
  if (drawn.length === 0) throw new Error('no handwriting found: there are no strokes to draw');
  for (const s of drawn) {
    for (const p of s) {
      if (!Number.isFinite(p[0]) || !Number.isFinite(p[1])) {
        throw new Error('a stroke has a NaN or infinite coordinate');
      }
    }
  }
  return drawn;
}

/** [min x, min y, max x, max y] of all points. @param {number[][][]} strokes */
function bounds(strokes) {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (const s of strokes) {
    for (const [x, y] of s) {
      if (x < x0) x0 = x;
      if (y < y0) y0 = y;
      if (x > x1) x1 = x;
      if (y > y1) y1 = y;
    }
  }
  return [x0, y0, x1, y1];
}

// --- the renderer (inktex/render.py) ----------------------------------------------------

/**
 * A 1-px line as Pillow's `ImageDraw.line(width=1)` draws one segment (Bresenham, the end
 * point left to the next segment; a horizontal run includes both ends).
 * @param {Uint8Array} img @param {number} w @param {number} h
 * @param {number} x0 @param {number} y0 @param {number} x1 @param {number} y1
 */
function pilLine(img, w, h, x0, y0, x1, y1) {
  const put = (/** @type {number} */ x, /** @type {number} */ y) => {
    if (x >= 0 && x < w && y >= 0 && y < h) img[y * w + x] = 255;
  };
  let dx = x1 - x0;
  let dy = y1 - y0;
  const xs = dx < 0 ? -1 : 1;
  const ys = dy < 0 ? -1 : 1;
  dx = Math.abs(dx);
  dy = Math.abs(dy);
  if (dx === 0) {
    for (let i = 0; i < dy; i++, y0 += ys) put(x0, y0);
  } else if (dy === 0) {
    for (let x = Math.min(x0, x1); x <= Math.max(x0, x1); x++) put(x, y0);
  } else if (dx > dy) {
    const n = dx;
    dy += dy;
    let e = dy - dx;
    dx += dx;
    for (let i = 0; i < n; i++) {
      put(x0, y0);
      if (e >= 0) {
        y0 += ys;
        e -= dx;
      }
      e += dy;
      x0 += xs;
    }
  } else {
    const n = dy;
    dx += dx;
    let e = dx - dy;
    dy += dy;
    for (let i = 0; i < n; i++) {
      put(x0, y0);
      if (e >= 0) {
        x0 += xs;
        e -= dy;
      }
      e += dx;
      y0 += ys;
    }
  }
}

/** Pillow's polyline: each segment, then the last point. @param {Uint8Array} img
 * @param {number} w @param {number} h @param {number[][]} points */
function pilPolyline(img, w, h, points) {
  for (let i = 0; i + 1 < points.length; i++) {
    pilLine(img, w, h, points[i][0], points[i][1], points[i + 1][0], points[i + 1][1]);
  }
  if (points.length >= 2) {
    const [x, y] = points[points.length - 1];
    if (x >= 0 && x < w && y >= 0 && y < h) img[y * w + x] = 255;
  }
}

/** `_draw_stroke`: runs of flat or steep segments, each drawn `lineWidth` times across.
 * @param {Uint8Array} img @param {number} w @param {number} h @param {number[][]} xy
 * @param {number} lineWidth */
function drawStroke(img, w, h, xy, lineWidth) {
  if (xy.length < 2) return;
  const flat = [];
  for (let i = 0; i + 1 < xy.length; i++) {
    flat.push(Math.abs(xy[i + 1][0] - xy[i][0]) >= Math.abs(xy[i + 1][1] - xy[i][1]));
  }
  let start = 0;
  for (let i = 1; i <= flat.length; i++) {
    if (i < flat.length && flat[i] === flat[start]) continue;
    const [sx, sy] = flat[start] ? [0, 1] : [1, 0];
    const run = xy.slice(start, i + 1);
    for (let k = 0; k < lineWidth; k++) {
      pilPolyline(img, w, h, run.map(([x, y]) => [x + k * sx, y + k * sy]));
    }
    start = i;
  }
}

/** `_blur`: separable, zero outside, summed in the Python's order. @param {Float64Array} ink
 * @param {number} h @param {number} w */
function blur(ink, h, w) {
  const r = 2;
  const rows = new Float64Array((h + 2 * r) * w); // the padded image blurred along x
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let acc = 0;
      for (let i = 0; i < BLUR.length; i++) {
        const xx = x + i - r;
        acc += BLUR[i] * (xx >= 0 && xx < w ? ink[y * w + xx] : 0);
      }
      rows[(y + r) * w + x] = acc;
    }
  }
  const out = new Float64Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let acc = 0;
      for (let i = 0; i < BLUR.length; i++) acc += BLUR[i] * rows[(y + i) * w + x];
      out[y * w + x] = Math.min(1, Math.max(0, acc));
    }
  }
  return out;
}

/**
 * `draw_ink`: ink in [0, 1] (float64) of strokes at whole-pixel coordinates.
 * @param {number[][][]} pixels @param {number} height @param {number} width @param {number} lineWidth
 */
export function drawInk(pixels, height, width, lineWidth) {
  const img = new Uint8Array(height * width);
  for (const xy of pixels) drawStroke(img, width, height, xy, lineWidth);
  const ink = new Float64Array(height * width);
  for (let i = 0; i < ink.length; i++) ink[i] = img[i] / 255;
  for (const xy of pixels) {
    for (const [x, y] of xy) {
      for (let dy = 0; dy < lineWidth; dy++) {
        for (let dx = 0; dx < lineWidth; dx++) {
          ink[Math.min(y + dy, height - 1) * width + Math.min(x + dx, width - 1)] = 1;
        }
      }
    }
  }
  return blur(ink, height, width);
}

/**
 * `render_strokes`: a size x size uint8 image, dark ink on white, CROHME's offline style.
 * @param {Strokes} strokes @param {number} [size]
 */
export function renderStrokes(strokes, size = 256, margin = CORE_MARGIN, lineWidth = LINE_WIDTH) {
  const drawn = checked(strokes);
  const span = size - 2 * margin - lineWidth;
  const [x0, y0, x1, y1] = bounds(drawn);
  const extent = Math.max(x1 - x0, y1 - y0);
  const scale = extent > 0 ? span / extent : 1;
  const ox = rint((span - (x1 - x0) * scale) / 2) + margin;
  const oy = rint((span - (y1 - y0) * scale) / 2) + margin;
  const pixels = drawn.map((s) => s.map(([x, y]) => [rint((x - x0) * scale) + ox, rint((y - y0) * scale) + oy]));
  const ink = drawInk(pixels, size, size, lineWidth);
  const gray = new Uint8Array(size * size); // rounded half to even, as np.round
  for (let i = 0; i < gray.length; i++) gray[i] = rint(255 * (1 - ink[i]));
  return gray;
}

/**
 * `render_at_scale`: float32 ink of strokes already in pixels, `margin` px around the ink.
 * @param {number[][][]} strokes @param {number} margin @param {number} lineWidth
 * @returns {ModelInput}
 */
function renderAtScale(strokes, margin, lineWidth) {
  const drawn = checked(strokes);
  const [x0, y0] = bounds(drawn);
  const pixels = drawn.map((s) => s.map(([x, y]) => [rint(x - x0) + margin, rint(y - y0) + margin]));
  const [, , hx, hy] = bounds(pixels);
  const width = Math.trunc(hx) + lineWidth + margin;
  const height = Math.trunc(hy) + lineWidth + margin;
  const data = new Float32Array(height * width);
  data.set(drawInk(pixels, height, width, lineWidth));
  return { data, height, width };
}

// --- the one scale (inktex/scale.py) ------------------------------------------------------

/** `writing_size`. @param {number[]} heights @param {number[]} widths */
function writingSize(heights, widths) {
  const upright = heights.filter((h, i) => h > FLAT * widths[i]);
  let size = upright.length ? median(upright) : 0;
  if (size <= 0) size = median(heights.map((h, i) => Math.max(h, widths[i])));
  return size;
}

/** `normalise_strokes`: a typical symbol `symbolHeight` units high, the ink box at 0, 0.
 * @param {Strokes} strokes @param {number} symbolHeight */
export function normaliseStrokes(strokes, symbolHeight) {
  const drawn = checked(strokes);
  const spans = drawn.map((s) => {
    const [x0, y0, x1, y1] = bounds([s]);
    return [x1 - x0, y1 - y0];
  });
  const size = writingSize(
    spans.map((s) => s[1]),
    spans.map((s) => s[0]),
  );
  const factor = size > 0 ? symbolHeight / size : 1;
  const [ox, oy] = bounds(drawn);
  return drawn.map((s) => s.map(([x, y]) => [(x - ox) * factor, (y - oy) * factor]));
}

// --- preprocessing (inktex/preprocess.py) -------------------------------------------------

/** `shrink_factor`. @param {number} height @param {number} width @param {PreprocessConfig} cfg */
function shrinkFactor(height, width, cfg) {
  const roomH = cfg.height - 2 * cfg.margin;
  const roomW = cfg.width - 2 * cfg.margin;
  return Math.min(1, roomH / Math.max(height, 1e-9), roomW / Math.max(width, 1e-9));
}

/** `_normalise_contrast`: typical stroke pixels reach 1 (float32). @param {Float32Array} ink */
function normaliseContrast(ink) {
  const threshold = f32(0.05);
  const strokes = ink.filter((v) => v > threshold);
  if (strokes.length === 0) throw new Error('no handwriting found after scaling: the ink is too faint');
  const peak = f32(Math.max(percentile32(strokes, 90), 1e-3));
  const out = new Float32Array(ink.length);
  for (let i = 0; i < ink.length; i++) out[i] = Math.min(1, Math.max(0, ink[i] / peak));
  return out;
}

/** `pad_to_stride`: paper right and below, to a multiple of STRIDE, at most the largest input.
 * @param {ModelInput} input @param {PreprocessConfig} cfg @returns {ModelInput} */
function padToStride(input, cfg) {
  const h = Math.min(input.height, cfg.height);
  const w = Math.min(input.width, cfg.width);
  const height = Math.ceil(h / STRIDE) * STRIDE;
  const width = Math.ceil(w / STRIDE) * STRIDE;
  const data = new Float32Array(height * width);
  for (let y = 0; y < h; y++) data.set(input.data.subarray(y * input.width, y * input.width + w), y * width);
  return { data, height, width };
}

/** `strokes_to_input`: strokes at the writer's scale. @param {Strokes} strokes
 * @param {PreprocessConfig} cfg @returns {ModelInput} */
function strokesToInput(strokes, cfg) {
  let drawn = normaliseStrokes(strokes, /** @type {number} */ (cfg.symbol_height));
  const lineWidth = cfg.line_width || LINE_WIDTH;
  const [x0, y0, x1, y1] = bounds(drawn);
  const factor = shrinkFactor(y1 - y0 + lineWidth, x1 - x0 + lineWidth, cfg);
  if (factor < 1) drawn = drawn.map((s) => s.map(([x, y]) => [x * factor, y * factor]));
  const ink = renderAtScale(drawn, cfg.margin, lineWidth);
  return padToStride({ ...ink, data: normaliseContrast(ink.data) }, cfg);
}

// Pillow underneath ink_map and fit_to_box, for the 256 x 256 rendering they receive.

/** The running max of a line over windows of `size`, edges replicated (van Herk and
 * Gil-Werman: three comparisons a pixel whatever the size). @param {Uint8Array} line
 * @param {number} size @param {Uint8Array} out */
function maxLine(line, size, out) {
  const n = line.length;
  const r = Math.floor(size / 2);
  const m = n + 2 * r;
  const p = new Uint8Array(m);
  for (let j = 0; j < m; j++) p[j] = line[Math.min(n - 1, Math.max(0, j - r))];
  const g = new Uint8Array(m);
  const hh = new Uint8Array(m);
  for (let j = 0; j < m; j++) g[j] = j % size === 0 ? p[j] : Math.max(g[j - 1], p[j]);
  for (let j = m - 1; j >= 0; j--) hh[j] = j === m - 1 || (j + 1) % size === 0 ? p[j] : Math.max(hh[j + 1], p[j]);
  for (let i = 0; i < n; i++) out[i] = Math.max(hh[i], g[i + size - 1]);
}

/** `ImageFilter.MaxFilter(size)` on an L image: edges replicated. @param {Uint8Array} img
 * @param {number} h @param {number} w @param {number} size */
function maxFilter(img, h, w, size) {
  const rows = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) maxLine(img.subarray(y * w, (y + 1) * w), size, rows.subarray(y * w, (y + 1) * w));
  const out = new Uint8Array(h * w);
  const column = new Uint8Array(h);
  const result = new Uint8Array(h);
  for (let x = 0; x < w; x++) {
    for (let y = 0; y < h; y++) column[y] = rows[y * w + x];
    maxLine(column, size, result);
    for (let y = 0; y < h; y++) out[y * w + x] = result[y];
  }
  return out;
}

/** One line of Pillow's box blur (BoxBlur.c, 8 bits, integer radius), edges replicated.
 * @param {Uint8Array} line @param {number} radius */
function boxBlurLine(line, radius) {
  const n = line.length;
  const last = n - 1;
  const ww = Math.floor(2 ** 24 / (radius * 2 + 1));
  const fw = Math.floor((2 ** 24 - (radius * 2 + 1) * ww) / 2);
  const edgeA = Math.min(radius + 1, n);
  const edgeB = Math.max(n - radius - 1, 0);
  const out = new Uint8Array(n);
  let acc = line[0] * (radius + 1);
  for (let x = 0; x < edgeA - 1; x++) acc += line[x];
  acc += line[last] * (radius - edgeA + 1);
  const save = (/** @type {number} */ x, /** @type {number} */ left, /** @type {number} */ right) => {
    out[x] = Math.floor((acc * ww + (line[left] + line[right]) * fw + 2 ** 23) / 2 ** 24);
  };
  if (edgeA <= edgeB) {
    for (let x = 0; x < edgeA; x++) {
      acc += line[x + radius] - line[0];
      save(x, 0, x + radius + 1);
    }
    for (let x = edgeA; x < edgeB; x++) {
      acc += line[x + radius] - line[x - radius - 1];
      save(x, x - radius - 1, x + radius + 1);
    }
    for (let x = edgeB; x <= last; x++) {
      acc += line[last] - line[x - radius - 1];
      save(x, x - radius - 1, last);
    }
  } else {
    for (let x = 0; x < edgeB; x++) {
      acc += line[x + radius] - line[0];
      save(x, 0, x + radius + 1);
    }
    for (let x = edgeB; x < edgeA; x++) {
      acc += line[last] - line[0];
      save(x, 0, last);
    }
    for (let x = edgeA; x <= last; x++) {
      acc += line[last] - line[x - radius - 1];
      save(x, x - radius - 1, last);
    }
  }
  return out;
}

/** `ImageFilter.BoxBlur(radius)`: rows, then columns. @param {Uint8Array} img
 * @param {number} h @param {number} w @param {number} radius */
function boxBlur(img, h, w, radius) {
  const tmp = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) tmp.set(boxBlurLine(img.subarray(y * w, (y + 1) * w), radius), y * w);
  const out = new Uint8Array(h * w);
  const column = new Uint8Array(h);
  for (let x = 0; x < w; x++) {
    for (let y = 0; y < h; y++) column[y] = tmp[y * w + x];
    const blurred = boxBlurLine(column, radius);
    for (let y = 0; y < h; y++) out[y * w + x] = blurred[y];
  }
  return out;
}

/**
 * `ink_map` of a rendering (uint8, dark ink on white), float32 as numpy computes it.
 * @param {Uint8Array} gray @param {number} h @param {number} w
 */
export function inkMap(gray, h, w) {
  const n = gray.length;
  const g = new Float32Array(n);
  for (let i = 0; i < n; i++) g[i] = gray[i] / 255;
  if (percentile32(g, 50) < 0.5) for (let i = 0; i < n; i++) g[i] = 1 - g[i];
  if (Math.min(h, w) >= 64) {
    if (Math.max(h, w) > 256) throw new Error('ink_map: only renderings up to 256 px are supported');
    const small = new Uint8Array(n);
    for (let i = 0; i < n; i++) small[i] = Math.trunc(f32(g[i] * 255));
    const paper = boxBlur(maxFilter(small, h, w, 9), h, w, 6);
    const floor = f32(1e-3);
    for (let i = 0; i < n; i++) g[i] = Math.min(1, Math.max(0, f32(g[i] / Math.max(f32(paper[i] / 255), floor))));
  }
  const ink = new Float32Array(n);
  for (let i = 0; i < n; i++) ink[i] = 1 - g[i];
  const noise = percentile32(ink, 50) + 0.08;
  const n32 = f32(noise);
  const d32 = f32(Math.max(1 - noise, 1e-3));
  for (let i = 0; i < n; i++) ink[i] = Math.min(1, Math.max(0, f32(f32(ink[i] - n32) / d32)));
  return ink;
}

/** Pillow's resampling weights (Resample.c's precompute_coeffs). @param {number} inSize
 * @param {number} outSize @param {'box' | 'bilinear'} filter */
function coefficients(inSize, outSize, filter) {
  const support0 = filter === 'box' ? 0.5 : 1.0;
  const kernel =
    filter === 'box'
      ? (/** @type {number} */ x) => (x > -0.5 && x <= 0.5 ? 1 : 0)
      : (/** @type {number} */ x) => (Math.abs(x) < 1 ? 1 - Math.abs(x) : 0);
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = support0 * filterscale;
  /** @type {{min: number, weights: number[]}[]} */
  const out = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    const weights = [];
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const v = kernel((x + xmin - center + 0.5) * ss);
      weights.push(v);
      ww += v;
    }
    out.push({ min: xmin, weights: weights.map((v) => (ww !== 0 ? v / ww : v)) });
  }
  return out;
}

/** `Image.fromarray(x, "F").resize((w, h), BOX or BILINEAR)`: horizontal, then vertical,
 * float32 between and after. @param {Float32Array} src @param {number} h @param {number} w
 * @param {number} newH @param {number} newW @param {'box' | 'bilinear'} filter */
function resizeF(src, h, w, newH, newW, filter) {
  let data = src;
  let width = w;
  if (newW !== w) {
    const coeffs = coefficients(w, newW, filter);
    const tmp = new Float32Array(h * newW);
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < newW; xx++) {
        const { min, weights } = coeffs[xx];
        let ss = 0;
        for (let k = 0; k < weights.length; k++) ss += data[y * width + min + k] * weights[k];
        tmp[y * newW + xx] = ss;
      }
    }
    data = tmp;
    width = newW;
  }
  if (newH !== h) {
    const coeffs = coefficients(h, newH, filter);
    const tmp = new Float32Array(newH * width);
    for (let yy = 0; yy < newH; yy++) {
      const { min, weights } = coeffs[yy];
      for (let x = 0; x < width; x++) {
        let ss = 0;
        for (let k = 0; k < weights.length; k++) ss += data[(min + k) * width + x] * weights[k];
        tmp[yy * width + x] = ss;
      }
    }
    data = tmp;
  }
  return data === src ? Float32Array.from(src) : data;
}

/** `fit_to_box`: cropped to the ink, fitted (aspect kept, centred) into the box.
 * @param {Float32Array} ink @param {number} h @param {number} w @param {PreprocessConfig} cfg
 * @returns {ModelInput} */
function fitToBox(ink, h, w, cfg) {
  const threshold = f32(cfg.ink_threshold);
  let top = h;
  let bottom = -1;
  let left = w;
  let right = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (ink[y * w + x] > threshold) {
        top = Math.min(top, y);
        bottom = Math.max(bottom, y);
        left = Math.min(left, x);
        right = Math.max(right, x);
      }
    }
  }
  if (bottom < 0) throw new Error('no handwriting found: the image is blank');
  const ch = bottom + 1 - top;
  const cw = right + 1 - left;
  const crop = new Float32Array(ch * cw);
  for (let y = 0; y < ch; y++) crop.set(ink.subarray((top + y) * w + left, (top + y) * w + left + cw), y * cw);
  const innerH = cfg.height - 2 * cfg.margin;
  const innerW = cfg.width - 2 * cfg.margin;
  const scale = Math.min(innerH / ch, innerW / cw);
  const newH = Math.max(1, rint(ch * scale));
  const newW = Math.max(1, rint(cw * scale));
  const resized = resizeF(crop, ch, cw, newH, newW, scale < 1 ? 'box' : 'bilinear');
  const out = new Float32Array(cfg.height * cfg.width);
  const y0 = Math.floor((cfg.height - newH) / 2);
  const x0 = Math.floor((cfg.width - newW) / 2);
  for (let y = 0; y < newH; y++) out.set(resized.subarray(y * newW, (y + 1) * newW), (y0 + y) * cfg.width + x0);
  return { data: normaliseContrast(out), height: cfg.height, width: cfg.width };
}

/**
 * The model's input for pen strokes, as `inktex.inputs.from_strokes` makes it: at the
 * writer's scale when the package's `symbol_height` says so, else the CROHME-style
 * rendering fitted into the package's box.
 * @param {Strokes} strokes @param {PreprocessConfig} cfg @returns {ModelInput}
 */
export function strokesToModelInput(strokes, cfg) {
  if ((cfg.symbol_height ?? 0) > 0) return strokesToInput(strokes, cfg);
  const size = 256;
  const gray = renderStrokes(strokes, size);
  return fitToBox(inkMap(gray, size, size), size, size, cfg);
}
