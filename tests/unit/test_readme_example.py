"""The README's first example is what the bundled model really answers.

Both halves come from README.md itself: the file the `curl ... /recognize` line sends, and the
`# {...}` line under it that shows the answer. Replacing the bundled model (models/release)
without updating that example fails here, saying what the model answers now.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
RELEASE = REPO / "models" / "release"


def readme_example() -> tuple[Path, dict]:
    """(the input file, the answer shown) of the README's `POST /recognize` example."""
    text = README.read_text()
    found = re.search(
        r"curl [^\n]*--data-binary @(?P<file>\S+)[^\n]*\n[^\n]*/recognize\n# (?P<shown>\{.*\})\n",
        text,
    )
    assert found, "README.md has no `curl --data-binary @FILE ... /recognize` example"
    # the shown answer elides what varies ("...", [...]); the rest is JSON
    shown = re.sub(r'"\.\.\."|\[\.\.\.\]', "null", found["shown"]).replace(", ...}", "}")
    return REPO / found["file"], json.loads(shown)


def test_the_readme_example_is_what_the_bundled_model_answers():
    from inktex.runtime import OnnxRecognizer

    path, shown = readme_example()
    assert path.is_file(), f"README.md's example sends {path}, which does not exist"
    model = OnnxRecognizer.load(RELEASE)
    result = model.recognize_file(path)
    answer = {
        "latex": result.latex,
        "confidence": round(result.confidence, 2),
        "model_version": model.version,
    }
    expected = {k: shown[k] for k in answer}
    assert answer == expected, (
        f"README.md's example (POST /recognize with {path.relative_to(REPO)}) shows {expected}, "
        f"but the bundled model answers {answer}: update the example in README.md"
    )


@pytest.mark.parametrize("key", ["id", "alternatives"])
def test_the_example_shows_the_answers_other_fields(key):
    assert key in readme_example()[1]
