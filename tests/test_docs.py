"""The README and the experiment log name files and settings that exist: a renamed script or
config key breaks this test, not a user's copy-pasted command."""

import dataclasses
import re
from pathlib import Path

import pytest

from pipeline.config import PipelineConfig
from pipeline.config.checks import leaf_fields

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/experiments.md")
PATH = re.compile(
    r"(?<![\w./-])((?:benchmarks|configs|scripts|docs|pipeline|dags|tests)/[\w./-]*"
    r"\.(?:py|yaml|sh|md))"
)
SECTIONS = tuple(f.name for f in dataclasses.fields(PipelineConfig))
# `section.key` or `section.sub.key`, optionally followed by `: value` or `=value`
SETTING = re.compile(r"`(" + "|".join(SECTIONS) + r")\.([a-z_]+(?:\.[a-z_]+)*)(?:[:=][^`]*)?`")


@pytest.mark.parametrize("doc", DOCS)
def test_every_file_a_doc_names_exists(doc):
    named = set(PATH.findall((REPO / doc).read_text()))
    assert len(named) >= 5, f"{doc}: expected it to name the project's scripts, found {named}"
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert not missing, f"{doc} names files that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_setting_a_doc_names_is_in_the_config_schema(doc):
    leaves = [key for key, _, _ in leaf_fields(PipelineConfig())]
    known = set(leaves) | {key.rsplit(".", i)[0] for key in leaves for i in range(1, 3)}
    named = {f"{section}.{key}" for section, key in SETTING.findall((REPO / doc).read_text())}
    assert len(named) >= 3, f"{doc}: expected it to name config settings, found {named}"
    unknown = sorted(named - known)
    assert not unknown, f"{doc} names settings the config does not have: {unknown}"
