"""LiteLLM's proxy in its own virtual environment (bench/.venv-litellm), for the side-by-side runs.

LiteLLM must not share the project's venv: its dependency tree is large and
pins versions of libraries we use. `ensure()` creates the venv once and
installs ``litellm[proxy]`` at the version the issue names (1.109.*). Some
registry snapshots carry 1.106-1.109 wheels whose metadata demand a `certifi`
release that does not exist there; in that case we install the same wheel
with `--no-deps` and then its declared requirements (base + `proxy` extra)
with that one impossible floor relaxed, and say so in the report.
"""

from __future__ import annotations

import re
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-litellm"
VERSIONS = ("1.109.1", "1.109.0", "1.108.11")

# Run inside the LiteLLM venv: print the wheel's requirements for the base and `proxy` extra, one a line.
_LIST_REQUIREMENTS = r"""
import sys
from importlib.metadata import distribution
from pip._vendor.packaging.requirements import Requirement
for line in distribution("litellm").requires or ():
    req = Requirement(line)
    if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in ("", "proxy")):
        continue
    print(str(req).split(";")[0].replace(" ", ""))
"""


def python() -> Path:
    return VENV / "bin" / "python"


MARKER = VENV / "bench-installed.txt"


def installed_version() -> str | None:
    if not python().exists():
        return None
    if MARKER.exists() and (VENV / "bin" / "litellm").exists():
        return MARKER.read_text().strip() or None  # checked once after installing: importing LiteLLM takes seconds
    out = subprocess.run([str(python()), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return None
    ok = subprocess.run([str(python()), "-c", "import litellm.proxy.proxy_server"], capture_output=True)
    if ok.returncode != 0:
        return None
    MARKER.write_text(out.stdout.strip())
    return out.stdout.strip()


def ensure(log=print) -> tuple[str, str]:
    """Make sure LiteLLM's proxy is installed; returns (version, how it was installed)."""
    version = installed_version()
    if version:
        return version, "cached venv"
    if not python().exists():
        log(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(python()), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    log("installing litellm[proxy]==1.109.* (a few minutes the first time)")
    if subprocess.run(pip + ["litellm[proxy]==1.109.*"], capture_output=True).returncode == 0:
        return installed_version() or "?", "pip install litellm[proxy]==1.109.*"
    for v in VERSIONS:
        if subprocess.run(pip + ["--no-deps", f"litellm=={v}"], capture_output=True).returncode != 0:
            continue
        reqs = subprocess.run([str(python()), "-c", _LIST_REQUIREMENTS], capture_output=True, text=True, check=True)
        requirements = reqs.stdout.split()
        relaxed: list[str] = []
        for _ in range(12):  # relax, one by one, pins on releases the registry does not have
            res = subprocess.run(pip + requirements, capture_output=True, text=True)
            if res.returncode == 0:
                break
            missing = re.search(r"No matching distribution found for ([A-Za-z0-9_.\-\[\]]+)", res.stderr)
            if missing is None:
                raise RuntimeError(f"installing LiteLLM's requirements failed:\n{res.stderr[-2000:]}")
            name = re.split(r"[<>=!~\[]", missing.group(1))[0].lower().replace("_", "-")
            requirements = [r if re.split(r"[<>=!~\[]", r)[0].lower().replace("_", "-") != name
                            else re.split(r"[<>=!~]", r)[0] for r in requirements]
            relaxed.append(name)
        if installed_version():
            note = f" (version floor relaxed for {', '.join(relaxed)}: not in the registry)" if relaxed else ""
            return v, "litellm wheel --no-deps + its declared requirements" + note
    raise RuntimeError("could not install litellm[proxy] 1.109 or a close version")


if __name__ == "__main__":
    print(ensure())
    sys.exit(0)
