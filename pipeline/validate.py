"""Validate stage: data checks that gate a run before any preprocessing or training.

Checks run over the dataset manifest: every listed file exists and reads, image and label shapes
agree with the manifest, labelled fields have the target labels, enough labelled fields exist,
and train/val/test are non-empty and disjoint. A failed critical check raises
`ValidationFailed` listing each failure with the offending fields and observed vs expected value.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.ingest import load_manifest
from pipeline.io import DataError, read_tif, write_json

log = logging.getLogger(__name__)


class ValidationFailed(DataError):
    """A critical data check failed; the message lists every failure."""


@dataclass
class Check:
    name: str
    passed: bool
    critical: bool
    observed: str
    expected: str
    offending: list[str] = field(default_factory=list)


@dataclass
class ValidationResult:
    dataset_id: str
    passed: bool
    checks: list[Check]
    result_json: str

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed and c.critical]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if not c.passed and not c.critical]

    def summary(self) -> dict:
        return {"dataset_id": self.dataset_id, "passed": self.passed,
                "n_checks": len(self.checks), "failures": [c.name for c in self.failures],
                "warnings": [c.name for c in self.warnings], "result_json": self.result_json}


def run_checks(dataset_uri: str, cfg: PipelineConfig) -> tuple[str, list[Check]]:
    manifest, meta = load_manifest(dataset_uri)
    root, target, v = Path(dataset_uri), cfg.data.target, cfg.validate
    unreadable, bad_shape = [], []
    for row in manifest.itertuples():
        for col in ("image_path", "cells_path", "nuclei_path"):
            rel = getattr(row, col)
            if not rel:
                continue
            try:
                arr = read_tif(root / rel)
            except DataError:
                unreadable.append(f"{row.field_id}:{rel}")
                continue
            if arr.shape[-2:] != (row.height, row.width):
                bad_shape.append(f"{row.field_id}:{rel} {arr.shape} vs ({row.height}, {row.width})")
    labelled = manifest[manifest["labelled"].astype(bool)]
    no_target = labelled[labelled[f"{target}_path"] == ""]["field_id"].tolist()
    splits = {s: set(manifest[manifest["split"] == s]["field_id"]) for s in ("train", "val", "test")}
    empty = [s for s, ids in splits.items() if not ids]
    overlap = sorted((splits["train"] & splits["val"]) | (splits["train"] & splits["test"])
                     | (splits["val"] & splits["test"]))
    checks = [
        Check("files_readable", not unreadable, True, f"{len(unreadable)} unreadable", "0", unreadable),
        Check("shapes_match_manifest", not bad_shape, True, f"{len(bad_shape)} mismatched", "0", bad_shape),
        Check(f"labelled_fields_have_{target}", not no_target, True,
              f"{len(no_target)} labelled fields without {target}", "0", no_target),
        Check("enough_labelled_fields", len(labelled) >= v.min_labelled_fields, True,
              str(len(labelled)), f">= {v.min_labelled_fields}"),
        Check("splits_non_empty", not empty, True, f"empty: {empty}", "train, val, test non-empty", empty),
        Check("splits_disjoint", not overlap, True, f"{len(overlap)} shared fields", "0", overlap),
    ]
    return meta["dataset_id"], checks


def validate(dataset_uri: str, cfg: PipelineConfig, run_dir: str) -> ValidationResult:
    """Run the checks, write ``<run_dir>/validate/result.json``; raise if a critical one fails."""
    dataset_id, checks = run_checks(dataset_uri, cfg)
    out = Path(run_dir) / "validate" / "result.json"
    result = ValidationResult(dataset_id, all(c.passed for c in checks if c.critical), checks, str(out))
    write_json(out, {"summary": result.summary(), "checks": [asdict(c) for c in checks]})
    for c in result.warnings:
        log.warning("data warning %s: observed %s, expected %s", c.name, c.observed, c.expected)
    if not result.passed:
        lines = [f"- {c.name}: observed {c.observed}, expected {c.expected}; offending: "
                 f"{', '.join(c.offending[:10]) or '-'}" for c in result.failures]
        raise ValidationFailed(f"dataset {dataset_id} failed {len(lines)} critical check(s) "
                               f"(details in {out}):\n" + "\n".join(lines))
    log.info("dataset %s passed %d checks", dataset_id, len(checks))
    return result
