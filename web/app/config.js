// The runtime configuration: `config.json` beside index.html. `make deploy` writes it for AWS
// (the API's URL, the Cognito hosted UI's domain and app client); the local stack serves its
// own. Keys are described in docs/web.md; web/config.example.json shows them all.

const trimSlash = (url) => (url || '').replace(/\/+$/, '');

/**
 * @typedef {object} Config
 * @property {string} apiUrl            the HTTP API's base URL ('' = this origin)
 * @property {string} authUrl           the OAuth server: Cognito's hosted UI domain, or the local stack
 * @property {string} userPoolClientId  the app client id (a public client, no secret)
 * @property {string} redirectUri       where the sign-in page sends the browser back to
 * @property {string} logoutUri         where sign-out lands (default: the app's root)
 * @property {string} scope
 * @property {boolean} local            true on the local stack (no real accounts)
 * @property {boolean} canSignIn
 */

/** @returns {Promise<Config>} */
export async function loadConfig() {
  let raw = {};
  let problem = '';
  try {
    const response = await fetch('config.json', { cache: 'no-store' });
    if (response.ok) raw = await response.json();
    else problem = `config.json answered ${response.status}`;
  } catch (error) {
    problem = `config.json could not be read (${error.message})`;
  }
  const appRoot = new URL('./', window.location.href).href;
  const config = {
    apiUrl: trimSlash(raw.apiUrl),
    authUrl: trimSlash(raw.authUrl),
    userPoolClientId: raw.userPoolClientId || '',
    redirectUri: raw.redirectUri || new URL('callback', appRoot).href,
    logoutUri: raw.logoutUri || appRoot,
    scope: raw.scope || 'openid email profile',
    local: Boolean(raw.local),
    problem,
  };
  config.canSignIn = Boolean(config.authUrl && config.userPoolClientId);
  return config;
}
