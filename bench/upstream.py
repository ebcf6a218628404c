"""The instant upstream: nginx (Debian's package) answering every chat request with a canned OpenAI body.

nginx in C answers in tens of microseconds, so whatever a run through a
gateway adds over the direct run is the gateway's own cost. Streams need
pacing (a first token after a delay, then tokens over seconds) which nginx
cannot do, so they use the project's mock upstream instead (see run.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import orjson

COMPLETION = {
    "id": "chatcmpl-bench0000000000000000000000", "object": "chat.completion", "created": 1735689600,
    "model": "bench-model", "system_fingerprint": "fp_bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help you today?",
                                         "refusal": None},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
}

REQUEST = {"model": "bench-model", "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                                 {"role": "user", "content": "Say hello in one short sentence."}],
           "max_tokens": 32, "temperature": 0}

MODELS = {"object": "list", "data": [{"id": "bench-model", "object": "model", "created": 1735689600, "owned_by": "bench"}]}


def _nginx_string(obj: object) -> str:
    text = orjson.dumps(obj).decode()
    assert "'" not in text and "\\" not in text
    return text


def ensure_binaries(log=print) -> None:
    """nginx and wrk from Debian; installed with apt-get when missing."""
    missing = [pkg for binary, pkg in (("nginx", "nginx-light"), ("wrk", "wrk"))
               if shutil.which(binary) is None and not os.path.exists(f"/usr/sbin/{binary}")]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"bench needs {' '.join(missing)}: run `sudo apt-get install -y {' '.join(missing)}`")
    log(f"installing {' '.join(missing)} with apt-get")
    subprocess.run(["apt-get", "update", "-qq"], check=False, stdout=subprocess.DEVNULL)
    res = subprocess.run(["apt-get", "install", "-y", "-qq", *missing], stdout=subprocess.DEVNULL)
    if res.returncode != 0 and "nginx-light" in missing:  # newer Debian folds nginx-light into nginx
        missing = ["nginx" if p == "nginx-light" else p for p in missing]
        res = subprocess.run(["apt-get", "install", "-y", "-qq", *missing], stdout=subprocess.DEVNULL)
    if res.returncode != 0:
        raise SystemExit(f"apt-get install {' '.join(missing)} failed")


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


class Nginx:
    """One nginx worker on loopback serving the canned answers; stopped with `stop()`."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.proc: subprocess.Popen | None = None

    def config(self) -> str:
        d = self.workdir
        user = "user root root;\n" if os.geteuid() == 0 else ""
        temp = "\n".join(f"  {name}_temp_path {d}/{name};" for name in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        return f"""{user}worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
  access_log off;
{temp}
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_max_body_size 10m;
  server {{
    listen 127.0.0.1:{self.port} backlog=4096 reuseport;
    location = /v1/chat/completions {{ default_type application/json; return 200 '{_nginx_string(COMPLETION)}'; }}
    location = /chat/completions {{ default_type application/json; return 200 '{_nginx_string(COMPLETION)}'; }}
    location = /v1/models {{ default_type application/json; return 200 '{_nginx_string(MODELS)}'; }}
    location / {{ default_type text/plain; return 200 'ok'; }}
  }}
}}
"""

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(self.config())
        self.proc = subprocess.Popen([nginx_binary(), "-c", str(conf), "-p", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.workdir / "nginx-stderr.log", "w"))
        from bench.procs import wait_http

        wait_http(f"http://127.0.0.1:{self.port}/health", 10, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # nginx: SIGTERM = fast shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        time.sleep(0)
