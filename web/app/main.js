// @ts-check
// InkTeX's web UI: wires the views to the API, the sign-in and the page's hash routes
// (#/ recognise, #/history, #/models). Plain ES modules, no bundler; see docs/web.md.
import { Api, ApiError } from './api.js';
import { Auth } from './auth.js';
import { loadConfig, sizeText } from './config.js';
import { $ } from './dom.js';
import { HistoryView } from './history.js';
import { fileFrom, ImageRejected, prepareFile, typeNames } from './images.js';
import { InkCanvas } from './ink.js';
import { LiveRecognition } from './live.js';
import { ModelsView } from './models.js';
import { ResultPanel } from './result.js';

const VIEWS = { recognize: 'view-recognize', history: 'view-history', models: 'view-models' };
const UPLOAD_WAIT_MS = 60_000;

class App {
  constructor(config) {
    this.config = config;
    this.auth = new Auth(config);
    this.api = new Api(config, this.auth);
    this.ink = new InkCanvas($('#ink'));
    this.result = new ResultPanel(this.api, this);
    this.history = new HistoryView(this.api, this);
    this.models = new ModelsView(this.api, this);
    this.live = new LiveRecognition(this.ink, this.result, config);
    this.view = null;
    this.toastTimer = 0;
  }

  // --- what the views call -----------------------------------------------------------------

  isSignedIn() {
    return this.auth.signedIn;
  }

  notify(text) {
    const toast = $('#toast');
    toast.textContent = text;
    toast.classList.add('toast-visible');
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => toast.classList.remove('toast-visible'), 4000);
  }

  fail(error) {
    const message = error instanceof ApiError || error instanceof ImageRejected || error?.name === 'SignInError'
      ? error.message
      : `Something went wrong: ${error?.message || error}`;
    if (!(error instanceof ApiError || error instanceof ImageRejected)) console.error(error);
    $('#banner-text').textContent = message;
    $('#banner').hidden = false;
  }

  clearError() {
    $('#banner').hidden = true;
  }

  /** A history entry back in the result panel, to copy or correct it. */
  open(record) {
    this.#show('recognize');
    this.result.show(record);
    $('#latex').focus();
  }

  onFeedback() {
    this.clearError();
    if (this.view === 'models') this.models.load();
  }

  confirm(text, title = 'Delete this prediction?') {
    const dialog = $('#confirm');
    $('#confirm-title').textContent = title;
    $('#confirm-text').textContent = `${text} This cannot be undone.`;
    dialog.returnValue = '';
    dialog.showModal();
    return new Promise((resolve) => {
      dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    });
  }

  // --- start-up ----------------------------------------------------------------------------

  async start() {
    this.#bindAccount();
    this.#bindInk();
    this.#bindImages();
    this.#bindTabs();
    $('#banner-close').addEventListener('click', () => this.clearError());
    window.addEventListener('hashchange', () => this.#route(true));
    if (this.config.problem) {
      this.fail(new Error(`${this.config.problem}: using this origin's API, without sign-in.`));
    }
    try {
      const back = await this.auth.completeSignIn();
      if (back != null) {
        window.location.hash = back || '#/';
        this.notify(`Signed in as ${this.auth.userName}.`);
      }
    } catch (error) {
      this.fail(error);
    }
    this.#showAccount();
    this.result.refreshAccount();
    this.#route(false);
    this.api.health().catch((error) => this.fail(error));
    if (this.view !== 'models') this.models.loadVersion().catch(() => {});
    document.body.dataset.ready = 'true'; // tests wait for this
  }

  /** Goes to a view by its hash route, unless it is showing already. */
  #show(name) {
    if (this.view !== name) window.location.hash = name === 'recognize' ? '#/' : `#/${name}`;
  }

  #route(moveFocus) {
    const name = { '#/history': 'history', '#/models': 'models' }[window.location.hash] || 'recognize';
    this.view = name;
    for (const [key, id] of Object.entries(VIEWS)) $(`#${id}`).hidden = key !== name;
    for (const link of document.querySelectorAll('.nav a')) {
      if (!(link instanceof HTMLElement)) continue;
      if (link.dataset.route === name) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    document.title = { recognize: 'InkTeX: handwritten maths to LaTeX', history: 'History · InkTeX', models: 'Model · InkTeX' }[name];
    if (name === 'history') this.history.reload();
    if (name === 'models') this.models.load();
    if (moveFocus) $('#main').focus({ preventScroll: true });
  }

  // --- account -----------------------------------------------------------------------------

  #bindAccount() {
    $('#sign-in').addEventListener('click', () => this.auth.signIn(window.location.hash).catch((e) => this.fail(e)));
    $('#sign-out').addEventListener('click', () => {
      this.auth.signOut();
      this.notify('Signed out.');
    });
    $('#delete-my-data').addEventListener('click', () => this.#deleteMyData());
    this.auth.addEventListener('change', () => {
      this.#showAccount();
      this.result.refreshAccount();
      if (this.view === 'history') this.history.reload();
      if (this.view === 'models') this.models.load();
    });
  }

  /** DELETE /me after a confirmation; then the history is cleared and the user signed out. */
  async #deleteMyData() {
    const yes = await this.confirm(
      'Your predictions, their inputs and your corrections not yet used in training will be erased, and you will be signed out.',
      'Delete all your data?',
    );
    if (!yes) return;
    let answer;
    try {
      answer = await this.api.deleteMe();
    } catch (error) {
      this.fail(error);
      return;
    }
    const erased = answer?.erased?.predictions ?? 0;
    this.notify(`Your data was erased (${erased} prediction${erased === 1 ? '' : 's'}).`);
    this.auth.forget(); // the history view hears the change and shows itself signed out
    this.auth.signOut();
  }

  #showAccount() {
    const signedIn = this.auth.signedIn;
    $('#sign-in').hidden = signedIn || !this.config.canSignIn;
    $('#sign-out').hidden = !signedIn;
    $('#delete-my-data').hidden = !signedIn;
    const name = $('#user-name');
    name.hidden = !signedIn;
    name.textContent = signedIn ? this.auth.userName : '';
    document.body.dataset.signedIn = String(signedIn);
    this.#showImageLimits(signedIn);
  }

  /** What the image tab takes, in config.json's numbers (the API's own limits). */
  #showImageLimits(signedIn) {
    const { maxBodyBytes, maxUploadBytes, imageTypes } = this.config.limits;
    const larger = signedIn && maxUploadBytes > maxBodyBytes
      ? `larger photos are uploaded whole up to ${sizeText(maxUploadBytes)}, bigger ones scaled down first`
      : 'larger photos are scaled down first';
    $('#image-limits').textContent = `You can also paste one (Ctrl+V). ${typeNames(imageTypes, 'InkML')} up to ${sizeText(maxBodyBytes)}; ${larger}.`;
    $('#file').accept = [...imageTypes, '.inkml', 'application/inkml+xml'].join(',');
  }

  // --- input -------------------------------------------------------------------------------

  #bindInk() {
    const ink = this.ink;
    const update = () => {
      $('#undo').disabled = !ink.canUndo;
      $('#redo').disabled = !ink.canRedo;
      $('#clear').disabled = ink.isEmpty;
      $('#recognize-ink').disabled = ink.isEmpty;
      $('#ink-hint').hidden = !ink.isEmpty;
    };
    ink.addEventListener('change', update);
    ink.addEventListener('inkstart', () => ($('#ink-hint').hidden = true));
    $('#undo').addEventListener('click', () => ink.undo());
    $('#redo').addEventListener('click', () => ink.redo());
    $('#clear').addEventListener('click', () => ink.clear());
    $('#recognize-ink').addEventListener('click', () => this.#recognizeInk());
    $('#panel-draw').addEventListener('keydown', (e) => {
      if (!(e.ctrlKey || e.metaKey) || e.target.matches('textarea, input')) return;
      const key = e.key.toLowerCase();
      if (key === 'z' && !e.shiftKey) ink.undo();
      else if (key === 'y' || (key === 'z' && e.shiftKey)) ink.redo();
      else if (key === 'enter') this.#recognizeInk();
      else return;
      e.preventDefault();
    });
    update();
  }

  #recognizeInk() {
    if (this.ink.isEmpty) return;
    this.#recognize({ strokes: this.ink.toJSON() });
  }

  async #recognize(input) {
    this.live.serverShown(); // a live result arriving now must not replace the server's
    this.result.busy();
    const started = performance.now();
    try {
      const record = await this.api.recognize(input);
      this.clearError();
      this.result.show(record);
      document.body.dataset.serverLatencyMs = String(performance.now() - started); // tests read it
    } catch (error) {
      this.result.idle();
      this.fail(error);
    }
  }

  #bindImages() {
    const input = $('#file');
    input.addEventListener('change', () => {
      if (input.files[0]) this.#useFile(input.files[0]);
      input.value = ''; // the same file again still fires `change`
    });
    const zone = $('#dropzone');
    for (const type of ['dragenter', 'dragover']) {
      zone.addEventListener(type, (e) => {
        e.preventDefault();
        zone.classList.add('dropzone-over');
      });
    }
    for (const type of ['dragleave', 'drop']) zone.addEventListener(type, () => zone.classList.remove('dropzone-over'));
    // A drop anywhere on the page: the browser would otherwise navigate to the file.
    document.addEventListener('dragover', (e) => e.preventDefault());
    document.addEventListener('drop', (e) => {
      e.preventDefault();
      const file = fileFrom(e.dataTransfer);
      if (file) this.#useFile(file);
      else this.fail(new ImageRejected(`Drop an image file (${typeNames(this.config.limits.imageTypes)}) or an InkML file.`));
    });
    document.addEventListener('paste', (e) => {
      const file = fileFrom(e.clipboardData);
      if (!file) return; // text pastes go where they were aimed
      e.preventDefault();
      this.#useFile(file);
    });
  }

  async #useFile(file) {
    this.#show('recognize');
    this.#selectTab('image');
    let prepared;
    try {
      prepared = await prepareFile(file, { canUpload: this.auth.signedIn, limits: this.config.limits });
    } catch (error) {
      this.fail(error);
      return;
    }
    this.#preview(prepared.image || (prepared.upload?.type.startsWith('image/') ? prepared.upload : null), prepared.note);
    if (prepared.upload) {
      await this.#viaUpload(prepared.upload);
      return;
    }
    await this.#recognize(prepared.inkml ? { inkml: prepared.inkml } : { image: prepared.image });
  }

  #preview(blob, note) {
    const figure = $('#image-preview');
    const img = $('#image-preview-img');
    if (img.src.startsWith('blob:')) URL.revokeObjectURL(img.src);
    figure.hidden = !blob;
    if (blob) img.src = URL.createObjectURL(blob);
    $('#image-preview-caption').textContent = note || '';
  }

  /** A large photo, whole: a presigned PUT, then the record that the drop function writes. */
  async #viaUpload(file) {
    this.result.busy();
    try {
      const type = file.type || 'image/jpeg';
      const upload = await this.api.createUpload(file.name || 'photo', type);
      await this.api.putUpload(upload, file);
      const deadline = Date.now() + UPLOAD_WAIT_MS;
      while (Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 1500));
        const page = await this.api.history(10);
        const record = (page.items || []).find((item) => item.source_key === upload.key);
        if (record?.status === 'error') throw new ImageRejected(`The upload could not be recognised: ${record.error}`);
        if (record) {
          this.clearError();
          this.result.show(record);
          return;
        }
      }
      throw new ImageRejected('The upload arrived but no result came back within a minute: look for it in your history later.');
    } catch (error) {
      this.result.idle();
      this.fail(error);
    }
  }

  // --- tabs (ARIA tabs pattern: arrows move between them) -----------------------------------

  #bindTabs() {
    const tabs = [$('#tab-draw'), $('#tab-image')];
    tabs.forEach((tab, i) => {
      tab.addEventListener('click', () => this.#selectTab(i ? 'image' : 'draw'));
      tab.addEventListener('keydown', (e) => {
        if (!['ArrowLeft', 'ArrowRight', 'Home', 'End'].includes(e.key)) return;
        e.preventDefault();
        const next = e.key === 'Home' ? 0 : e.key === 'End' ? 1 : 1 - i;
        this.#selectTab(next ? 'image' : 'draw');
        tabs[next].focus();
      });
    });
  }

  #selectTab(name) {
    for (const key of ['draw', 'image']) {
      const selected = key === name;
      const tab = $(`#tab-${key}`);
      tab.setAttribute('aria-selected', String(selected));
      tab.tabIndex = selected ? 0 : -1;
      $(`#panel-${key}`).hidden = !selected;
    }
  }
}

loadConfig()
  .then((config) => new App(config).start())
  .catch((error) => {
    const banner = document.getElementById('banner');
    document.getElementById('banner-text').textContent = `InkTeX could not start: ${error.message}`;
    banner.hidden = false;
  });
