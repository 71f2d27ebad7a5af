"""The command line reads like the typer/rich tools people know (docs/cli.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from _tiny import tiny_generator
from decrappify.cli import app
from decrappify.config.model import ModelInfo
from decrappify.models import build_generator, save_model

runner = CliRunner()
COMMANDS = ("crappify", "sample", "train", "info", "predict", "evaluate", "export", "demo")


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_shows_readable_metavars(command):
    result = runner.invoke(app, [*([command] if command else []), "--help"])
    assert result.exit_code == 0, result.output
    for unreadable in ("<bool>", "<int>", "<str>", "<path>", "list[", "{"):
        assert unreadable not in result.output, f"{unreadable} in decrappify {command} --help"
    if not command:
        assert "[default: 0]" not in result.output  # -v is a counter, shown bare


def test_help_names_arguments_and_value_types():
    predict = " ".join(runner.invoke(app, ["predict", "--help"]).output.split())
    assert "Usage: decrappify predict [OPTIONS] MODEL INPUTS..." in predict
    assert re.search(r"--format -f \[zarr\|tif\]", predict)
    assert re.search(r"--tile INT", predict) and re.search(r"--out -o PATH", predict)
    demo = " ".join(runner.invoke(app, ["demo", "--help"]).output.split())
    assert "--time-budget -t DURATION" in demo and "--kind -k [em|fluorescence]" in demo
    assert "--budget" not in demo  # the old spelling still works, hidden


def test_shell_completion_is_offered(monkeypatch):
    root = runner.invoke(app, ["--help"]).output
    assert "--install-completion" in root and "--show-completion" in root
    # typer's switch for naming the shell instead of detecting it from the parent process
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    script = runner.invoke(app, ["--show-completion", "bash"], prog_name="decrappify")
    assert script.exit_code == 0 and "complete" in script.output


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["sample", "--kind", "foo", "-o", "x.tif"],
            "error: --kind: 'foo' is not one of 'em', 'fluorescence' "
            "(see 'decrappify sample --help')",
        ),
        (
            ["predict", "model"],
            "error: missing argument INPUTS... (see 'decrappify predict --help')",
        ),
        (
            ["predict", "m", "x.tif", "-o", "o", "--tile", "many"],
            "error: --tile: expected an integer (see 'decrappify predict --help')",
        ),
        (["info"], "error: missing argument MODEL (see 'decrappify info --help')"),
        (["predict", "m", "x.tif", "--tiles", "3"], "error: no such option: --tiles"),
        (["-v", "2", "info", "m"], "error: no such command '2'"),
    ],
)
def test_usage_errors_are_one_line_on_stderr_with_status_2(args, line):
    result = runner.invoke(app, args, prog_name="decrappify")
    assert result.exit_code == 2
    assert result.stdout == ""
    text = result.stderr.strip()
    assert len(text.splitlines()) == 1, text
    assert text.startswith(line), text
    assert "Value error" not in text and "╭" not in text and "Usage:" not in text


def test_verbosity_is_a_counter(tmp_path):
    for flags in (["-v"], ["-vv"], ["--verbose", "--verbose"]):
        result = runner.invoke(app, [*flags, "info", str(tmp_path / "none")])
        assert result.exit_code == 1  # a missing model, not a usage error
        assert "model not found" in result.output


def test_evaluate_writes_its_json_report_with_report_and_still_takes_json(tmp_path):
    result = runner.invoke(app, ["evaluate", "--help"])
    assert "--report" in result.output and "--json" not in result.output
    both = runner.invoke(
        app, ["evaluate", "--pred", "p.tif", "--gt", "g.tif", "--json", "a", "--report", "b"]
    )
    assert both.exit_code == 2 and "--json is the old name of --report" in both.output


def test_piped_output_is_not_wrapped(tmp_path):
    """``decrappify info MODEL | less``: lines as long as they are, not cut at 80 columns."""
    cfg = tiny_generator(scale=2)
    model = save_model(
        tmp_path / "m.safetensors", build_generator(cfg, seed=0), ModelInfo(generator=cfg)
    )
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run(
        [sys.executable, "-m", "decrappify", "info", str(model)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    lines = proc.stdout.splitlines()
    network = [line for line in lines if line.strip().startswith("network:")]
    assert len(network) == 1 and len(network[0]) > 80  # one line, longer than a terminal
    assert "wide decoder (nf_factor 0.25, 1 conv/block), batch norm, blur off" in network[0]


def test_commands_without_a_network_do_not_import_torch(tmp_path):
    """``crappify``, ``evaluate``, ``info --help`` ... start in under a second: importing the
    API and the CLI does not import torch (it took 1.2-1.6 s of every command before)."""
    from decrappify.io import write_image

    write_image(np.zeros((64, 64), np.uint8), tmp_path / "a.tif")
    code = (
        "import sys\n"
        "from decrappify.cli import main\n"
        "sys.argv = ['decrappify', 'crappify', sys.argv[1], '--preset', 'em',\n"
        "            '-o', sys.argv[2], '-q']\n"
        "try:\n    main()\nexcept SystemExit as stop:\n    assert not stop.code, stop.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "a.tif"), str(tmp_path / "lr")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "lr" / "a.tif").is_file()
