"""Validate stage: Great Expectations data checks that gate a run before any preprocessing.

The suite (`pipeline.validate.suite`, thresholds from `ValidateConfig`) runs over three tables
built from the dataset version (`pipeline.validate.tables`): the manifest, per-field statistics
computed by reading every file once, and per-object sizes. Each check is a named GX expectation,
critical or a warning. Written to the output folder (a run's ``validate/`` folder):

- ``result.json``: summary, one record per check, and GX's validation results as JSON;
- ``data_docs/index.html``: GX Data Docs (suites and validation results, static HTML).

A failed critical check raises `ValidationFailed`, one line per failed expectation with the
offending fields / files and observed vs expected values. Failed warnings are logged and listed.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pipeline.atomic import atomic_path
from pipeline.config import PipelineConfig
from pipeline.errors import ConfigError, DataError
from pipeline.ingest.layouts import LAYOUTS
from pipeline.ingest.manifest import is_labels_only, load_manifest
from pipeline.jsonio import write_json

log = logging.getLogger(__name__)

MAX_OFFENDING = 10  # offending rows named per check in messages (result.json has them all)


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
    expectation: str = ""  # GX expectation type and column, e.g. expect_column_values_to_be_unique
    table: str = ""  # manifest | fields | objects

    def line(self) -> str:
        """One line: name, expectation, observed vs expected, the first offending rows."""
        more = len(self.offending) - MAX_OFFENDING
        shown = ", ".join(self.offending[:MAX_OFFENDING]) + (f" (+{more} more)" if more > 0 else "")
        return (
            f"- {self.name} [{self.expectation}]: observed {self.observed}; expected "
            f"{self.expected}; offending: {shown or '-'}"
        )


@dataclass
class ValidationResult:
    dataset_id: str
    passed: bool
    checks: list[Check]
    result_json: str
    data_docs: str = ""
    skipped_files: list[str] = field(default_factory=list)  # unreadable raw files ingest skipped

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed and c.critical]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if not c.passed and not c.critical]

    def summary(self) -> dict:
        return {
            "dataset_id": self.dataset_id,
            "passed": self.passed,
            "n_checks": len(self.checks),
            "failures": [c.name for c in self.failures],
            "warnings": [c.name for c in self.warnings],
            "result_json": self.result_json,
            "data_docs": self.data_docs,
            "n_skipped_files": len(self.skipped_files),
            "skipped_files": self.skipped_files[:20],
        }


def _checks_from_gx(gx_results: list[dict], specs: list) -> list[Check]:
    """One Check per suite check (in suite order) from GX's validation results."""
    from pipeline.validate.gx import summarize

    by_name = {c.name: c for c in specs}
    results = []
    for suite in gx_results:
        for res in suite["results"]:
            spec = by_name[res["expectation_config"]["meta"]["name"]]
            summary = summarize(res, spec.file_column)
            results.append(Check(spec.name, critical=spec.critical, table=spec.table, **summary))
    order = {c.name: i for i, c in enumerate(specs)}
    return sorted(results, key=lambda c: order[c.name])


def run_suite(dataset_uri: str, cfg: PipelineConfig, out_dir: Path) -> ValidationResult:
    """Build the tables, run the suite, write result.json and Data Docs into `out_dir`."""
    from pipeline.validate.gx import quiet_gx, run_suites
    from pipeline.validate.suite import build_checks, build_suites
    from pipeline.validate.tables import build_tables

    manifest, meta = load_manifest(dataset_uri)
    layout, target = meta.get("layout", cfg.data.layout), cfg.data.target
    if layout in LAYOUTS:
        LAYOUTS[layout].check_target(target)
    known = LAYOUTS[layout].channels if layout in LAYOUTS else ()
    channels = [str(c) for c in meta.get("channels") or known]
    v = cfg.validate
    # A ground-truth-only dataset (e.g. the BBBC020 nuclei archive alone) is valid for scoring
    # predictions; missing images are then a warning, and preprocess refuses to train on it.
    labels_only = is_labels_only(manifest)
    if labels_only and not any(s.startswith("fields_have_images=") for s in v.severity):
        v = replace(v, severity=[*v.severity, "fields_have_images=warning"])
    checks = build_checks(v, layout, channels)
    tables = build_tables(dataset_uri, manifest, channels, target)
    out_dir.mkdir(parents=True, exist_ok=True)
    with quiet_gx(), atomic_path(out_dir / "data_docs") as docs:
        gx_results = run_suites(tables.as_dict(), build_suites(checks), docs)
    results = _checks_from_gx(gx_results, checks)
    passed = not any(c.critical and not c.passed for c in results)
    out = out_dir / "result.json"
    result = ValidationResult(
        str(meta.get("dataset_id", Path(dataset_uri).name)),
        passed,
        results,
        str(out),
        str(out_dir / "data_docs" / "index.html"),
        list(meta.get("skipped_files", [])),
    )
    write_json(
        out,
        {
            "summary": result.summary(),
            "dataset_uri": str(dataset_uri),
            "layout": layout,
            "target": target,
            "labels_only": labels_only,
            "channels": channels,
            "skipped_files": meta.get("skipped_files", []),
            "checks": [asdict(c) for c in results],
            "gx_validation_results": gx_results,
        },
    )
    return result


def _gate(result: ValidationResult, raise_on_failure: bool) -> ValidationResult:
    for c in result.warnings:
        log.warning("data warning %s", c.line()[2:])
    if not result.passed:
        lines = [c.line() for c in result.failures]
        message = (
            f"dataset {result.dataset_id} failed {len(lines)} critical data check(s) "
            f"(result: {result.result_json}; data docs: {result.data_docs}):\n" + "\n".join(lines)
        )
        if raise_on_failure:
            raise ValidationFailed(message)
        log.error("%s", message)
    else:
        log.info(
            "dataset %s passed %d data checks (%d warnings); data docs: %s",
            result.dataset_id,
            len(result.checks),
            len(result.warnings),
            result.data_docs,
        )
    return result


def validate(
    dataset_uri: str, cfg: PipelineConfig, out_dir: str | Path, raise_on_failure: bool = True
) -> ValidationResult:
    """Run the suite on a dataset-version folder, writing ``result.json`` and ``data_docs/``
    into `out_dir` (a run's ``validate/`` folder, or any folder for ``cellseg validate
    --dataset``); raise ValidationFailed on a critical failure. Layout and channels come from
    the folder's dataset.json; the target label set from ``cfg.data.target``."""
    if Path(out_dir).resolve().is_relative_to(Path(dataset_uri).resolve()):
        raise ConfigError(
            f"output folder {out_dir} lies inside the dataset {dataset_uri}; "
            "dataset versions are immutable, choose another folder"
        )
    return _gate(run_suite(dataset_uri, cfg, Path(out_dir)), raise_on_failure)
