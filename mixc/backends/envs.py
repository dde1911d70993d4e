"""Environments of their own for backends whose pins cannot share mixc's (whisperx pins torch 2.8,
vllm its own torch, kokoro its G2P stack): stage workers run in them and talk to mixc through files
or pipes.

`worker_python(name, packages, env_var)` is the python of such an environment: `$env_var` when the
user set it (an environment they built); else `$MIXC_ENVS/<name>` (default ~/.cache/mixc/envs),
created on first use with uv. It is built in a temporary folder and renamed into place, so a failed
or concurrent build never leaves a half environment that looks usable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mixc.errors import WorkerError

ENVS_ENV = "MIXC_ENVS"  # where worker environments are created (default ~/.cache/mixc/envs)


def envs_root() -> Path:
    return Path(os.environ.get(ENVS_ENV) or Path.home() / ".cache" / "mixc" / "envs")


def uv() -> list[str]:
    """How to run uv: the `uv` on PATH, else the one installed in this python."""
    return [found] if (found := shutil.which("uv")) else [sys.executable, "-m", "uv"]


def worker_python(name: str, packages: tuple[str, ...], env_var: str) -> str:
    """The python of the worker environment `name` holding `packages` (see the module docstring)."""
    if given := os.environ.get(env_var):
        return given
    target = envs_root() / name
    python = target / "bin" / "python"
    if python.exists():
        return str(python)
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f"{target.name}.building-", dir=target.parent))
    print(f"mixc: creating the {name} worker environment in {target} (uv; several GB) ...", file=sys.stderr)
    py_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        # --no-config: a project's [tool.uv] overrides (mixc's own torch pin) must not leak in
        subprocess.run([*uv(), "venv", "--no-config", "--quiet", "--allow-existing", "--relocatable",
                        "--python", py_version, str(building)], check=True, cwd=target.parent)
        subprocess.run([*uv(), "pip", "install", "--no-config", "--quiet", "--python",
                        str(building / "bin" / "python"), *packages], check=True, cwd=target.parent)
        building.rename(target)
    except subprocess.CalledProcessError as err:
        raise WorkerError(f"could not create the {name} environment ({err})",
                          f"create one yourself (`uv venv ENV && uv pip install --python ENV/bin/python "
                          f"{' '.join(repr(p) for p in packages)}`) and set {env_var} to its python") from err
    except OSError:  # another process renamed its environment into place first: use that one
        if not python.exists():
            raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return str(python)
