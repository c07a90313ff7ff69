"""`cellseg` command line: one subcommand per stage, and `run` for the whole pipeline.

Stages run one at a time share a run id: each writes its output to
``<runs_dir>/<run_id>/state/<stage>.json`` and the next stage reads it, so

    cellseg ingest --run-id r1 && cellseg validate --run-id r1 && ...

is the same as ``cellseg run --run-id r1``. Bad input exits with status 2 and one line saying
what is wrong and how to fix it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline import tasks
from pipeline.config import ConfigError, parse_set_flags

STAGE_INPUTS: dict[str, list[str]] = {
    "ingest": [],
    "validate": ["ingest"],
    "preprocess": ["ingest", "validate"],
    "baseline": ["preprocess"],
    "train": ["preprocess"],
    "evaluate": ["preprocess", "baseline", "train", "validate"],
    "register": ["train", "evaluate"],
}
STAGE_FUNCS = {
    "ingest": tasks.ingest_task,
    "validate": tasks.validate_task,
    "preprocess": tasks.preprocess_task,
    "baseline": tasks.baseline_task,
    "train": tasks.train_task,
    "evaluate": tasks.evaluate_task,
    "register": tasks.register_task,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, with the fix
        self.exit(2, f"cellseg: error: {message} (see `cellseg --help`)\n")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (see configs/)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set train.epochs=3 (repeatable)",
    )
    p.add_argument("--run-id", help="run folder name (default: a timestamp)")
    for flag, key in tasks.PARAM_KEYS.items():
        p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, help=f"sets {key}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cellseg", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        parser_class=_Parser,
        metavar="{" + ",".join([*STAGE_FUNCS, "predict", "run"]) + "}",
    )
    stage_parsers = {}
    for name in STAGE_FUNCS:
        stage_parsers[name] = sub.add_parser(name, help=f"run the {name} stage")
        _common(stage_parsers[name])
    stage_parsers["validate"].add_argument(
        "--dataset",
        help="validate this dataset-version folder (data/datasets/<layout>-<id>) "
        "instead of the run's ingest output",
    )
    stage_parsers["validate"].add_argument("--out", help="folder for result.json and data_docs/")
    ev = stage_parsers["evaluate"]
    ev.add_argument(
        "--predictions",
        help="score this folder of <field>.tif label images (or of "
        "per-method sub-folders) instead of the run's own predictions",
    )
    ev.add_argument(
        "--dataset",
        help="dataset version, prepared folder or run folder to score against (with --predictions)",
    )
    ev.add_argument("--out", help="folder for metrics and report.html (with --predictions)")
    _common(sub.add_parser("run", help="run every stage in order (what the DAG runs)"))
    pred = sub.add_parser("predict", help="segment a folder of new images with a model")
    pred.add_argument(
        "--model",
        required=True,
        help="model.pt, a run's train/ folder or a registered version (folder or s3://...)",
    )
    pred.add_argument("--images", required=True, help="folder of .tif images (C, H, W)")
    pred.add_argument("--out", required=True, help="folder for <stem>_labels.tif")
    pred.add_argument("--s3-endpoint-url", help="S3 endpoint for s3:// models")
    pred.add_argument("-v", "--verbose", action="store_true")
    return parser


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {k: getattr(args, k) for k in tasks.PARAM_KEYS if getattr(args, k)}
    params["config_file"] = args.config
    params["overrides"] = parse_set_flags(args.set)
    return params


def _state(run_dir: str, stage: str) -> Path:
    return Path(run_dir) / "state" / f"{stage}.json"


def _validate_folder(args: argparse.Namespace, params: dict, run_id: str) -> dict:
    from pipeline.validate import validate_dataset

    folder = Path(args.dataset)
    if not folder.exists():
        raise ConfigError(f"--dataset {folder} does not exist; pass a dataset folder")
    if not (folder / "dataset.json").is_file():  # a raw folder: ingest it into a version first
        from pipeline.ingest import ingest

        params = {**params, "source": str(folder.resolve())}
        folder = Path(ingest(tasks.make_config(params)).uri)
    cfg = tasks.make_config(params)
    out = args.out or str(Path(tasks.run_dir_for(cfg, run_id)) / "validate")
    return validate_dataset(str(folder), cfg, out).summary()


def _evaluate_folder(args: argparse.Namespace, params: dict, run_id: str) -> dict:
    from pipeline.evaluate import evaluate_folder

    if not args.dataset:
        raise ConfigError("--predictions needs --dataset (a dataset version or run folder)")
    cfg = tasks.make_config(params)
    out = args.out or str(Path(tasks.run_dir_for(cfg, run_id)) / "evaluate")
    return evaluate_folder(args.predictions, args.dataset, cfg, out).to_dict()


def _run_stage(name: str, params: dict, run_id: str) -> dict:
    from pipeline.io import write_json

    run_dir = tasks.run_dir_for(tasks.make_config(params), run_id)
    inputs = []
    for upstream in STAGE_INPUTS[name]:
        path = _state(run_dir, upstream)
        if not path.is_file():
            raise ConfigError(
                f"stage {name} needs the output of '{upstream}' for run {run_id}; "
                f"run `cellseg {upstream} --run-id {run_id}` first"
            )
        inputs.append(json.loads(path.read_text()))
    result = STAGE_FUNCS[name](params, run_id, *inputs)
    write_json(_state(run_dir, name), result)
    return result


def _predict(args: argparse.Namespace) -> dict:
    from pipeline.predict import predict_folder
    from pipeline.registry import fetch_model

    model = args.model
    if model.startswith("s3://"):
        model = str(fetch_model(model, str(Path(args.out) / ".model"), args.s3_endpoint_url))
    return {"written": predict_folder(model, args.images, args.out)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    from rich.console import Console

    console = Console(stderr=True)
    try:
        if args.command == "predict":
            result = _predict(args)
        else:
            params = _params(args)
            run_id = args.run_id or datetime.now().strftime("run-%Y%m%d-%H%M%S")
            # Fail before any work (the encoder check imports torch: only where training runs;
            # in-process, the ingest task's own check then costs nothing more).
            tasks.check_names(tasks.make_config(params), encoder=args.command in ("run", "train"))
            if args.command == "run":
                stages = list(STAGE_FUNCS)
                result = {}
                for i, name in enumerate(stages, 1):
                    start = time.perf_counter()
                    console.print(f"[bold cyan][{i}/{len(stages)}] {name}[/] ...")
                    result = _run_stage(name, params, run_id)
                    console.print(
                        f"[green]    {name} done[/] in {time.perf_counter() - start:.1f}s"
                    )
            elif args.command == "validate" and args.dataset:
                result = _validate_folder(args, params, run_id)
            elif args.command == "evaluate" and args.predictions:
                result = _evaluate_folder(args, params, run_id)
            else:
                result = _run_stage(args.command, params, run_id)
    except (ConfigError, ValueError, FileNotFoundError) as exc:  # bad input: say what to fix
        if args.verbose:
            traceback.print_exc()
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        # A failed data check lists one expectation per line; other errors fit one line.
        sep = "\n" if type(exc).__name__ == "ValidationFailed" else " | "
        print(f"cellseg: error: {sep.join(lines)}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
