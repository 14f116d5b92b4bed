"""`readmission`: train, promote, evaluate and import the readmission model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bento.predictionlog.store import StoreError
from bento.settings import SettingsError
from training import data, registry
from training.settings import MODEL_NAME, TrainingSettings


def _train(args: argparse.Namespace, settings: TrainingSettings) -> None:
    from training import train

    train.run(
        args.data, settings, force=args.force, seed=args.seed, verify=not args.no_verify, extra_seeds=args.extra_seeds
    )


def _promote(args: argparse.Namespace, settings: TrainingSettings) -> None:
    registry.connect(settings)
    registry.promote(args.version)
    print(f"{MODEL_NAME}@champion -> version {args.version}")


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
    train.set_defaults(handler=_train)

    promote = commands.add_parser("promote", help="point the champion alias at a registered version")
    promote.add_argument("version", help="registered version number")
    promote.set_defaults(handler=_promote)

    evaluate = commands.add_parser("evaluate", help="print the test metrics of a registered version")
    evaluate.add_argument("version", nargs="?", default="champion", help="version number or alias (default champion)")
    evaluate.set_defaults(handler=_evaluate)
    monitor = commands.add_parser("monitor", help="live performance from the prediction log beside training's")
    monitor.add_argument("--plot", type=Path, help="the reliability plot (default $READMISSION_HOME/monitor/)")
    monitor.set_defaults(handler=_monitor)
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
    except (data.DataError, registry.RegistryError, StoreError, SettingsError) as error:
        print(f"readmission {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # the champion alias moves only in the last step of a run: an interrupted one leaves it where it was
        print(f"readmission {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
