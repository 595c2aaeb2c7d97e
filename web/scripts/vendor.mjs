// Copies the npm packages the page loads into web/vendor/, so the UI is static files served
// from its own origin: no CDN, nothing fetched at run time.
// - KaTeX: its ES module, CSS and fonts.
// - onnxruntime-web: its WASM-only ES module and the one WebAssembly build it loads (SIMD,
//   threads where the page is cross-origin isolated), for live recognition in a worker.
// Runs as `postinstall` (so `npm ci` in the Makefile does it) and as `npm run vendor`.
import { cpSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * @param {string} name the package under node_modules
 * @param {string} from its folder holding the files
 * @param {string[]} files
 * @param {string[]} [folders]
 */
function vendor(name, from, files, folders = []) {
  const src = join(web, 'node_modules', name, from);
  const out = join(web, 'vendor', name);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  for (const file of files) cpSync(join(src, file), join(out, file));
  for (const folder of folders) cpSync(join(src, folder), join(out, folder), { recursive: true });
  console.log(`vendor: ${name} copied to ${out}`);
}

vendor('katex', 'dist', ['katex.mjs', 'katex.min.css'], ['fonts']);
vendor('onnxruntime-web', 'dist', [
  'ort.wasm.min.mjs',
  'ort-wasm-simd-threaded.mjs',
  'ort-wasm-simd-threaded.wasm',
]);
