"""Self-contained HTML report of one evaluation.

The page holds the summary table (methods as rows, metrics as columns, best in bold), the metric
definitions, the AP curve and per-image plots, side-by-side overlays of all methods, links to
the per-method overlays, the data-validation summary, the configuration, the dataset id, the
split and the border policy. Every figure is embedded as base64 PNG, so the file opens from disk
in a browser with no server; the overlay and validation links are relative to the report.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from urllib.parse import quote

from pipeline.atomic import atomic_path
from pipeline.config import PipelineConfig
from pipeline.conventions import safe_name
from pipeline.evaluate.metrics import SUMMARY_METRICS

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #aaa;padding:4px 8px}
td{text-align:right;font-variant-numeric:tabular-nums}th{background:#f2f2f2}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}pre{background:#f7f7f7;padding:1em;
overflow:auto;max-height:30em}dt{font-weight:bold}.facts td{text-align:left}"""


def _esc(value: object) -> str:
    return html.escape(str(value))


def _best(values: dict[str, float], direction: str) -> float:
    key = {"max": lambda v: -v, "min": lambda v: v, "zero": abs}[direction]
    return min((values[m] for m in values), key=key)


def summary_table(summary: dict[str, dict[str, float]]) -> str:
    """HTML table: one row per method, one column per metric, the best value per column bold."""
    metrics = [k for k in SUMMARY_METRICS if all(k in v for v in summary.values())]
    best = {k: _best({m: v[k] for m, v in summary.items()}, SUMMARY_METRICS[k][0]) for k in metrics}
    arrows = {
        "max": "&uarr; higher is better",
        "min": "&darr; lower is better",
        "zero": "closest to 0 is best",
    }
    head = "".join(
        f"<th title='{_esc(SUMMARY_METRICS[k][1])}; {arrows[SUMMARY_METRICS[k][0]]}'>{_esc(k)}</th>"
        for k in metrics
    )
    rows = []
    for method, values in summary.items():
        cells = "".join(
            f"<td><b>{values[k]:.4f}</b></td>"
            if values[k] == best[k]
            else f"<td>{values[k]:.4f}</td>"
            for k in metrics
        )
        rows.append(f"<tr><th>{_esc(method)}</th>{cells}</tr>")
    return f"<table id='summary'><tr><th>method</th>{head}</tr>{''.join(rows)}</table>"


def _img(png: bytes, alt: str) -> str:
    return f"<img alt='{_esc(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _link(path: str, out: Path) -> str:
    """A relative link to `path` (absolute or relative to the cwd) from the report folder."""
    target = path if "://" in path else os.path.relpath(Path(path).resolve(), out.resolve())
    href = target if "://" in target else quote(Path(target).as_posix())
    return f"<a href='{_esc(href)}'>{_esc(target)}</a>"


def validation_html(validation: dict, out: Path) -> str:
    """Pass/fail, failures, warnings and links to the validation result and Data Docs."""
    if not validation:
        return "<p>No validation summary was passed to this evaluation.</p>"
    facts = [("passed", validation.get("passed", "?"))]
    for key in ("failures", "warnings"):
        if key in validation:
            facts.append((key, ", ".join(map(str, validation[key])) or "none"))
    for key in ("result_json", "data_docs"):
        if validation.get(key):
            facts.append((key, _link(str(validation[key]), out)))
    rows = "".join(
        f"<tr><th>{_esc(k)}</th><td>{v if k in ('result_json', 'data_docs') else _esc(v)}</td></tr>"
        for k, v in facts
    )
    dump = _esc(json.dumps(validation, indent=2, default=str))
    dump = f"<details><summary>all</summary><pre>{dump}</pre></details>"
    return f"<table class='facts'>{rows}</table>{dump}"


def overlay_links(methods: list[str], field_ids: list[str]) -> str:
    """Table of links to ``overlays/<method>/<field>.png``: fields as rows, methods as columns."""
    head = "".join(f"<th>{_esc(m)}</th>" for m in methods)
    rows = "".join(
        f"<tr><th>{_esc(f)}</th>"
        + "".join(
            f"<td><a href='overlays/{quote(m)}/{quote(safe_name(f))}.png'>png</a></td>"
            for m in methods
        )
        + "</tr>"
        for f in field_ids
    )
    return f"<table id='overlays'><tr><th>field</th>{head}</tr>{rows}</table>"


def write_report(
    out: Path,
    summary: dict[str, dict[str, float]],
    figures: dict[str, bytes],
    comparisons: list[tuple[str, bytes]],
    methods: list[str],
    cfg: PipelineConfig,
    meta: dict,
) -> Path:
    """Write ``out/report.html``; `figures` needs ``per_image`` and ``ap_curve`` PNGs."""
    facts = [
        ("dataset id", meta.get("dataset_id", "unknown")),
        ("run id", meta.get("run_id", "-")),
        ("target", meta["target"]),
        ("layout", cfg.data.layout),
        ("split", meta["split_text"]),
        ("border policy", meta["border_policy_text"]),
        ("matching", meta["matching"]),
        ("aggregation", meta["aggregation"]),
    ]
    fact_rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in facts)
    defs = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(d)}</dd>" for k, (_, d) in SUMMARY_METRICS.items())
    compare = "".join(
        f"<h3>{_esc(fid)}</h3>{_img(png, f'all methods on {fid}')}" for fid, png in comparisons
    )
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>cellseg report {_esc(meta.get("dataset_id", ""))}</title><style>{_STYLE}</style></head>
<body><h1>cellseg evaluation report</h1>
<table class="facts">{fact_rows}</table>
<h2>Summary (mean over test fields; best in bold)</h2>{summary_table(summary)}
<details><summary>Metric definitions</summary><dl>{defs}</dl></details>
<h2>Average precision against the IoU threshold</h2>{_img(figures["ap_curve"], "AP curve")}
<h2>Per-image metrics</h2>{_img(figures["per_image"], "per-image metrics")}
<h2>All methods side by side (green: ground truth, magenta: prediction)</h2>{compare}
<h2>Overlays per method and test field</h2>{overlay_links(methods, meta["test_fields"])}
<h2>Data validation</h2>{validation_html(meta.get("validation") or {}, out)}
<h2>Configuration</h2><pre>{_esc(json.dumps(cfg.to_dict(), indent=2))}</pre>
</body></html>"""
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out / "report.html"


def add_section(report: str | Path, section_id: str, title: str, facts: dict[str, str]) -> Path:
    """Add (or replace, on a re-run) the section `section_id` at the end of a written report:
    a heading and a table of `facts`. Later stages use it, e.g. the registry's decision."""
    path = Path(report)
    page = path.read_text(encoding="utf-8")
    start, end = f"<!-- section:{section_id} -->", f"<!-- /section:{section_id} -->"
    if start in page:
        page = page[: page.index(start)] + page[page.index(end) + len(end) :]
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in facts.items())
    block = (
        f'{start}<h2 id="{section_id}">{_esc(title)}</h2><table class="facts">{rows}</table>{end}'
    )
    page = page.replace("</body></html>", f"{block}\n</body></html>")
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
