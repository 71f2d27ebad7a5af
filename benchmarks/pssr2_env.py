"""PSSR2 2.4.0 beside decrappify, for side-by-side benchmarks: its venv, weights and timm stub.

PSSR2 (``pip install pssr``) cannot share a venv with decrappify (it pins numpy<2 and
magicgui<=0.8.2), so it gets its own, made once (:func:`ensure_pssr2`, ``pip install
torch==2.13.0 pssr==2.4.0``; torch named so that pip takes the CPU build on disk). PSSR2
ships no trained weights: its default ``ResUNet`` (60 M parameters, 4x, 1 channel) is
saved once with random weights, seed 0 (:func:`pssr2_setup`; weights do not change the
cost of a forward pass). pssr imports timm (for its SwinIR and RDNet models) and timm
imports torchvision, whose wheel does not load beside torch 2.13.0+cpu (``operator
torchvision::nms does not exist``): :func:`write_timm_stub` writes a stand-in ``timm``
whose names raise if called, to put first on ``PYTHONPATH`` (ResUNet uses none of them).
The code that runs inside PSSR2's venv is ``_pssr2_run.py``.

Usage: python benchmarks/pssr2_env.py [--venv /tmp/pssr2-venv]  (make it, print versions)
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

#: What PSSR2's venv holds.
REQUIREMENTS = ["torch==2.13.0", "pssr==2.4.0"]
#: Written in the venv once its install finished.
STAMP = "decrappify-pssr2.json"
#: Its ResUNet with random weights (seed 0), saved in the venv.
WEIGHTS = "resunet_x4_seed0.pth"
#: The script run by PSSR2's Python.
RUNNER = str(Path(__file__).resolve().with_name("_pssr2_run.py"))
#: The stand-in timm package (file name -> source).
TIMM_STUB = {
    "__init__.py": (
        '"""Stand-in for timm, put first on PYTHONPATH by decrappify\'s benchmarks: pssr\n'
        "imports it for SwinIR/RDNet only, and the real one imports torchvision, which\n"
        'does not load beside torch 2.13.0+cpu."""\n'
    ),
    "layers.py": (
        "def _missing(*args, **kwargs):\n"
        '    raise ImportError("timm is stubbed out by decrappify\'s benchmarks (ResUNet only)")\n'
        "\n\n"
        "DropPath = LayerNorm2d = EffectiveSEModule = to_2tuple = trunc_normal_ = _missing\n"
    ),
    "models.py": "from timm.layers import _missing as named_apply  # noqa: F401\n",
}


def ensure_pssr2(venv: Path, log: Path) -> Path:
    """PSSR2's venv (made once), and its Python; pip's output goes to ``log``."""
    python = venv / "bin" / "python"
    stamp = venv / STAMP
    if stamp.is_file() and python.exists():
        if json.loads(stamp.read_text()).get("requirements") == REQUIREMENTS:
            return python
    if venv.exists():
        if not (venv / "pyvenv.cfg").is_file():
            sys.exit(f"--pssr2-venv {venv}: exists and is not a virtual environment")
        shutil.rmtree(venv)
    print(f"installing PSSR2 into {venv} (once): pip install {' '.join(REQUIREMENTS)}")
    print(f"  (pip's output: {log})", flush=True)
    with log.open("ab") as sink:
        for cmd in (
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", *REQUIREMENTS],
        ):
            sink.write(f"$ {shlex.join(cmd)}\n".encode())
            sink.flush()
            if subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT).returncode != 0:
                sys.exit(f"installing PSSR2 failed: {shlex.join(cmd)}; see {log}")
    stamp.write_text(json.dumps({"requirements": REQUIREMENTS}) + "\n")
    return python


def write_timm_stub(folder: Path) -> Path:
    """Write the stand-in ``timm`` package into ``folder`` (for ``PYTHONPATH``)."""
    package = folder / "timm"
    package.mkdir(parents=True, exist_ok=True)
    for name, text in TIMM_STUB.items():
        (package / name).write_text(text)
    return folder


def pssr2_setup(venv: Path, env: dict[str, str]) -> tuple[Path, dict[str, Any]]:
    """Random ResUNet weights (cached in the venv) and the versions and threads seen there."""
    python = venv / "bin" / "python"
    weights = venv / WEIGHTS
    if not weights.is_file():
        cmd = [str(python), RUNNER, "weights", str(weights)]
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            sys.exit(f"could not make PSSR2's ResUNet: {shlex.join(cmd)}")
    probe = (
        "import json, torch; from importlib import metadata as m; from pssr.models import ResUNet;"
        "print(json.dumps({'pssr': m.version('pssr'), 'torch': torch.__version__,"
        "'numpy': m.version('numpy'), 'torch_threads': torch.get_num_threads(),"
        "'parameters_m': round(sum(p.numel() for p in ResUNet().parameters()) / 1e6, 1)}))"
    )
    proc = subprocess.run([str(python), "-c", probe], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"pssr does not import in {venv}:\n{proc.stderr[-2000:]}")
    return weights, json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path("/tmp/pssr2-venv"))
    args = parser.parse_args()
    venv = args.venv.resolve()
    python = ensure_pssr2(venv, venv.with_name(venv.name + "-install.log"))
    stubs = write_timm_stub(venv / "decrappify-stubs")
    env = {**dict(__import__("os").environ), "PYTHONPATH": str(stubs)}
    weights, info = pssr2_setup(venv, env)
    print(f"PSSR2 in {venv}: {python}; ResUNet weights {weights}; {json.dumps(info)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
