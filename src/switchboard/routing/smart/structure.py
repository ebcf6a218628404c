"""Structure features of a prompt: the shape of a multiple-choice question and the
arithmetic load of a word problem, as a short dense vector.

TF-IDF sees words, not shape: how many options a question has, whether they are numbers,
whether the stem is negated ("Which is NOT ..."), how many distinct quantities a word
problem juggles and which operations its wording implies ("twice", "remaining", "per").
These counts are cheap (a few regex passes and one pass over the tokens) and are meant
to generalise across topics, unlike subject words.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_OPTION = re.compile(r"^\s*\(?([A-J])[.)]\s*(.*)$", re.MULTILINE)
_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
_FRACTION = re.compile(r"\d\s?/\s?\d")
_MONEY = re.compile(r"\$\s*\d")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
# Plain substring tests: a regex with word boundaries costs ~0.1 ms on a long prompt.
_NEGATIONS = (" NOT ", "EXCEPT", " LEAST ", " FALSE", "INCORRECT")
_STATEMENT = re.compile(r"Statement \d\s*\|")
_MATH_SYMBOL = re.compile(r"[=^+*/<>\\]")

_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve fifteen twenty thirty forty fifty "
    "hundred thousand million dozen dozens".split())
_MULTIPLIERS = frozenset("twice double triple thrice half third thirds quarter quarters fourth fifth".split())
_RATES = frozenset("per each every average rate ratio speed mph hour hours minute minutes".split())
_CHANGES = frozenset("remaining rest left more less fewer than increase decrease discount profit loss "
                     "percent percentage tax interest save saves saved spend spends spent".split())
_TIME = frozenset("day days week weeks month months year years".split())
_WORD_GROUPS = (_NUMBER_WORDS, _MULTIPLIERS, _RATES, _CHANGES, _TIME)

#: Names of the structure features, in vector order (kept in the saved model).
STRUCTURE_NAMES = (
    "options",
    "log_option_chars_mean",
    "option_chars_spread",
    "numeric_option_share",
    "above_option",
    "negated_stem",
    "statement_pair",
    "log_stem_chars",
    "log_math_symbols",
    "log_distinct_numbers",
    "log_decimals",
    "log_fractions",
    "log_percents",
    "log_money",
    "log_sentences",
    "numbers_per_sentence",
    "log_max_digits",
    "log_number_words",
    "log_multiplier_words",
    "log_rate_words",
    "log_change_words",
    "log_time_words",
)


def _is_numeric(option: str) -> bool:
    letters = sum(map(str.isalpha, option))
    digits = sum(map(str.isdigit, option))
    return digits > 0 and digits >= letters


def structure_features(text: str, tokens: Sequence[str]) -> list[float]:
    """Structure statistics in STRUCTURE_NAMES order (``tokens`` from ``features.tokenize``)."""
    matches = list(_OPTION.finditer(text))
    options = [m.group(2).strip() for m in matches]
    if options:
        lengths = [len(o) for o in options]
        mean_len = sum(lengths) / len(lengths)
        spread = (max(lengths) - min(lengths)) / (mean_len + 1.0)
        numeric = sum(map(_is_numeric, options)) / len(options)
        stem = text[: matches[0].start()]
    else:
        mean_len, spread, numeric, stem = 0.0, 0.0, 0.0, text
    numbers = _NUMBER.findall(text)
    stem_numbers = len(_NUMBER.findall(stem)) if options else len(numbers)
    sentences = max(1, len(_SENTENCE_END.findall(stem)))
    counts = Counter(tokens)
    n_words, n_mult, n_rate, n_change, n_time = (sum(counts[w] for w in group if w in counts) for group in _WORD_GROUPS)
    lower_tail = text[-4000:].lower()  # options sit at the end; bounded cost on huge prompts
    return [
        float(len(options)),
        math.log1p(mean_len),
        spread,
        numeric,
        1.0 if "of the above" in lower_tail else 0.0,
        1.0 if any(word in stem for word in _NEGATIONS) else 0.0,
        1.0 if _STATEMENT.search(text) else 0.0,
        math.log1p(len(stem)),
        math.log1p(len(_MATH_SYMBOL.findall(text))),
        math.log1p(len(set(numbers))),
        math.log1p(sum("." in n for n in numbers)),
        math.log1p(len(_FRACTION.findall(text)) if "/" in text else 0),
        math.log1p(text.count("%")),
        math.log1p(len(_MONEY.findall(text))),
        math.log1p(sentences),
        stem_numbers / sentences,
        math.log1p(max((len(n) for n in numbers), default=0)),
        math.log1p(n_words),
        math.log1p(n_mult),
        math.log1p(n_rate),
        math.log1p(n_change),
        math.log1p(n_time),
    ]
