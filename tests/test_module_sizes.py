"""tools/module_sizes.py: the size check ``make lint`` runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load():
    spec = importlib.util.spec_from_file_location("module_sizes", ROOT / "tools/module_sizes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sizes_are_listed_and_a_large_module_fails(tmp_path, capsys):
    sizes = load()
    (tmp_path / "small.py").write_text("x = 1\n" * 10)
    (tmp_path / "big.py").write_text("x = 1\n" * 30)
    assert sizes.main([str(tmp_path), "--limit", "20"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split() == [
        "30",
        str(tmp_path / "big.py"),
        "<-",
        "over",
        "the",
        "limit",
    ]
    assert out.splitlines()[-1].split()[:2] == ["40", "total"]
    assert err.strip() == f"error: 1 module(s) over 20 lines: {tmp_path / 'big.py'} (30)"
    assert sizes.main([str(tmp_path), "--limit", "30"]) == 0


def test_no_module_of_the_package_is_over_the_limit(capsys):
    assert load().main([str(ROOT / "src")]) == 0, capsys.readouterr().err
