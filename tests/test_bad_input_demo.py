"""``decrappify demo`` on bad options: refused before any work, nothing left behind."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "afile/demo"], "afile/demo: cannot create the demo folder"),
        (["-o", "afile"], "afile: already exists; pass --overwrite or choose another --out"),
        (["-o", "afile", "--overwrite"], "afile: is a file; --out names the demo's report folder"),
        (["-o", "d", "--budget", "soon"], "--budget: expected seconds or a duration"),
        (["-o", "d", "--budget", "20s"], "demo: --budget must leave at least 30 s for training"),
        (["-o", "d", "--kind", "rgb"], "--kind: expected em or fluorescence (got 'rgb')"),
        (["-o", "d", "--set", "gan"], "--set: expected KEY=VALUE, e.g. gan.max_steps=0"),
        (["-o", "d", "--set", "foo.bar=1"], "override foo.bar: unknown setting 'foo'"),
        (["-o", "d", "--set", "data.patch_size=100"], "data.patch_size: must be a multiple of 32"),
    ],
)
def test_demo_refuses_bad_options(bad, args, message):
    bad.path("afile").write_text("a file, not a folder")
    result = bad.run("demo", *args, "-q")
    bad.assert_clean_failure(result, message)
    assert sorted(p.name for p in bad.folder.iterdir()) == ["afile"]
    assert bad.path("afile").read_text() == "a file, not a folder"


def test_a_cancelled_demo_leaves_no_half_made_report(tmp_path):
    from decrappify import api

    events = api.iter_demo(tmp_path / "demo")
    first = next(events)
    assert first.phase == "data" and (tmp_path / "demo").is_dir()
    events.close()  # Ctrl-C / Cancel
    assert list(tmp_path.iterdir()) == []
