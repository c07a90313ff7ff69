"""`cellseg` commands that use a trained model: ``predict`` (new images), ``tune`` (its
post-processing chosen again on annotated fields of another dataset) and ``models`` (the
registry). `pipeline.cli` adds them to its parser and hands them their arguments."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError, parse_set_flags
from pipeline.config.params import config_from_params
from pipeline.rundir import RunDir

MODEL_COMMANDS = ("predict", "tune", "models")
MODEL_HELP = (
    "a registry alias or version number (default: production), a model folder, a run's train/ "
    "folder or a registered version (folder or s3://...)"
)


def _registry_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (its registry section is used)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")


def _models_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, parser_class=type(p))
    ls = sub.add_parser("list", help="registered versions, newest first, with their aliases")
    ls.add_argument("--incomplete", action="store_true", help="only unpublished claims")
    show = sub.add_parser("show", help="a version's card, metrics, lineage and alias history")
    show.add_argument("ref", help="version number or alias")
    promote = sub.add_parser("promote", help="point an alias (default production) at a version")
    promote.add_argument("ref", help="version number or alias")
    promote.add_argument("--alias", default="production")
    promote.add_argument("--reason", default="", help="recorded in the alias history")
    back = sub.add_parser("rollback", help="move an alias back to its previous version")
    back.add_argument("--alias", default="production")
    back.add_argument("--to", help="this version instead of the previous one")
    dl = sub.add_parser("download", help="copy a version into a folder, verified")
    dl.add_argument("ref", help="version number or alias")
    dl.add_argument("--out", required=True, help="new or empty folder")
    for action in (ls, show, promote, back, dl):
        _registry_options(action)


def add_model_commands(sub: Any) -> None:
    """Add ``predict``, ``tune`` and ``models`` to the subcommands `sub`."""
    pred = sub.add_parser("predict", help="segment a folder of new images with a model")
    pred.add_argument("--model", help=MODEL_HELP)
    pred.add_argument(
        "--images",
        required=True,
        help="a folder of images, or one: TIF ((H, W), (C, H, W)), PNG, JPEG, BMP",
    )
    pred.add_argument("--out", required=True, help="folder for <stem>_labels.tif")
    pred.add_argument(
        "--diameter",
        type=float,
        help="objects' diameter in px, if known (default: measured on each image) "
        "[predict.object_diameter]",
    )
    pred.add_argument(
        "--channel",
        type=int,
        help="the channel a one-channel model reads in multi-channel or colour images (0 first; "
        "colour: 0 red, 1 green, 2 blue; default -1: the image as it is) [predict.channel]",
    )
    _registry_options(pred)
    tune = sub.add_parser(
        "tune",
        help="choose a model's post-processing again on annotated fields of another dataset "
        "(your microscope); writes a new model folder",
    )
    tune.add_argument("--model", help=MODEL_HELP)
    tune.add_argument(
        "--dataset",
        required=True,
        help="annotated fields: a dataset version (cellseg ingest), a prepared folder or a run "
        "folder",
    )
    tune.add_argument("--out", required=True, help="new or empty folder for the tuned model")
    tune.add_argument(
        "--split",
        default="train,val",
        help="the dataset's splits to tune on, comma-separated (default train,val: the test "
        "block, if any, scores the model before and after)",
    )
    _registry_options(tune)
    _models_parser(sub.add_parser("models", help="list, show, promote, roll back, download"))


def as_recorded(folder: Path, params: dict) -> dict:
    """`params` with the layout of the dataset version `folder` (or of a run folder's dataset)
    and the run's target, where the command line gives neither: scoring or checking a CTC
    dataset needs no --layout ctc --target nuclei."""
    from pipeline.ingest.manifest import is_version, load_manifest

    run = RunDir(folder)
    ingested, prepared = run.read_state("ingest") or {}, run.read_state("preprocess") or {}
    layout = load_manifest(folder)[1].get("layout") if is_version(folder) else None
    recorded = {"layout": layout or ingested.get("layout"), "target": prepared.get("target")}
    return {**params, **{k: v for k, v in recorded.items() if v and not params.get(k)}}


def run_model_command(args: argparse.Namespace) -> Any:
    """Run the model command `args.command` (one of MODEL_COMMANDS); its JSON-able result."""
    params = {"config_file": args.config, "overrides": parse_set_flags(args.set)}
    if args.command == "tune":
        if not Path(args.dataset).exists():
            raise ConfigError(f"--dataset {args.dataset} does not exist; pass a dataset folder")
        return _tune(args, config_from_params(as_recorded(Path(args.dataset), params)))
    cfg = config_from_params(params)
    return _predict(args, cfg) if args.command == "predict" else _models(args, cfg)


def _predict(args: argparse.Namespace, cfg: Any) -> dict:
    from pipeline.registry.commands import model_for_predict
    from pipeline.segment.batch import folder_options
    from pipeline.segment.inference import predict_folder

    diameter = cfg.predict.object_diameter if args.diameter is None else args.diameter
    if diameter < 0:
        raise ConfigError(f"--diameter {diameter}: an object diameter in px is >= 0 (0: measure)")
    options = folder_options(cfg.predict)
    if args.channel is not None:
        if args.channel < -1:
            raise ConfigError(f"--channel {args.channel}: a channel index >= 0, or -1 for none")
        options["channel"] = args.channel
    with model_for_predict(cfg, args.model) as model:
        written = predict_folder(
            model, args.images, args.out, cfg.predict.pixel_size_um, diameter, **options
        )
        return {"model": args.model or "production", "written": written}


def _tune(args: argparse.Namespace, cfg: Any) -> dict:
    from pipeline.registry.commands import model_for_predict
    from pipeline.train.retune import retune

    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    ref = args.model or cfg.predict.model
    with model_for_predict(cfg, ref) as model:
        result = retune(model, args.dataset, cfg, args.out, splits).to_dict()
    copied = model != ref  # a registered version or s3 URI, read from a temporary copy
    return {**result, "source": ref or "production"} if copied else result


def _models(args: argparse.Namespace, cfg: Any) -> Any:
    from pipeline.registry import commands

    if args.action == "list":
        return commands.list_models(cfg, args.incomplete)
    if args.action == "show":
        return commands.show_model(cfg, args.ref)
    if args.action == "promote":
        return commands.promote(cfg, args.ref, args.alias, args.reason)
    if args.action == "rollback":
        return commands.rollback_alias(cfg, args.alias, args.to)
    return commands.download(cfg, args.ref, args.out)
