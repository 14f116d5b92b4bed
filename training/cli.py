"""`readmission`: train, promote, evaluate and import the readmission model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bento.predictionlog.store import StoreError
from bento.quality.windows import WINDOWS
from bento.settings import SettingsError
from training import data, registry
from training.settings import MODEL_CARD_FILE, MODEL_NAME, TrainingSettings

WINDOW_OF_DAYS = {str(days): window for window, days in WINDOWS.items()}  # --window 30 -> the window "30d"


def _train(args: argparse.Namespace, settings: TrainingSettings) -> None:
    from training import train

    train.run(
        args.data,
        settings,
        force=args.force,
        seed=args.seed,
        verify=not args.no_verify,
        model_card_path=args.model_card or settings.home / MODEL_CARD_FILE,
        extra_seeds=args.extra_seeds,
    )


def _promote(args: argparse.Namespace, settings: TrainingSettings) -> None:
    if args.live:
        if args.version is not None:
            raise registry.NotPromotedError("give a version or --live, not both")
        from training import compare

        champion, challenger = compare.promote_live(settings, WINDOW_OF_DAYS[args.window], args.margin)
        print(f"{MODEL_NAME}@champion -> version {challenger} (was {champion}; the evidence is tagged on both)")
        return
    if args.version is None:
        raise registry.NotPromotedError("give the version to promote, or --live")
    registry.connect(settings)
    registry.promote(args.version)
    print(f"{MODEL_NAME}@champion -> version {args.version}")


def _compare(args: argparse.Namespace, settings: TrainingSettings) -> None:
    from training import compare

    compare.run(WINDOW_OF_DAYS[args.window] if args.window else None)


def _evaluate(args: argparse.Namespace, settings: TrainingSettings) -> None:
    from training import model_card

    registry.connect(settings)
    version, metrics = registry.run_metrics(args.version)
    aliases = ", ".join(version.aliases) or "none"
    print(f"{MODEL_NAME} version {version.version} (run {version.run_id}), aliases: {aliases}")
    test = {k.removeprefix("test_"): v for k, v in metrics.items() if k.startswith("test_")}
    baseline = {k.removeprefix("baseline_test_"): v for k, v in metrics.items() if k.startswith("baseline_test_")}
    print(model_card.metrics_table(test, baseline))


def _monitor(args: argparse.Namespace, settings: TrainingSettings) -> None:
    from training import monitor

    monitor.run(settings, args.plot)


def _import(args: argparse.Namespace, settings: TrainingSettings) -> None:
    from training import importer

    imported = importer.import_model(args.alias, settings)
    if imported.challenger_tag is not None:  # first: the last word printed is the champion's tag
        print(f"imported {MODEL_NAME}@challenger, scored in shadow, as {imported.challenger_tag}")
    print(f"imported {MODEL_NAME}@{args.alias} into the BentoML model store as {imported.tag}")


def parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per task."""
    top = argparse.ArgumentParser(prog="readmission", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train on the UCI data, log to MLflow, register the model")
    train.add_argument("--data", help="the UCI zip or diabetic_data.csv (default: $READMISSION_DATA, else download)")
    train.add_argument("--force", action="store_true", help="make the new version champion even if it is not better")
    train.add_argument("--seed", type=int, default=42, help="seed of the patient split and of XGBoost (default 42)")
    train.add_argument("--no-verify", action="store_true", help="accept a CSV whose sha256 differs from UCI's")
    train.add_argument(
        "--extra-seeds", type=int, default=2, help="also train on this many other splits, for the spread (default 2)"
    )
    train.add_argument(
        "--model-card",
        type=Path,
        help=f"where the champion's model card goes (default: $READMISSION_HOME/{MODEL_CARD_FILE}; the released one, "
        "docs/model-card.md, is copied from it by `make model-card`)",
    )
    train.set_defaults(handler=_train)

    promote = commands.add_parser("promote", help="point the champion alias at a registered version")
    promote.add_argument("version", nargs="?", help="registered version number")
    promote.add_argument(
        "--live", action="store_true", help="promote the challenger if it beat the champion on the same live patients"
    )
    promote.add_argument(
        "--margin", type=float, default=0.0, help="with --live: the ROC-AUC difference's 95%% interval must lie "
        "above this (default 0)"
    )  # fmt: skip
    promote.add_argument("--window", choices=WINDOW_OF_DAYS, default="90", help="with --live: days (default 90)")
    promote.set_defaults(handler=_promote)

    evaluate = commands.add_parser("evaluate", help="print the test metrics of a registered version")
    evaluate.add_argument("version", nargs="?", default="champion", help="version number or alias (default champion)")
    evaluate.set_defaults(handler=_evaluate)
    monitor = commands.add_parser("monitor", help="live performance from the prediction log beside training's")
    monitor.add_argument("--plot", type=Path, help="the reliability plot (default $READMISSION_HOME/monitor/)")
    monitor.set_defaults(handler=_monitor)
    compare = commands.add_parser("compare", help="champion and challenger on the same live patients")
    compare.add_argument("--window", choices=WINDOW_OF_DAYS, help="days (default: every window)")
    compare.set_defaults(handler=_compare)
    imports = commands.add_parser(
        "import", help="copy a registered model, and the challenger for shadow scoring, into the BentoML model store"
    )
    imports.add_argument("--alias", default="champion", help="alias or version to import (default champion)")
    imports.set_defaults(handler=_import)
    return top


def main(argv: list[str] | None = None) -> int:
    """Run the command; failures print one line on stderr and exit non-zero."""
    args = parser().parse_args(argv)
    try:
        args.handler(args, TrainingSettings.from_env())
    except (data.DataError, registry.RegistryError, registry.NotPromotedError, StoreError, SettingsError) as error:
        print(f"readmission {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # the champion alias moves only in the last step of a run: an interrupted one leaves it where it was
        print(f"readmission {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
