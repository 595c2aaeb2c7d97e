// @ts-check
// The runtime configuration: `config.json` beside index.html. `make deploy` writes it for AWS
// (the API's URL, the Cognito hosted UI's domain and app client); the local stack serves its
// own, both with the limits the functions enforce (template.yaml). Keys are described in
// docs/web.md; web/config.example.json shows them all.

const trimSlash = (url) => (url || '').replace(/\/+$/, '');

// Used only while config.json carries no `limits` (an older deployment): the server's own values
// always come from config.json, which the local stack and `make deploy` write from template.yaml.
const FALLBACK_LIMITS = {
  maxBodyBytes: 4 * 1024 * 1024,
  maxUploadBytes: 20 * 1024 * 1024,
  imageTypes: ['image/png', 'image/jpeg', 'image/webp', 'image/bmp'],
};

/** A size as people read it: 4194304 -> "4 MB", 5557452 -> "5.3 MB" (1 MB = 2^20 bytes here). */
export const sizeText = (bytes) => `${Number((bytes / 1024 / 1024).toFixed(1))} MB`;

/**
 * @typedef {object} Limits  what the API accepts (config.json's `limits`, functions/common/limits.py)
 * @property {number} maxBodyBytes    a request body: POST /recognize, /predictions (413 above)
 * @property {number} maxUploadBytes  a presigned upload (POST /uploads), signed in
 * @property {string[]} imageTypes    the image types the API reads
 */

/** @returns {Limits} */
function readLimits(raw) {
  const limits = { ...FALLBACK_LIMITS };
  for (const key of ['maxBodyBytes', 'maxUploadBytes']) {
    if (Number.isFinite(raw?.[key]) && raw[key] > 0) limits[key] = raw[key];
  }
  if (Array.isArray(raw?.imageTypes) && raw.imageTypes.length) limits.imageTypes = raw.imageTypes.map(String);
  return limits;
}

/**
 * @typedef {object} Config
 * @property {string} apiUrl            the HTTP API's base URL ('' = this origin)
 * @property {string} authUrl           the OAuth server: Cognito's hosted UI domain, or the local stack
 * @property {string} userPoolClientId  the app client id (a public client, no secret)
 * @property {string} redirectUri       where the sign-in page sends the browser back to
 * @property {string} logoutUri         where sign-out lands (default: the app's root)
 * @property {string} scope
 * @property {boolean} local            true on the local stack (no real accounts)
 * @property {Limits} limits            the request sizes and image types the API accepts
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
    limits: readLimits(raw.limits),
    problem,
    canSignIn: false,
  };
  config.canSignIn = Boolean(config.authUrl && config.userPoolClientId);
  return config;
}
