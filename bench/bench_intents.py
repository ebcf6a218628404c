"""Intent matching: how often a paraphrase reaches the right route, lexical half vs semantic half vs both.

Run: .venv/bin/python bench/bench_intents.py

The set below was written before any embedding was measured on it: eight routes with the
examples an operator would configure, six other phrasings of each need that the examples do
not contain, and twenty prompts that belong to no route. Printed per embedding:

* top-1: share of the 48 paraphrases whose closest route is the right one;
* AUC: how well the best similarity separates the paraphrases from the no-route prompts;
* acc@best: share of all 68 decisions (a route, or none) right at the threshold that is best
  for that embedding, and that threshold;

and the median time of one `match()` over the eight routes for a short and a ~500-token message.
"""

from __future__ import annotations

import time

import numpy as np

from switchboard.routing.intents import IntentRoute, embed, lexical, match, semantic

ROUTES = {
    "code": ["write a python function that", "fix this bug in my code", "refactor this class",
             "why does this javascript throw an exception"],
    "translate": ["translate this into French", "how do you say this in Spanish",
                  "translate the following paragraph to German", "what is the English for this Japanese phrase"],
    "summarize": ["summarize this article", "give me a short summary of the text below",
                  "tl;dr of this email thread", "condense this report into bullet points"],
    "sql": ["write a SQL query that", "select all rows from the orders table where",
            "optimize this postgres query", "join these two tables on customer id"],
    "math": ["solve this equation", "what is the derivative of", "compute the integral",
             "prove that the square root of two is irrational"],
    "support": ["I want a refund for my order", "my package has not arrived",
                "how do I cancel my subscription", "I was charged twice on my card"],
    "poetry": ["write a poem about the sea", "compose a haiku about autumn", "write song lyrics about love",
               "a sonnet about lost friendship"],
    "legal": ["is this contract clause enforceable", "what are my rights as a tenant",
              "explain the liability in this agreement", "can my employer fire me for this"],
}
TESTS = {
    "code": ["implement quicksort in rust", "my program crashes with a segmentation fault, can you help",
             "create a typescript helper that debounces calls", "this loop never terminates, what's wrong with it",
             "add unit tests for this module", "convert this script from python 2 to python 3"],
    "translate": ["render this sentence in Italian", "what's 'good morning' in Portuguese",
                  "put this letter into Chinese for me", "can you give me the Korean version of this menu",
                  "I need this text in Dutch", "how would a Russian speaker say thank you"],
    "summarize": ["boil this down to three sentences", "what are the key points of this document",
                  "give me the gist of this meeting transcript", "shorten this blog post to a paragraph",
                  "recap the main arguments of this paper", "brief overview of the attached memo please"],
    "sql": ["get the ten customers with the highest revenue from the sales database",
            "count users grouped by country in mysql", "my query with a left join returns duplicates",
            "create an index to speed up this lookup", "delete duplicate records from a table",
            "write a query for the average salary per department"],
    "math": ["find x if 3x + 5 = 20", "differentiate sin(x) * x^2", "evaluate the limit as n goes to infinity",
             "is 1001 a prime number", "calculate the area under the curve y = x^2 from 0 to 3",
             "show that there are infinitely many primes"],
    "support": ["the item I received is broken", "where is my delivery", "please stop billing me",
                "I'd like my money back", "my account was locked and I can't log in",
                "the order shows delivered but I never got it"],
    "poetry": ["write verses about the moon", "a limerick about a cat", "rhyming stanza about springtime",
               "compose a ballad about a sailor", "write me a short poem for my mother's birthday",
               "free verse about city nights"],
    "legal": ["can my landlord keep my security deposit", "is a verbal agreement binding",
              "what happens if I break my lease early", "do I need a lawyer to write a will",
              "is it legal to record a phone call without consent", "my boss hasn't paid my overtime, what can I do"],
}
NONE = ["what's the weather like today", "tell me a joke", "who won the world cup in 2018",
        "recommend a good book about history", "how do I bake sourdough bread", "what is the capital of Australia",
        "give me tips for a job interview", "how far is the moon from earth", "suggest a name for my dog",
        "what should I cook for dinner tonight", "explain how vaccines work", "plan a three day trip to Rome",
        "how many hours of sleep do adults need", "describe the plot of Hamlet",
        "what are good exercises for back pain",
        "who painted the Mona Lisa", "how does a car engine work", "best way to learn to play guitar",
        "what causes the northern lights", "help me write a birthday card message"]


def evaluate(name: str, embedder) -> None:
    routes = {r: np.stack([embedder(e) for e in examples]) for r, examples in ROUTES.items()}

    def best(text: str) -> tuple[float, str]:
        v = embedder(text)
        return max((float(np.max(m @ v)), r) for r, m in routes.items())

    tests = [(best(t), r) for r, texts in TESTS.items() for t in texts]
    nones = [best(t)[0] for t in NONE]
    top1 = np.mean([route == r for (_, route), r in tests])
    pos = np.array([s for (s, _), _ in tests])
    neg = np.array(nones)
    auc = np.mean([(x > y) + 0.5 * (x == y) for x in pos for y in neg])
    accuracy, threshold = max(
        ((sum(s >= t and route == r for (s, route), r in tests) + sum(n < t for n in nones))
         / (len(tests) + len(nones)), t) for t in np.concatenate([pos, neg]))
    print(f"{name:<10} top-1 {top1:.3f}   AUC {auc:.3f}   acc@best {accuracy:.3f} (threshold {threshold:.3f})")


def latency_ms(text: str, n: int = 300) -> float:
    routes = [IntentRoute(r, "m", examples) for r, examples in ROUTES.items()]
    for route in routes:
        route.prepare()
    match(routes, text)
    times = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        match(routes, text)
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times)) / 1e6


def main() -> None:
    print(f"{sum(map(len, TESTS.values()))} paraphrases of {len(ROUTES)} routes, {len(NONE)} prompts of no route")
    evaluate("lexical", lexical)
    evaluate("semantic", semantic)
    evaluate("both", embed)
    long_text = " ".join(NONE) * 4  # ~500 tokens
    print(f"match() over {len(ROUTES)} routes: p50 {latency_ms(TESTS['code'][0]):.3f} ms (short), "
          f"{latency_ms(long_text):.3f} ms ({len(long_text)} chars)")


if __name__ == "__main__":
    main()
