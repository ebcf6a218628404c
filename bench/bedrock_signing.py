"""How long botocore's SigV4 signing of a Bedrock request takes (it runs inline on the event loop).

    .venv/bin/python bench/bedrock_signing.py

Budget: well under 0.3 ms per request for ordinary bodies; bodies over 64 KiB
have their SHA-256 computed in a thread first, so only the fixed cost remains.
"""

from __future__ import annotations

import hashlib
import time

from switchboard.config import Deployment, Secret
from switchboard.http.client import HttpClient
from switchboard.providers.bedrock import BedrockProvider


def main() -> None:
    provider = BedrockProvider(HttpClient())
    dep = Deployment(id="d", model_name="m", provider="bedrock", upstream_model="anthropic.claude-3-haiku-20240307-v1:0",
                     base_url="", options={"aws_access_key_id": Secret("AKIAEXAMPLE", "bench"),
                                           "aws_secret_access_key": Secret("secret", "bench"), "region": "us-east-1"})
    url = provider.url(dep, "converse")
    for size in (200, 2_000, 20_000, 200_000):
        body = b"x" * size
        digest = hashlib.sha256(body).hexdigest() if size > 64 * 1024 else None
        provider.headers(dep, url, body, "application/json", digest)
        n = 2000
        start = time.perf_counter()
        for _ in range(n):
            provider.headers(dep, url, body, "application/json", digest)
        print(f"body {size:>7} B: {(time.perf_counter() - start) / n * 1e6:7.1f} us per signature")


if __name__ == "__main__":
    main()
