// Copies the npm packages the page loads (KaTeX's ES module, CSS and fonts) into web/vendor/,
// so the UI is static files served from its own origin: no CDN, nothing fetched at run time.
// Runs as `postinstall` (so `npm ci` in the Makefile does it) and as `npm run vendor`.
import { cpSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = join(dirname(fileURLToPath(import.meta.url)), '..');
const katex = join(web, 'node_modules', 'katex', 'dist');
const out = join(web, 'vendor', 'katex');

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const file of ['katex.mjs', 'katex.min.css']) {
  cpSync(join(katex, file), join(out, file));
}
cpSync(join(katex, 'fonts'), join(out, 'fonts'), { recursive: true });
console.log(`vendor: KaTeX copied to ${out}`);
