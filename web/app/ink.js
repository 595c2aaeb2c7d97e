// @ts-check
// The drawing canvas: mouse, pen and touch through Pointer Events, with undo, redo and clear.
// Strokes are kept as points in CSS pixels from the canvas's top-left corner, and sent as
// such (`{"strokes": [[[x, y], ...], ...]}`): the server renders them exactly as it renders
// its training data, so the canvas's own look never reaches the model.

const LINE_WIDTH = 3; // CSS px
const MIN_STEP = 0.75; // CSS px between kept points: denser adds nothing but bytes

export class InkCanvas extends EventTarget {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    super();
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    /** @type {[number, number][][]} */
    this.strokes = []; // finished strokes, each an array of [x, y]
    this.past = []; // earlier versions of `strokes`, for undo
    this.future = []; // undone versions, for redo
    this.active = null; // {pointerId, points}
    canvas.addEventListener('pointerdown', (e) => this.#down(e));
    canvas.addEventListener('pointermove', (e) => this.#move(e));
    canvas.addEventListener('pointerup', (e) => this.#up(e));
    canvas.addEventListener('pointercancel', (e) => this.#up(e));
    canvas.addEventListener('lostpointercapture', (e) => this.#up(e));
    canvas.addEventListener('contextmenu', (e) => e.preventDefault());
    new ResizeObserver(() => this.#resize()).observe(canvas);
    window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => this.redraw());
    this.#resize();
  }

  get isEmpty() {
    return this.strokes.length === 0 && !this.active;
  }

  get canUndo() {
    return this.past.length > 0;
  }

  get canRedo() {
    return this.future.length > 0;
  }

  /** The strokes as the API takes them, coordinates rounded to a tenth of a pixel. */
  toJSON() {
    return this.strokes.map((s) => s.map(([x, y]) => [Math.round(x * 10) / 10, Math.round(y * 10) / 10]));
  }

  undo() {
    if (!this.canUndo) return;
    this.future.push(this.strokes);
    this.strokes = this.past.pop();
    this.#changed();
  }

  redo() {
    if (!this.canRedo) return;
    this.past.push(this.strokes);
    this.strokes = this.future.pop();
    this.#changed();
  }

  clear() {
    if (this.strokes.length === 0) return;
    this.#commit([]);
  }

  #commit(strokes) {
    this.past.push(this.strokes);
    this.future = [];
    this.strokes = strokes;
    this.#changed();
  }

  #changed() {
    this.redraw();
    this.dispatchEvent(new Event('change'));
  }

  /** @param {PointerEvent} e @returns {[number, number]} a point in CSS pixels */
  #point(e) {
    const rect = this.canvas.getBoundingClientRect();
    // Clamped: a captured pointer may leave the canvas, and the API takes no negative points.
    const x = Math.min(Math.max(e.clientX - rect.left, 0), rect.width);
    const y = Math.min(Math.max(e.clientY - rect.top, 0), rect.height);
    return [x, y];
  }

  #down(e) {
    if (this.active || (e.pointerType === 'mouse' && e.button !== 0)) return;
    e.preventDefault();
    this.canvas.focus({ preventScroll: true });
    this.canvas.setPointerCapture(e.pointerId);
    this.active = { pointerId: e.pointerId, points: [this.#point(e)] };
    this.#drawDot(this.active.points[0]);
    this.dispatchEvent(new Event('inkstart'));
  }

  #move(e) {
    if (!this.active || e.pointerId !== this.active.pointerId) return;
    e.preventDefault();
    const events = typeof e.getCoalescedEvents === 'function' ? e.getCoalescedEvents() : [];
    for (const event of events.length ? events : [e]) {
      const points = this.active.points;
      const last = points[points.length - 1];
      const next = this.#point(event);
      if (Math.hypot(next[0] - last[0], next[1] - last[1]) < MIN_STEP) continue;
      points.push(next);
      this.#drawSegment(last, next);
    }
  }

  #up(e) {
    if (!this.active || e.pointerId !== this.active.pointerId) return;
    const { points } = this.active;
    this.active = null;
    if (this.canvas.hasPointerCapture(e.pointerId)) this.canvas.releasePointerCapture(e.pointerId);
    this.#commit([...this.strokes, points]);
  }

  #resize() {
    const ratio = window.devicePixelRatio || 1;
    const { width, height } = this.canvas.getBoundingClientRect();
    const w = Math.max(1, Math.round(width * ratio));
    const hgt = Math.max(1, Math.round(height * ratio));
    if (this.canvas.width === w && this.canvas.height === hgt) return;
    this.canvas.width = w;
    this.canvas.height = hgt;
    this.redraw();
  }

  #pen() {
    const ctx = this.ctx;
    const ratio = this.canvas.width / Math.max(1, this.canvas.getBoundingClientRect().width);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.lineWidth = LINE_WIDTH;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    const ink = getComputedStyle(this.canvas).getPropertyValue('--ink').trim() || '#1b2540';
    ctx.strokeStyle = ink;
    ctx.fillStyle = ink;
    return ctx;
  }

  #drawDot([x, y]) {
    const ctx = this.#pen();
    ctx.beginPath();
    ctx.arc(x, y, LINE_WIDTH / 2, 0, Math.PI * 2);
    ctx.fill();
  }

  #drawSegment([x0, y0], [x1, y1]) {
    const ctx = this.#pen();
    ctx.beginPath();
    ctx.moveTo(x0, y0);
    ctx.lineTo(x1, y1);
    ctx.stroke();
  }

  redraw() {
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    const pen = this.#pen();
    const strokes = this.active ? [...this.strokes, this.active.points] : this.strokes;
    for (const stroke of strokes) {
      if (stroke.length === 1) {
        this.#drawDot(stroke[0]);
        continue;
      }
      pen.beginPath();
      pen.moveTo(...stroke[0]);
      for (const p of stroke.slice(1)) pen.lineTo(...p);
      pen.stroke();
    }
  }
}
