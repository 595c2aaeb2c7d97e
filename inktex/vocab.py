"""The token vocabulary that a model reads and writes; it travels with every model."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
SPECIALS = (PAD, SOS, EOS, UNK)

# CROHME symbol classes that its training set never uses (they occur only in the test
# sets); listing them keeps the model able to say them once feedback teaches them.
CROHME_UNSEEN_IN_TRAINING = ("O", "W", r"\Pi")


class Vocabulary:
    """Bidirectional token <-> id map with the four special tokens first."""

    def __init__(self, tokens: Sequence[str]):
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary lists each token once")
        self.tokens = list(tokens)
        self._ids = {t: i for i, t in enumerate(self.tokens)}

    pad_id, sos_id, eos_id, unk_id = 0, 1, 2, 3

    @classmethod
    def build(cls, labels: Iterable[Sequence[str]], min_count: int = 1) -> Vocabulary:
        """Specials, then tokens by falling frequency (ties by name), then CROHME's unseen."""
        counts = Counter(t for label in labels for t in label)
        seen = sorted(
            (t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t)
        )
        unseen = [t for t in CROHME_UNSEEN_IN_TRAINING if t not in counts]
        return cls([*SPECIALS, *(t for t in seen if t not in SPECIALS), *unseen])

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._ids

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self._ids.get(t, self.unk_id) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to the first <eos>, without specials."""
        out = []
        for i in ids:
            if i == self.eos_id:
                break
            if i >= len(SPECIALS):
                out.append(self.tokens[i])
        return out

    def unknown(self, tokens: Iterable[str]) -> list[str]:
        return [t for t in tokens if t not in self._ids or t in SPECIALS]

    def to_json(self) -> str:
        return json.dumps(self.tokens, ensure_ascii=False, indent=0)

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        return cls(json.loads(text))

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))
