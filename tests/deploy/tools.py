"""The offline checkers of tests/deploy (kustomize, promtool), installed once per machine by deploy/tools/install.sh."""

import functools
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def tool(name: str) -> Path:
    """The tool's path, installing it first when this machine does not have it yet (`make bootstrap` does too)."""
    result = subprocess.run([str(ROOT / "deploy" / "tools" / "install.sh"), name], capture_output=True, text=True,
                            timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"deploy/tools/install.sh {name} failed:\n{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1]) / name
