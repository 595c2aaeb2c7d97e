// @ts-check
// The HTTP API's client. Every failure becomes an ApiError whose message a person can act on:
// the API's own `{"message": ...}` for a rejected input, a plain sentence otherwise.
import { sizeText } from './config.js';

export class ApiError extends Error {
  constructor(message, { status = 0, network = false } = {}) {
    super(message);
    this.status = status;
    this.network = network;
  }
}

const sentence = (text) => {
  const t = String(text || '').trim();
  return t ? t[0].toUpperCase() + t.slice(1) : '';
};

function explain(status, message, signedIn, limits) {
  if (status === 401) {
    return signedIn ? 'Your session has expired: sign in again.' : 'Sign in first: this needs an account.';
  }
  if (status === 403) return sentence(message) || 'You are not allowed to do that.';
  if (status === 404) return sentence(message) || 'Not found: it may have been deleted.';
  if (status === 413) {
    const largest = limits ? ` (${sizeText(limits.maxBodyBytes)})` : '';
    return `That input is larger than the API accepts${largest}: use a smaller image.`;
  }
  if (status === 429) {
    // The local stack names the route's limits; API Gateway says only "Too Many Requests".
    const limits = String(message || '').replace(/^Too Many Requests:?\s*/i, '');
    return limits ? `Too many requests: ${limits}.` : 'Too many requests right now: wait a few seconds and try again.';
  }
  if (status === 503) return `The model is not available right now: ${message || 'try again in a minute.'}`;
  if (status >= 500) return `The API failed (${status}${message ? `: ${message}` : ''}). Try again in a moment.`;
  return sentence(message) || `The API refused the request (${status}).`;
}

export class Api {
  /**
   * @param {import('./config.js').Config} config
   * @param {import('./auth.js').Auth} auth
   */
  constructor(config, auth) {
    this.base = config.apiUrl;
    this.local = config.local;
    this.limits = config.limits;
    this.auth = auth;
  }

  /**
   * @param {string} method @param {string} path
   * @param {{body?: BodyInit, headers?: Record<string, string>, auth?: 'none' | 'optional' | 'required',
   *          as?: string}} [options]
   */
  async request(method, path, { body, headers = {}, auth = 'optional', as = 'json' } = {}) {
    const token = auth === 'none' ? null : await this.auth.token();
    if (auth === 'required' && !token) throw new ApiError(explain(401, '', false), { status: 401 });
    /** @type {Record<string, string>} */
    const sent = { ...headers };
    if (token) sent.authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(`${this.base}${path}`, { method, headers: sent, body });
    } catch {
      const where = this.base || window.location.origin;
      const hint = this.local ? ' Is the local stack running (`make run`)?' : ' Check your connection.';
      throw new ApiError(`The InkTeX API at ${where} cannot be reached.${hint}`, { network: true });
    }
    if (!response.ok) {
      const payload = await response.json().catch(() => null);
      if (response.status === 401 && token) this.auth.forget();
      throw new ApiError(explain(response.status, payload?.message, Boolean(token), this.limits), {
        status: response.status,
      });
    }
    if (response.status === 204) return null;
    if (as === 'blob') return response.blob();
    if (!(response.headers.get('content-type') || '').includes('json')) {
      // A static host's page-not-found fallback (index.html) rather than an API route.
      throw new ApiError(`${path} is not an API route here: check apiUrl in config.json.`, { status: 404 });
    }
    return response.json();
  }

  json(method, path, payload, options = {}) {
    return this.request(method, path, {
      ...options,
      body: JSON.stringify(payload),
      headers: { 'content-type': 'application/json' },
    });
  }

  /**
   * Recognises one input: {strokes}, {inkml} or {image: Blob}. Signed in, the result is kept in
   * the user's history (POST /predictions); signed out, in no one's (POST /recognize).
   */
  recognize(input) {
    const path = this.auth.signedIn ? '/predictions' : '/recognize';
    if (input.image) {
      return this.request('POST', path, {
        body: input.image,
        headers: { 'content-type': input.image.type || 'application/octet-stream' },
      });
    }
    return this.json('POST', path, input.strokes ? { strokes: input.strokes } : { inkml: input.inkml });
  }

  history(limit, cursor) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set('cursor', cursor);
    return this.request('GET', `/predictions?${query}`, { auth: 'required' });
  }

  prediction(id) {
    return this.request('GET', `/predictions/${encodeURIComponent(id)}`, { auth: 'required' });
  }

  /** The prediction's input as an image (strokes and InkML come back rendered as a PNG). */
  inputImage(id) {
    return this.request('GET', `/predictions/${encodeURIComponent(id)}/input`, {
      auth: 'required',
      as: 'blob',
    });
  }

  deletePrediction(id) {
    return this.request('DELETE', `/predictions/${encodeURIComponent(id)}`, { auth: 'required' });
  }

  /** DELETE /me: the caller's predictions, inputs and corrections not yet used in training. */
  deleteMe() {
    return this.request('DELETE', '/me', { auth: 'required' });
  }

  /** A presigned PUT for a photo too large to send through the API. */
  createUpload(filename, contentType) {
    return this.json('POST', '/uploads', { filename, content_type: contentType }, { auth: 'required' });
  }

  async putUpload(upload, blob) {
    let response;
    try {
      response = await fetch(upload.url, { method: upload.method || 'PUT', headers: upload.headers, body: blob });
    } catch {
      throw new ApiError('The upload storage cannot be reached: try a smaller image.', { network: true });
    }
    if (!response.ok) throw new ApiError(`The upload was refused (${response.status}).`, { status: response.status });
  }

  /** A correction (or a confirmation: the same LaTeX) of one of the user's predictions. */
  sendFeedback(predictionId, latex, consent) {
    return this.json(
      'POST',
      '/feedback',
      { prediction_id: predictionId, latex, consent },
      { auth: 'required' },
    );
  }

  retraining() {
    return this.request('GET', '/retraining');
  }

  models() {
    return this.request('GET', '/models', { auth: 'none' });
  }

  /** The last `hours` hours' sums, oldest first: {hours: [...], production_version, updated_at}. */
  stats(hours) {
    return this.request('GET', `/stats?hours=${encodeURIComponent(hours)}`, { auth: 'required' });
  }

  health() {
    return this.request('GET', '/health', { auth: 'none' });
  }
}
