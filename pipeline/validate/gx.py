"""Run the suite with Great Expectations 1.x: an ephemeral context, a pandas data source over the
check tables, one validation definition per table, and a Data Docs site written to a folder.

GX's own console output is kept out of task logs: analytics off, progress bars off, its loggers
raised to ERROR and its Python warnings silenced while it runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

log = logging.getLogger(__name__)

SITE = "cellseg_validation"
# Columns named in each failure so a person can find the offending field and file.
INDEX_COLUMNS = {
    "manifest": ["field_id"],
    "fields": ["field_id", "image_path", "mask_path", "raw_files"],
    "objects": ["field_id", "mask_path", "label"],
}
_QUIET = ("great_expectations", "tqdm", "py.warnings", "altair", "marshmallow", "posthog")


@contextlib.contextmanager
def quiet_gx() -> Iterator[None]:
    """Silence GX's loggers and warnings for the duration of the block."""
    saved = {name: logging.getLogger(name).level for name in _QUIET}
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _context(docs_dir: Path | None):
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites = {}
    if docs_dir is not None:
        sites[SITE] = {
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites=sites,
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _jsonable(obj: Any) -> Any:
    """Plain JSON types (GX results hold numpy scalars and sets)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    return obj


def run_suites(
    tables: dict[str, pd.DataFrame], suites: dict[str, Any], docs_dir: Path | None = None
) -> list[dict]:
    """Validate each table against its suite; return GX validation results as JSON dicts.

    With `docs_dir`, GX Data Docs (index.html, one page per suite and per validation result)
    are built there.
    """
    with quiet_gx():
        import great_expectations as gx

        ctx = _context(docs_dir)
        source = ctx.data_sources.add_pandas("cellseg")
        results = []
        for table, suite in suites.items():
            frame = tables[table]
            batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe(table)
            suite = ctx.suites.add(suite)
            vd = ctx.validation_definitions.add(
                gx.ValidationDefinition(name=f"cellseg.{table}", data=batch, suite=suite)
            )
            index_cols = [c for c in INDEX_COLUMNS[table] if c in frame.columns]
            result = vd.run(
                batch_parameters={"dataframe": frame},
                result_format={
                    "result_format": "COMPLETE",
                    "unexpected_index_column_names": index_cols,
                    "partial_unexpected_count": 20,
                    "return_unexpected_index_query": False,
                },
            )
            results.append(_jsonable(result.to_json_dict()))
        if docs_dir is not None:
            ctx.build_data_docs(site_names=[SITE])
            # GX copies two tutorial animations (3.4 MB) that no page links to.
            for gif in Path(docs_dir).glob("static/images/*.gif"):
                gif.unlink()
    return results


def _short(value: Any, limit: int = 160) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(sorted(value, key=str) if isinstance(value, set) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _expected(kind: str, kw: dict[str, Any]) -> str:
    """The expectation's requirement in words, e.g. ``1 <= n_objects <= 500``."""
    col = kw.get("column", "")
    mostly = f" for >= {kw['mostly']:.0%} of rows" if kw.get("mostly", 1) < 1 else ""
    if "value_set" in kw:
        verb = "in" if kind.endswith("to_be_in_set") else "values include"
        return f"{col} {verb} {kw['value_set']}"
    if "column_set" in kw:
        return f"columns include {kw['column_set']}"
    if kind.endswith("to_be_unique"):
        return f"{col} unique"
    lo, hi = kw.get("min_value"), kw.get("max_value")
    lo_text = f"{_short(lo)} {'<' if kw.get('strict_min') else '<='} " if lo is not None else ""
    hi_text = f" <= {_short(hi)}" if hi is not None else ""
    return f"{lo_text}{f'sum({col})' if 'sum' in kind else col}{hi_text}{mostly}"


def _offending_rows(res: dict, file_column: str | None, column: str) -> list[str]:
    out = []
    for rec in res.get("unexpected_index_list") or []:
        if not isinstance(rec, dict):
            out.append(str(rec))
            continue
        where = str(rec.get("field_id", "?"))
        if file_column and rec.get(file_column):
            raw = [r for r in str(rec.get("raw_files") or "").split(";") if r][:2]
            where += f" ({rec[file_column]}{'; raw: ' + ', '.join(raw) if raw else ''})"
        if "label" in rec:
            where += f" label {rec['label']}"
        out.append(
            where if column == "field_id" else f"{where}: {column}={_short(rec.get(column), 24)}"
        )
    return out


def summarize(gx_result: dict, file_column: str | None) -> dict[str, Any]:
    """Readable fields of one GX expectation result: passed, observed, expected, offending
    (field ids and files, or missing values / columns) and the expectation with its column."""
    cfg, res = gx_result["expectation_config"], gx_result.get("result") or {}
    kw = {k: v for k, v in cfg["kwargs"].items() if k != "batch_id"}
    kind, col = cfg["type"], kw.get("column", "")
    offending: list[str] = []
    if "unexpected_count" in res:  # row-wise: name the rows
        n, total = res.get("unexpected_count") or 0, res.get("element_count") or 0
        values = sorted({_short(v, 40) for v in res.get("partial_unexpected_list") or []})[:5]
        observed = f"{n} of {total} rows unexpected"
        observed += f" ({col} e.g. {', '.join(values)})" if n and values else ""
        offending = list(dict.fromkeys(_offending_rows(res, file_column, col)))
    elif "column_set" in kw:
        present = res.get("observed_value") or []
        missing = [c for c in kw["column_set"] if c not in present]
        observed = f"{len(present)} columns" + (f", missing {missing}" if missing else "")
        offending = [f"missing column {c!r}" for c in missing]
    elif kind.endswith("to_contain_set"):
        missing = res.get("partial_missing_list") or []
        observed = f"missing {missing}" if missing else "all present"
        offending = [f"no row with {col}={v!r}" for v in missing]
    else:
        observed = _short(res.get("observed_value"))
    info = gx_result.get("exception_info") or {}
    if info.get("raised_exception"):
        observed = "error: " + _short(info.get("exception_message"))
    return {
        "passed": bool(gx_result["success"]),
        "observed": observed,
        "expected": _expected(kind, kw),
        "offending": offending,
        "expectation": f"{kind}({col})" if col else kind,
    }
