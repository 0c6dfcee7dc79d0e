"""The README and docs/ say what the code does: every config key documented, the README's config loading,
and every link landing on a file that exists."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from retrain.config import SECTIONS, parse_config

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_config_key_is_in_the_configuration_reference() -> None:
    reference = (ROOT / "docs" / "configuration.md").read_text()
    keys = [
        f"{section}.{f.name}"
        for section, spec in SECTIONS.items()
        for f in dataclasses.fields(spec)
        if not f.metadata.get("internal")
    ]
    undocumented = [key for key in keys if f"`{key}`" not in reference]
    assert not undocumented, f"docs/configuration.md does not document {undocumented}"


def test_the_readmes_config_loads(tmp_path: Path) -> None:
    (block,) = re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    config = parse_config(tomllib.loads(block), source="README.md", base=tmp_path)
    assert config.model.name == "churn" and config.data.label_delay_months == 1


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_lands_on_a_file(page: Path) -> None:
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text())
    relative = [link for link in links if "://" not in link and not link.startswith("mailto:")]
    missing = [link for link in relative if not (page.parent / link).exists()]
    assert not missing, f"{page.name} links to {missing}"
