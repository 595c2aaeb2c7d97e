#!/usr/bin/env node
// Render many LaTeX strings with KaTeX in one process (batching keeps ~20k renders to seconds).
//
// stdin:  a JSON array; each item is a LaTeX string, or {"latex": "...", "macros": {...}} to
//         render with extra KaTeX macros (e.g. {"\\mbox": "\\text"} for the annotators' raw
//         labels: KaTeX has no \mbox, LaTeX's text box, whose KaTeX equivalent is \text).
// stdout: {"katex": "<version>", "results": [...]}, one result per input, in order:
//           {"error": null | "<KaTeX's message>", "warnings": ["<strict-mode code>", ...],
//            "mathml": null | "<span class=\"katex\"><math>...</math></span>"}
//         `error` comes from a display-mode render with throwOnError: true, as the front end
//         renders; `warnings` are KaTeX's strict-mode complaints (non-fatal); `mathml` is
//         KaTeX's MathML output alone, for comparing what two sources look like.
// katex is resolved from web/node_modules (run `npm ci` in web/ first), wherever this runs from.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(new URL("../web/package.json", import.meta.url));
const katex = require("katex");

const items = JSON.parse(readFileSync(0, "utf8"));
if (!Array.isArray(items)) {
  throw new TypeError("stdin must be a JSON array of LaTeX strings or {latex, macros} objects");
}

function render(item) {
  const latex = typeof item === "string" ? item : String(item.latex);
  const macros = typeof item === "string" ? {} : { ...item.macros };
  const warnings = [];
  const options = {
    displayMode: true,
    throwOnError: true,
    macros,
    strict: (code) => {
      warnings.push(code);
      return "ignore";
    },
  };
  try {
    katex.renderToString(latex, options);
    const mathml = katex.renderToString(latex, { ...options, output: "mathml" });
    return { error: null, warnings: [...new Set(warnings)], mathml };
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    return { error, warnings: [...new Set(warnings)], mathml: null };
  }
}

process.stdout.write(JSON.stringify({ katex: katex.version, results: items.map(render) }));
