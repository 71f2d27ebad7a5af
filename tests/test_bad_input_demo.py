"""``decrappify demo`` on bad options: refused before any work, nothing left behind."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["-o", "afile/demo"], "afile/demo: cannot create the demo folder", 1),
        (["-o", "afile"], "afile: already exists; pass --overwrite or choose another --out", 1),
        (["-o", "afile", "--overwrite"], "afile: is a file; --out names the demo's report", 1),
        (["-o", "d", "-t", "soon"], "--time-budget: expected seconds or a duration", 2),
        (["-o", "d", "-t", "20s"], "demo: --time-budget must leave at least 30 s for training", 1),
        (["-o", "d", "--kind", "rgb"], "--kind: 'rgb' is not one of 'em', 'fluorescence'", 2),
        (["-o", "d", "--set", "gan"], "--set: expected KEY=VALUE, e.g. gan.max_steps=0", 2),
        (["-o", "d", "--set", "foo.bar=1"], "override foo.bar: unknown setting 'foo'", 1),
        (["-o", "d", "--set", "data.patch_size=100"], "data.patch_size: must be a multiple", 1),
    ],
)
def test_demo_refuses_bad_options(bad, args, message, code):
    bad.path("afile").write_text("a file, not a folder")
    result = bad.run("demo", *args, "-q")
    bad.assert_clean_failure(result, message, code=code)
    assert sorted(p.name for p in bad.folder.iterdir()) == ["afile"]
    assert bad.path("afile").read_text() == "a file, not a folder"


def test_the_old_budget_option_still_works_with_a_deprecation_warning(bad):
    result = bad.run("demo", "-o", "d", "--budget", "20s", "-q")  # too short: refused early
    text = bad.assert_clean_failure(result, "demo: --time-budget must leave at least 30 s")
    assert "warning: --budget is deprecated and will be removed; use --time-budget" in text
    both = bad.run("demo", "-o", "d", "--budget", "20s", "-t", "1m", "-q")
    bad.assert_clean_failure(both, "--budget is the old name of --time-budget", code=2)


def test_a_cancelled_demo_leaves_no_half_made_report(tmp_path):
    from decrappify import api

    events = api.iter_demo(tmp_path / "demo")
    first = next(events)
    assert first.phase == "data" and (tmp_path / "demo").is_dir()
    events.close()  # Ctrl-C / Cancel
    assert list(tmp_path.iterdir()) == []
