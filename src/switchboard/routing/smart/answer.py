"""Features of the weak model's answer to a prompt, for the cascade's learned verifier.

A prompt-only router must guess whether the weak model will slip; once the weak model
has answered, the answer itself shows many slips: arithmetic that does not check out,
no final answer in the requested form, quantities of the question that the working never
uses, a final answer that is not what the working computed, hedging ("however", "round",
"cannot"). Each is a cheap regex pass; the learned verifier (``VerifierRouter``) weighs
them together with the words of prompt and answer.
"""

from __future__ import annotations

import math
import re

from .features import DENSE_NAMES, dense_stats, terms, tokenize

# Inline calculator annotations "<<48/2=24>>" (the GSM8K answer style) and plain
# "3 x 4 + 2 = 14" equations in the working.
_CALC = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
# The look-behind starts a match only at the start of a number (the scan is ~5x faster).
_EQUATION = re.compile(
    r"(?<![\d.,])((?:\$?\d[\d,]*(?:\.\d+)?%?\s*[-+*/x×÷]\s*)+\$?\d[\d,]*(?:\.\d+)?%?)\s*=\s*\$?(-?\d[\d,]*(?:\.\d+)?)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_FINAL = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")
_ARITHMETIC = re.compile(r"[\d.+\-*/() ]+")
_BINARY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([-+*/])\s*(\d+(?:\.\d+)?)\s*")
_OPERATIONS = {"+": float.__add__, "-": float.__sub__, "*": float.__mul__, "/": float.__truediv__}

HEDGES = ("however", "assum", "approximately", "round", "cannot", "can't", "not possible", "doesn't make sense",
          "does not make sense", "actually", "wait", "mistake", "incorrect", "error", "not enough information",
          "impossible", "let's say", "let x", "let's assume", "unclear", "ambiguous", "i apologize", "correct answer")

#: Names of the answer features, in vector order (kept in the saved verifier).
ANSWER_NAMES = (
    "calc_count", "calc_wrong", "calc_wrong_count", "equation_count", "equation_wrong", "equation_wrong_count",
    "no_final", "final_not_integer", "final_negative", "final_magnitude", "final_in_prompt",
    "final_is_last_calc", "several_finals", "prompt_numbers_used", "prompt_numbers_missing",
    "answer_log_chars", "answer_log_lines", "answer_prompt_length_ratio", "hedges",
    *(f"hedge:{h}" for h in HEDGES),
    "answer_numbers",
)


#: The verifier's dense statistics: the prompt's shape, the answer's checks, the answer's shape.
VERIFIER_STAT_NAMES = DENSE_NAMES + ANSWER_NAMES + tuple(f"answer_{n}" for n in DENSE_NAMES)


def verifier_inputs(prompt: str, answer: str) -> tuple[set[str], list[float]]:
    """What the verifier sees: the prompt's and the answer's word n-grams (marked ``p:``
    and ``a:`` so the same word counts apart in each) and VERIFIER_STAT_NAMES' values."""
    prompt_tokens, answer_tokens = tokenize(prompt), tokenize(answer)
    term_set = {"p:" + t for t in terms(prompt_tokens)}
    term_set.update("a:" + t for t in terms(answer_tokens))
    stats = dense_stats(prompt, prompt_tokens) + answer_features(prompt, answer) + dense_stats(answer, answer_tokens)
    return term_set, stats


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("$", "").replace("%", ""))
    except ValueError:
        return None


def _evaluate(expression: str) -> float | None:
    """The value of a plain arithmetic expression, or None. Only digits, + - * / ( ) and
    the point get this far, so ``eval`` sees no names; ``**`` is refused (huge powers)."""
    e = (expression.replace(",", "").replace("$", "").replace("x", "*").replace("×", "*").replace("÷", "/")
         .replace("%", "/100"))
    binary = _BINARY.fullmatch(e)
    if binary is not None:  # the common "a op b", without eval's compile step
        a, op, b = binary.groups()
        try:
            return _OPERATIONS[op](float(a), float(b))
        except (ZeroDivisionError, OverflowError):
            return None
    if not _ARITHMETIC.fullmatch(e) or "**" in e:
        return None
    try:
        return float(eval(e, {"__builtins__": {}}, {}))  # noqa: S307 - arithmetic only, checked above
    except (SyntaxError, ZeroDivisionError, TypeError, ValueError, OverflowError, RecursionError, MemoryError):
        return None


def _checks(pairs: list[tuple[str, str]], tolerance: float) -> tuple[int, int, float | None]:
    """(count, wrong, last stated value) of ``expression = value`` pairs."""
    wrong = 0
    last = None
    for expression, stated in pairs:
        value, claimed = _evaluate(expression), _number(stated)
        if value is None or claimed is None or abs(value - claimed) > tolerance * max(1.0, abs(claimed)) + 1e-6:
            wrong += 1
        last = claimed
    return len(pairs), wrong, last


def answer_features(prompt: str, answer: str) -> list[float]:
    """The answer's features in ANSWER_NAMES order."""
    lower = answer.lower()
    calc_n, calc_wrong, last_calc = _checks(_CALC.findall(answer), 1e-4)
    # Working often rounds to cents: an equation is wrong only beyond 1%.
    eq_n, eq_wrong, _ = _checks(_EQUATION.findall(answer), 0.011)
    finals = _FINAL.findall(answer)
    final = _number(finals[-1]) if finals else None
    prompt_numbers = {x.replace(",", "") for x in _NUMBER.findall(prompt)}
    answer_numbers = {x.replace(",", "") for x in _NUMBER.findall(answer)}
    used = len(prompt_numbers & answer_numbers) / len(prompt_numbers) if prompt_numbers else 1.0
    hedges = [float(h in lower) for h in HEDGES]
    return [
        math.log1p(calc_n), float(calc_wrong > 0), math.log1p(calc_wrong),
        math.log1p(eq_n), float(eq_wrong > 0), math.log1p(eq_wrong),
        float(final is None),
        float(final is not None and not final.is_integer()),
        float(final is not None and final < 0),
        math.log1p(min(abs(final), 1e12)) if final is not None else 0.0,
        float(final is not None and finals[-1].replace(",", "") in prompt_numbers),
        float(final is not None and last_calc is not None and abs(final - last_calc) < 1e-6),
        float(len(finals) > 1),
        used,
        math.log1p(len(prompt_numbers - answer_numbers)),
        math.log1p(len(answer)),
        math.log1p(answer.count("\n")),
        math.log1p(len(answer)) - math.log1p(len(prompt)),
        sum(hedges),
        *hedges,
        math.log1p(len(answer_numbers)),
    ]
