// @ts-check
// Sign-in: the OAuth 2.0 authorization-code flow with PKCE against Cognito's hosted UI (AWS)
// or the local stack's sign-in page (the same endpoints: /oauth2/authorize, /oauth2/token,
// /logout). The ID token is what the API's JWT authorizer checks (its audience is the app
// client); it lives in localStorage until it expires, and the refresh token renews it.

const SESSION_KEY = 'inktex.session';
const PENDING_KEY = 'inktex.signin';
const EXPIRY_MARGIN_MS = 60_000;

function base64url(bytes) {
  let text = '';
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomToken(size = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

/** The claims of a JWT (not verified: the API verifies; the UI only shows the name). */
export function jwtClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const text = atob(part + '='.repeat((4 - (part.length % 4)) % 4));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(text, (c) => c.charCodeAt(0))));
  } catch {
    return {};
  }
}

export class SignInError extends Error {}

export class Auth extends EventTarget {
  /** @param {import('./config.js').Config} config */
  constructor(config) {
    super();
    this.config = config;
    this.session = this.#load();
  }

  get signedIn() {
    return Boolean(this.session);
  }

  /** What to call the user: their user name, else their email, else their subject. */
  get userName() {
    if (!this.session) return '';
    const c = jwtClaims(this.session.idToken);
    return c['cognito:username'] || c.email || c.sub || 'signed in';
  }

  /** A valid ID token, renewed with the refresh token when it is about to expire; or null. */
  async token() {
    if (!this.session) return null;
    if (this.session.expiresAt - EXPIRY_MARGIN_MS > Date.now()) return this.session.idToken;
    if (this.session.refreshToken) {
      try {
        const tokens = await this.#tokenRequest({
          grant_type: 'refresh_token',
          refresh_token: this.session.refreshToken,
        });
        this.#store({ ...tokens, refresh_token: this.session.refreshToken });
        return this.session.idToken;
      } catch {
        // fall through: the session is over
      }
    }
    this.forget();
    return null;
  }

  /** Sends the browser to the sign-in page; it comes back to `redirectUri` with a code. */
  async signIn(returnTo = window.location.hash) {
    if (!this.config.canSignIn) throw new SignInError('sign-in is not configured (config.json)');
    const state = randomToken(16);
    const params = new URLSearchParams({
      response_type: 'code',
      client_id: this.config.userPoolClientId,
      redirect_uri: this.config.redirectUri,
      scope: this.config.scope,
      state,
    });
    const pending = { state, returnTo };
    if (crypto.subtle) {
      // PKCE (S256): only this browser can exchange the code. crypto.subtle needs a secure
      // context (https or localhost), which every real deployment is.
      pending.verifier = randomToken(48);
      const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(pending.verifier));
      params.set('code_challenge', base64url(new Uint8Array(digest)));
      params.set('code_challenge_method', 'S256');
    }
    sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
    window.location.assign(`${this.config.authUrl}/oauth2/authorize?${params}`);
  }

  /**
   * Finishes a sign-in when the page was opened by the sign-in redirect (?code=&state=).
   * Returns the hash to go back to, or null when this page load is not a redirect.
   */
  async completeSignIn() {
    const url = new URL(window.location.href);
    const code = url.searchParams.get('code');
    const error = url.searchParams.get('error');
    if (!code && !error) return null;
    const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) || 'null');
    sessionStorage.removeItem(PENDING_KEY);
    // Leave the code out of the address bar and the history, whatever happens next.
    window.history.replaceState(null, '', new URL('./', url).pathname + (pending?.returnTo || ''));
    if (error) {
      throw new SignInError(`sign-in failed: ${url.searchParams.get('error_description') || error}`);
    }
    if (!pending || pending.state !== url.searchParams.get('state')) {
      throw new SignInError('sign-in failed: the answer does not match this browser\'s request; try again');
    }
    const body = {
      grant_type: 'authorization_code',
      code,
      redirect_uri: this.config.redirectUri,
    };
    if (pending.verifier) body.code_verifier = pending.verifier;
    this.#store(await this.#tokenRequest(body));
    return pending.returnTo || '';
  }

  /** Forgets the tokens here, then lets the sign-in domain end its session too. */
  signOut() {
    this.forget();
    const params = new URLSearchParams({
      client_id: this.config.userPoolClientId,
      logout_uri: this.config.logoutUri,
    });
    if (this.config.canSignIn) window.location.assign(`${this.config.authUrl}/logout?${params}`);
  }

  forget() {
    const was = this.signedIn;
    this.session = null;
    localStorage.removeItem(SESSION_KEY);
    if (was) this.dispatchEvent(new Event('change'));
  }

  async #tokenRequest(fields) {
    let response;
    try {
      response = await fetch(`${this.config.authUrl}/oauth2/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ client_id: this.config.userPoolClientId, ...fields }),
      });
    } catch {
      throw new SignInError(`sign-in failed: ${this.config.authUrl} is unreachable`);
    }
    const payload = await response.json().catch(() => ({}));
    if (!response.ok || !payload.id_token) {
      throw new SignInError(`sign-in failed: ${payload.error_description || payload.error || response.status}`);
    }
    return payload;
  }

  #store(tokens) {
    const claims = jwtClaims(tokens.id_token);
    const expiresAt = claims.exp ? claims.exp * 1000 : Date.now() + (tokens.expires_in || 3600) * 1000;
    this.session = {
      idToken: tokens.id_token,
      refreshToken: tokens.refresh_token || null,
      expiresAt,
    };
    localStorage.setItem(SESSION_KEY, JSON.stringify(this.session));
    this.dispatchEvent(new Event('change'));
  }

  #load() {
    try {
      const session = JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
      if (session?.idToken && (session.expiresAt > Date.now() || session.refreshToken)) return session;
    } catch {
      // unreadable: treat as signed out
    }
    localStorage.removeItem(SESSION_KEY);
    return null;
  }
}
