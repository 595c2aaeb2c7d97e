// @ts-check
// LaTeX -> KaTeX. `katex.render` builds DOM nodes (styles set through the CSSOM), so it works
// under a Content-Security-Policy without 'unsafe-inline'; renderToString + innerHTML would not.
import katex from '../vendor/katex/katex.mjs';

const OPTIONS = {
  throwOnError: true,
  output: 'htmlAndMathml', // MathML for screen readers, HTML for the eye
  strict: 'ignore',
  trust: false,
  maxSize: 20,
  maxExpand: 200,
};

/**
 * Renders `latex` into `element`. Returns null when it rendered, or the parse error's message;
 * on an error the element is left empty.
 */
export function renderMath(element, latex, { display = true } = {}) {
  const text = (latex || '').trim();
  element.replaceChildren();
  if (!text) return null;
  try {
    katex.render(text, element, { ...OPTIONS, displayMode: display });
    return null;
  } catch (error) {
    element.replaceChildren();
    return error instanceof katex.ParseError ? error.message.replace(/^KaTeX parse error: /, '') : String(error);
  }
}

/** Renders, or shows the raw LaTeX in code when it does not parse (history rows, alternatives). */
export function renderOrCode(element, latex, options) {
  const problem = renderMath(element, latex, options);
  if (problem) {
    const code = document.createElement('code');
    code.textContent = latex;
    element.replaceChildren(code);
  }
  return problem;
}
