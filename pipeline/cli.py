"""`cellseg` command line: one subcommand per stage, and `run` for the whole pipeline.

Stages run one at a time share a run id: each records its output in the run folder and the
next stage reads it, so

    cellseg ingest --run-id r1 && cellseg validate --run-id r1 && ...

is the same as ``cellseg run --run-id r1``. Bad input exits with status 2 and one line saying
what is wrong and how to fix it (``-v`` shows the traceback).
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

from pipeline import stages
from pipeline.cli_model import (
    MODEL_COMMANDS,
    add_model_commands,
    as_recorded,
    run_model_command,
)
from pipeline.config import ConfigError, parse_set_flags
from pipeline.config.params import PARAMS, config_from_params
from pipeline.rundir import RunDir


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
    for param in PARAMS:
        p.add_argument(
            f"--{param.name.replace('_', '-')}", dest=param.name, help=f"{param.help} [{param.key}]"
        )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cellseg", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        parser_class=_Parser,
        metavar="{" + ",".join([*stages.STAGE_NAMES, "run", *MODEL_COMMANDS]) + "}",
    )
    stage_parsers = {}
    for stage in stages.STAGES:
        stage_parsers[stage.name] = sub.add_parser(stage.name, help=stage.doc)
        _common(stage_parsers[stage.name])
    stage_parsers["validate"].add_argument(
        "--dataset",
        help="validate this dataset version (data/datasets/<layout>-<id>) or raw folder "
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
    add_model_commands(sub)
    return parser


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {p.name: getattr(args, p.name) for p in PARAMS}
    params["config_file"] = args.config
    params["overrides"] = parse_set_flags(args.set)
    return params


def _validate_folder(args: argparse.Namespace, params: dict, run_id: str) -> dict:
    from pipeline.ingest.manifest import is_version
    from pipeline.validate.run import validate

    folder = Path(args.dataset)
    if not folder.exists():
        raise ConfigError(f"--dataset {folder} does not exist; pass a dataset folder")
    if not is_version(folder):  # a raw folder: ingest it into a version first
        from pipeline.ingest.dataset import ingest

        params = {**params, "source": str(folder.resolve())}
        folder = Path(ingest(config_from_params(params)).uri)
    cfg = config_from_params(as_recorded(folder, params))
    out = args.out or RunDir.create(cfg.paths.runs_dir, run_id).validate
    return validate(str(folder), cfg, out).summary()


def _evaluate_folder(args: argparse.Namespace, params: dict, run_id: str) -> dict:
    from pipeline.evaluate.stage import evaluate_folder

    if not args.dataset:
        raise ConfigError("--predictions needs --dataset (a dataset version or run folder)")
    cfg = config_from_params(as_recorded(Path(args.dataset), params))
    out = args.out or RunDir.create(cfg.paths.runs_dir, run_id).evaluate
    return evaluate_folder(args.predictions, args.dataset, cfg, out).to_dict()


def _run_all(params: dict, run_id: str) -> dict:
    from rich.console import Console

    console, outputs = Console(stderr=True), {}
    run = RunDir.create(config_from_params(params).paths.runs_dir, run_id)
    with run.lock("cellseg run"):  # no other process joins this run between two stages
        for i, stage in enumerate(stages.STAGES, 1):
            start = time.perf_counter()
            console.print(f"[bold cyan][{i}/{len(stages.STAGES)}] {stage.name}[/] ...")
            outputs[stage.name] = stages.run_stage(stage.name, params, run_id, outputs)
            took = time.perf_counter() - start
            console.print(f"[green]    {stage.name} done[/] in {took:.1f}s")
    return outputs[stages.STAGES[-1].name]


def _check_out(args: argparse.Namespace) -> None:
    out = getattr(args, "out", None)
    if out and Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out} is an existing file; pass a folder (new or existing)")


def _dispatch(args: argparse.Namespace) -> Any:
    _check_out(args)
    if args.command in MODEL_COMMANDS:
        return run_model_command(args)
    params = _params(args)
    run_id = args.run_id or datetime.now().strftime("run-%Y%m%d-%H%M%S")
    cfg = config_from_params(params)  # a bad value or name fails here, before any work
    if args.command in ("run", "train"):
        stages.check_encoder(cfg)  # imports torch: only where training runs
    if args.command == "run":
        return _run_all(params, run_id)
    if args.command == "validate" and args.dataset:
        return _validate_folder(args, params, run_id)
    if args.command == "evaluate" and args.predictions:
        return _evaluate_folder(args, params, run_id)
    return stages.run_stage(args.command, params, run_id)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        result = _dispatch(args)
    except (ConfigError, ValueError, FileNotFoundError) as exc:  # bad input: say what to fix
        if args.verbose:
            traceback.print_exc()
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        # A failed data check lists one expectation per line; other errors fit one line.
        sep = "\n" if type(exc).__name__ == "ValidationFailed" else " | "
        print(f"cellseg: error: {sep.join(lines)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cellseg: interrupted; re-run to resume (finished stages are kept)", file=sys.stderr)
        return 130
    except Exception as exc:  # a failure that is not the input's: one line, -v for the trace
        if args.verbose:
            traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(
            f"cellseg: error: {type(exc).__name__}: {first} (not an input problem we know of; "
            "re-run with -v for the traceback and report it)",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
