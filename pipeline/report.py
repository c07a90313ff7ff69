"""Self-contained HTML report: summary table, overlays (embedded PNGs), config and dataset id.

The page embeds every image as base64, so it opens from disk with no server.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from pipeline.config import PipelineConfig  # noqa: E402
from pipeline.io import atomic_path, read_tif  # noqa: E402
from pipeline.preprocess import load_split, safe_name  # noqa: E402


def overlay_figure(image: np.ndarray, gt: np.ndarray, preds: dict[str, np.ndarray], title: str):
    """Side-by-side panels, one per method: image with GT (green) and prediction (magenta) contours."""
    base = image[0] if image.ndim == 3 else image
    fig, axes = plt.subplots(1, len(preds), figsize=(4 * len(preds), 3.6), squeeze=False)
    for ax, (name, pred) in zip(axes[0], preds.items(), strict=True):
        rgb = np.repeat(base[..., None], 3, axis=-1).astype(np.float32)
        rgb[find_boundaries(gt, mode="outer")] = (0.1, 1.0, 0.1)
        rgb[find_boundaries(pred, mode="inner")] = (1.0, 0.1, 1.0)
        ax.imshow(rgb)
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    fig.suptitle(f"{title}  (green: ground truth, magenta: prediction)", fontsize=10)
    fig.tight_layout()
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _table_html(summary: dict[str, dict[str, float]]) -> str:
    frame = pd.DataFrame(summary).T
    best = frame.max()
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    rows = []
    for method, row in frame.iterrows():
        cells = "".join(
            f"<td>{'<b>' if v == best[c] else ''}{v:.4f}{'</b>' if v == best[c] else ''}</td>"
            for c, v in row.items())
        rows.append(f"<tr><th>{html.escape(str(method))}</th>{cells}</tr>")
    return f"<table><tr><th>method</th>{head}</tr>{''.join(rows)}</table>"


def write_report(out: Path, table: pd.DataFrame, summary: dict, predictions: dict[str, str],
                 prepared_uri: str, cfg: PipelineConfig, meta: dict) -> Path:
    """Write overlays/*.png and report.html into `out`; returns the report path."""
    target = cfg.data.target
    samples = [s for s in load_split(prepared_uri, "test") if target in s.labels]
    figures = []
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    for s in samples[: cfg.evaluate.report_overlays]:
        preds = {m: read_tif(Path(f) / f"{safe_name(s.field_id)}.tif") for m, f in predictions.items()}
        png = _png(overlay_figure(s.image, s.labels[target], preds, s.field_id))
        with atomic_path(out / "overlays" / f"{safe_name(s.field_id)}.png") as tmp:
            tmp.write_bytes(png)
        figures.append((s.field_id, base64.b64encode(png).decode()))
    per_image = table.pivot_table(index="field_id", columns="method", values="fg_iou")
    fig, ax = plt.subplots(figsize=(7, 3))
    per_image.plot.bar(ax=ax)
    ax.set_ylabel("foreground IoU")
    ax.set_ylim(0, 1)
    fig.tight_layout()
    bars = base64.b64encode(_png(fig)).decode()
    imgs = "".join(f"<h3>{html.escape(fid)}</h3><img alt='overlay {html.escape(fid)}' "
                   f"src='data:image/png;base64,{b64}'>" for fid, b64 in figures)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>cellseg report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:4px 8px;text-align:right}}img{{max-width:100%}}</style>
</head><body><h1>cellseg evaluation report</h1>
<p>Target: <b>{html.escape(target)}</b> &middot; test fields: {meta['n_test_fields']}
&middot; border policy: {html.escape(meta['border_policy'])}
&middot; dataset id: <code>{html.escape(str(meta.get('dataset_id', '?')))}</code></p>
<h2>Summary (mean over test fields, best in bold)</h2>{_table_html(summary)}
<h2>Per-image foreground IoU</h2><img alt="per-image IoU" src="data:image/png;base64,{bars}">
<h2>Overlays</h2>{imgs}
<h2>Data validation</h2><pre>{html.escape(json.dumps(meta.get('validation', {}), indent=2))}</pre>
<h2>Configuration</h2><pre>{html.escape(json.dumps(cfg.to_dict(), indent=2))}</pre>
</body></html>"""
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(page)
    return out / "report.html"
