"""Option geometry of a multiple-choice question: how alike its answer options are, in meaning.

TF-IDF mostly tells the subject of a question; within a subject, questions whose options
are near-synonyms or near-copies of the stem are the ones a weaker model gets wrong more
often. Each option and the stem are embedded with the static MiniLM table
(``embedding.py``, the router's IDF token weights) and compared by cosine: a handful of
dense values that describe the question, not its topic. A prompt without lettered
options (``A. ...`` lines, two or more) gets zeros.

Fixed before it was measured (docs/routing.md, "Results"): the parse, the embedding and
the ten values below.
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np

from .embedding import StaticEmbedding

_OPTION = re.compile(r"^([ABCD])\. ", re.MULTILINE)
_NUMERIC = re.compile(r"[-+]?\$?\d+(?:[.,/]\d+)*%?")
_ANSWER_CUE = "\nAnswer:"

#: Names of the option features, in vector order (kept in the saved model).
OPTION_NAMES = ("opt_parsed", "opt_pair_mean", "opt_pair_max", "opt_pair_min", "opt_stem_max", "opt_stem_mean",
                "opt_stem_gap12", "opt_stem_std", "opt_log_len", "opt_numeric_frac")
_NONE = [0.0] * len(OPTION_NAMES)


def parse_options(prompt: str) -> tuple[str, list[str]] | None:
    """(stem, option texts) of a prompt with lines starting ``A. ``, ``B. ``...; None with fewer than two.
    The last option runs to a closing ``Answer:`` cue when there is one."""
    found = list(_OPTION.finditer(prompt))
    if len(found) < 2:
        return None
    cue = prompt.rfind(_ANSWER_CUE)
    options = []
    for i, match in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else (cue if cue >= match.end() else len(prompt))
        options.append(prompt[match.end():end].strip())
    return prompt[:found[0].start()].strip(), options


@functools.lru_cache(maxsize=8)
def _upper(k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(k, 1)


def option_features(prompt: str, table: StaticEmbedding) -> list[float]:
    """The ten ``OPTION_NAMES`` values of a prompt (zeros when it has no options)."""
    parsed = parse_options(prompt)
    if parsed is None:
        return list(_NONE)
    stem, options = parsed
    ids = [table.tokenizer.ids(text) for text in (stem, *options)]
    vectors = np.array([table.embed_ids(i) for i in ids], dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    s, o = unit[0], unit[1:]
    pairs = (o @ o.T)[_upper(len(options))]
    to_stem = o @ s
    top = np.sort(to_stem)[::-1]
    return [1.0, float(pairs.mean()), float(pairs.max()), float(pairs.min()), float(top[0]), float(to_stem.mean()),
            float(top[0] - top[1]), float(to_stem.std()), math.log1p(float(np.mean([len(i) for i in ids[1:]]))),
            float(np.mean([bool(_NUMERIC.fullmatch(text)) for text in options]))]
