"""What users outside the repository get: one version, citation and hub metadata that agree."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import tomllib
import yaml

import decrappify

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_has_one_source():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "decrappify.__version__"
    # the installed distribution and the citation say the same version
    assert metadata.version("decrappify") == decrappify.__version__
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["version"] == decrappify.__version__


def test_the_citation_names_the_software_and_its_methods():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software"
    assert (
        citation["license"]
        == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    )
    assert {r.get("doi") for r in citation["references"]} >= {"10.1038/s41592-021-01080-z"}


def test_the_napari_hub_listing_has_a_description_and_a_preview():
    description = (ROOT / ".napari-hub" / "DESCRIPTION.md").read_text()
    config = yaml.safe_load((ROOT / ".napari-hub" / "config.yml").read_text())
    assert config["visibility"] == "public" and config["project_urls"]
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", description)
    assert images and all((ROOT / ".napari-hub" / image).is_file() for image in images)
    summary = metadata.metadata("decrappify")["Summary"]
    assert summary and len(summary) < 160
