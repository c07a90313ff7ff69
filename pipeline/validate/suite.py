"""The data-check suite that gates a run, built in code from `ValidateConfig` (Great Expectations).

Three tables are checked (built by `pipeline.validate.tables`):

- ``manifest``: the dataset version's ``manifest.csv`` plus columns derived from it;
- ``fields``: one row per manifest row with statistics computed by reading its files;
- ``objects``: one row per object of the target label images (area in pixels and as a fraction).

Every check is one GX expectation whose ``meta`` holds its ``name`` and ``critical`` flag (also
set as GX ``severity``). Critical failures stop the run; warnings are reported. Thresholds left at
``None`` in the config take the per-layout defaults in `LAYOUT_DEFAULTS`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from typing import Any

from pipeline.config import ValidateConfig
from pipeline.conventions import SPLIT_VALUES, SPLITS
from pipeline.errors import ConfigError

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

TABLES = ("manifest", "fields", "objects")
MASK_DTYPES = ("uint16",)  # dataset versions store instance labels as uint16 (see ingest)
MANIFEST_COLUMNS = "field_id split labelled image_path height width n_channels dtype content_hash"


@dataclass(frozen=True)
class Thresholds:
    """Resolved thresholds: config values where set, else the layout's defaults."""

    min_mask_coverage: float
    max_mask_coverage: float
    min_objects: int
    max_objects: int
    min_object_area: int
    max_object_fraction: float
    object_size_mostly: float


# Per-layout defaults, fitted with margin to the demo set, real BBBC020 nuclei (22-59 nuclei per
# field, coverage 3-11 %, nuclei 257-7306 px), CTC GOWT1 (21-29 nuclei, coverage 7-9 %, 755-8820
# px) and CTC HeLa (47-136 nuclei, coverage 3-9 %, 53-1411 px).
LAYOUT_DEFAULTS: dict[str, Thresholds] = {
    "bbbc020": Thresholds(0.002, 0.8, 1, 500, 10, 0.1, 0.95),
    "ctc": Thresholds(0.002, 0.6, 1, 2000, 10, 0.05, 0.95),
    "folder": Thresholds(0.0005, 0.95, 1, 10000, 4, 0.5, 0.9),
}


@dataclass(frozen=True)
class CheckSpec:
    """One named check: a GX expectation on one table, critical or a warning."""

    name: str
    table: str
    kind: str  # GX expectation class name, e.g. ExpectColumnValuesToBeInSet
    kwargs: dict[str, Any]
    critical: bool
    description: str
    file_column: str | None = None  # table column naming the offending file, if any

    def expectation(self):  # -> great_expectations.expectations.Expectation
        """The GX expectation for this check, with name and severity in its meta."""
        import great_expectations.expectations as gxe
        from great_expectations.expectations.metadata_types import FailureSeverity

        cls = getattr(gxe, self.kind)
        severity = FailureSeverity.CRITICAL if self.critical else FailureSeverity.WARNING
        meta = {"name": self.name, "critical": self.critical, "table": self.table}
        return cls(
            **self.kwargs,
            meta=meta,
            severity=severity,
            description=f"{self.name} ({'critical' if self.critical else 'warning'}): "
            f"{self.description}",
        )


def resolve_thresholds(v: ValidateConfig, layout: str) -> Thresholds:
    """Config values where set, else the layout's defaults; raise ConfigError if inconsistent."""
    base = asdict(LAYOUT_DEFAULTS.get(layout, LAYOUT_DEFAULTS["folder"]))
    t = Thresholds(**{k: base[k] if getattr(v, k) is None else getattr(v, k) for k in base})
    if not 0 <= t.min_mask_coverage <= t.max_mask_coverage <= 1:
        raise ConfigError(
            f"validate.min_mask_coverage={t.min_mask_coverage} and max_mask_coverage="
            f"{t.max_mask_coverage} must satisfy 0 <= min <= max <= 1"
        )
    if not 0 <= t.min_objects <= t.max_objects:
        raise ConfigError(
            f"validate.min_objects={t.min_objects} and max_objects={t.max_objects} "
            "must satisfy 0 <= min <= max"
        )
    if t.min_object_area < 0 or not 0 < t.max_object_fraction <= 1:
        raise ConfigError(
            f"validate.min_object_area={t.min_object_area} must be >= 0 and "
            f"max_object_fraction={t.max_object_fraction} in (0, 1]"
        )
    if not 0 < t.object_size_mostly <= 1:
        raise ConfigError(f"validate.object_size_mostly={t.object_size_mostly} must be in (0, 1]")
    return t


def _severity_overrides(v: ValidateConfig) -> dict[str, bool]:
    out = {}
    for item in v.severity:
        name, _, level = item.partition("=")
        if level.strip() not in ("critical", "warning"):
            raise ConfigError(
                f"validate.severity item {item!r} must look like "
                "check_name=critical or check_name=warning"
            )
        out[name.strip()] = level.strip() == "critical"
    return out


IN_SET = "ExpectColumnValuesToBeInSet"
BETWEEN = "ExpectColumnValuesToBeBetween"
UNIQUE = "ExpectColumnValuesToBeUnique"
CRIT, WARN = True, False
IMG, MSK = "image_path", "mask_path"

# The suite, one CheckSpec per line group: (name, table, GX expectation, kwargs, critical,
# description, column naming the offending file). Kept as tables for reading, hence fmt: off.
# fmt: off


def _manifest_checks(v: ValidateConfig) -> list[CheckSpec]:
    m, splits, need = "manifest", list(SPLIT_VALUES), v.min_labelled_fields
    cols = {"column_set": MANIFEST_COLUMNS.split(), "exact_match": False}
    return [
        CheckSpec("manifest_has_required_columns", m, "ExpectTableColumnsToMatchSet", cols, CRIT,
                  "manifest.csv has every column the pipeline reads"),
        CheckSpec("field_ids_unique", m, UNIQUE, {"column": "field_id"}, CRIT,
                  "each field is listed once"),
        CheckSpec("split_values_valid", m, IN_SET, {"column": "split", "value_set": splits}, CRIT,
                  "split is train, val, test or unlabelled"),
        CheckSpec("splits_disjoint", m, IN_SET, {"column": "field_splits", "value_set": splits},
                  CRIT, "no field id appears in more than one split"),
        CheckSpec("splits_non_empty", m, "ExpectColumnDistinctValuesToContainSet",
                  {"column": "split", "value_set": list(SPLITS)}, CRIT,
                  "train, val and test each hold at least one field"),
        CheckSpec("labelled_fields_have_target_mask", m, IN_SET,
                  {"column": "target_mask_listed", "value_set": [True]}, CRIT,
                  "every labelled field lists a mask of the target label set"),
        CheckSpec("enough_labelled_fields", m, "ExpectColumnSumToBeBetween",
                  {"column": "has_target", "min_value": need}, CRIT,
                  f"at least {need} fields carry target labels"),
        CheckSpec("fields_have_images", m, IN_SET, {"column": "image_listed", "value_set": [True]},
                  CRIT, "every field has an image (a masks-only dataset cannot train)"),
        CheckSpec("declared_dtype_allowed", m, IN_SET,
                  {"column": "declared_dtype", "value_set": list(v.allowed_dtypes)}, CRIT,
                  f"declared image dtype is one of {', '.join(v.allowed_dtypes)}"),
    ]


# Per-field facts computed from the files: (check name, column, description, file column).
_FIELD_FLAGS = (
    ("image_readable", "image_readable", "image.tif reads as a TIF", IMG),
    ("image_has_all_channels", "image_has_all_channels", "image holds every channel", IMG),
    ("image_shape_matches_manifest", "image_shape_matches", "image (H, W) = manifest's", IMG),
    ("image_dtype_matches_manifest", "image_dtype_matches", "image dtype = declared", IMG),
    ("image_values_match_manifest", "image_values_match", "channel min/max = declared", IMG),
    ("content_hash_matches_manifest", "content_hash_matches",
     "image and labels hash to the manifest's content_hash (files unchanged)", IMG),
    ("masks_readable", "masks_readable", "every label image reads as a TIF", MSK),
    ("mask_shape_matches_image", "masks_shape_match", "label image (H, W) = image's", MSK),
)


def _field_checks(v: ValidateConfig, t: Thresholds, channels: list[str]) -> list[CheckSpec]:
    f = "fields"
    checks = [CheckSpec(name, f, IN_SET, {"column": col, "value_set": [True]}, CRIT, what, where)
              for name, col, what, where in _FIELD_FLAGS]
    count = {"column": "n_objects", "min_value": t.min_objects, "max_value": t.max_objects}
    cover = {"column": "coverage", "min_value": t.min_mask_coverage,
             "max_value": t.max_mask_coverage}
    checks += [
        CheckSpec("images_unique", f, UNIQUE, {"column": "image_hash"}, CRIT,
                  "no two fields hold the same image (content hash of the image)", IMG),
        CheckSpec("mask_dtype_declared", f, IN_SET,
                  {"column": "masks_dtype", "value_set": list(MASK_DTYPES)}, CRIT,
                  "label images are uint16 instance labels", MSK),
        CheckSpec("target_mask_not_empty", f, BETWEEN, {"column": "n_objects", "min_value": 1},
                  CRIT, "every labelled field's target mask holds an object", MSK),
        CheckSpec("object_count_in_range", f, BETWEEN, count, WARN,
                  f"{t.min_objects} to {t.max_objects} objects per labelled field", MSK),
        CheckSpec("mask_coverage_in_range", f, BETWEEN, cover, WARN,
                  f"target foreground covers {t.min_mask_coverage:g} to "
                  f"{t.max_mask_coverage:g} of each labelled field", MSK),
    ]
    for ch in channels:
        flat = {"column": f"{ch}_range", "min_value": 0, "strict_min": True}
        blank = {"column": f"{ch}_std", "min_value": v.max_blank_std}
        sat = {"column": f"{ch}_saturated", "max_value": v.max_saturated_fraction}
        checks += [
            CheckSpec(f"image_not_constant[{ch}]", f, BETWEEN, flat, CRIT,
                      f"channel {ch} is not one constant value", IMG),
            CheckSpec(f"image_not_blank[{ch}]", f, BETWEEN, blank, CRIT,
                      f"channel {ch} has signal (std >= {v.max_blank_std:g})", IMG),
            CheckSpec(f"image_not_saturated[{ch}]", f, BETWEEN, sat, WARN,
                      f"at most {v.max_saturated_fraction:g} of {ch} at the dtype max", IMG),
        ]
    return checks


def _object_checks(t: Thresholds) -> list[CheckSpec]:
    o, most = "objects", t.object_size_mostly
    tiny = {"column": "area", "min_value": t.min_object_area, "mostly": most}
    huge = {"column": "area_fraction", "max_value": t.max_object_fraction, "mostly": most}
    return [
        CheckSpec("objects_not_tiny", o, BETWEEN, tiny, WARN,
                  f"{most:.0%} of objects have >= {t.min_object_area} px", MSK),
        CheckSpec("objects_not_huge", o, BETWEEN, huge, WARN,
                  f"{most:.0%} of objects cover <= {t.max_object_fraction:g} of their field", MSK),
    ]


# fmt: on


def build_checks(v: ValidateConfig, layout: str, channels: list[str]) -> list[CheckSpec]:
    """Every check of the suite for a dataset of `layout` with image `channels`.

    `validate.severity` overrides apply by full name (``image_not_blank[c1]``) or base name
    (``image_not_blank``); `validate.fail_on_warning` makes every check critical.
    """
    t = resolve_thresholds(v, layout)
    checks = _manifest_checks(v) + _field_checks(v, t, channels) + _object_checks(t)
    overrides = _severity_overrides(v)
    known = {c.name for c in checks} | {c.name.split("[")[0] for c in checks}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"validate.severity names unknown check(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(known))}"
        )
    out = []
    for c in checks:
        critical = overrides.get(c.name, overrides.get(c.name.split("[")[0], c.critical))
        out.append(replace(c, critical=critical or v.fail_on_warning))
    return out


def build_suites(checks: list[CheckSpec]) -> dict[str, Any]:
    """One GX ExpectationSuite per table, named ``cellseg.<table>``."""
    import great_expectations as gx

    return {
        table: gx.ExpectationSuite(
            name=f"cellseg.{table}",
            expectations=[c.expectation() for c in checks if c.table == table],
            meta={"notes": "built by pipeline/expectations.py from the validate config"},
        )
        for table in TABLES
    }
