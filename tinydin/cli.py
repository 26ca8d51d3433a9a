"""Command line: python -m tinydin train | evaluate | compare | demo | gradcheck.

    train      train one model; write metrics.json, model.npz, curves.png (and
               attention.png for DIN)
    evaluate   rebuild the test split a checkpoint was trained with and score it
    compare    train DIN, the BaseModel and popularity on one dataset, print one table
    demo       compare on the built-in synthetic data with the default settings
    gradcheck  check every hand-written backward pass by finite differences

Every error a user can cause (an unknown option value, a missing data folder, a
damaged checkpoint) ends the program with one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

DATASETS = ("synthetic", "movielens", "amazon")
COMPARE_DATASETS = ("synthetic", "movielens")
MODEL_CHOICES = ("din", "base", "popularity")
TASKS = ("rating", "next")

# Exceptions whose message is a complete, user-facing explanation: the data
# readers, configs, checkpoints and metrics raise these for bad input.
# OSError covers a missing or unreadable file and a failed download.
USER_ERRORS = (ValueError, OSError, FloatingPointError)


class UsageError(Exception):
    """A command-line mistake, reported as one line and exit status 2."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m tinydin", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    train = commands.add_parser("train", help="train one model on one dataset")
    _add_data_arguments(train, DATASETS, required=True)
    train.add_argument("--model", choices=MODEL_CHOICES, default="din", help="model to train (default din)")
    train.add_argument("--unit", choices=("outer", "concat"),
                       help="activation unit input: outer [k, q k^T, q] or concat [q, k, q-k, q*k] (default outer)")
    train.add_argument("--activation", choices=("dice", "prelu"),
                       help="activation of the MLP and the activation unit (default dice)")
    train.add_argument("--reg", choices=("mba", "l2", "none"),
                       help="embedding regularization (default mba, mini-batch aware)")
    train.add_argument("--epochs", type=int, help="maximum number of epochs (default: the dataset's default)")
    train.add_argument("--batch-size", type=int, help="samples per SGD step (default: the dataset's default)")
    train.add_argument("--lr", type=float, help="initial learning rate (default: the dataset's default)")
    train.add_argument("--schedule", choices=("constant", "step"),
                       help="learning rate schedule; step halves it after every epoch (default: the dataset's default)")
    train.add_argument("--reg-lambda", type=float,
                       help="lambda of the embedding regularization (default: the dataset's default)")
    train.add_argument("--weight-decay", type=float,
                       help="L2 on the MLP weight matrices (default: the dataset's default)")
    train.add_argument("--item-bias-init", choices=("zero", "click_rate"),
                       help="start of the per-item bias: zero, or each item's smoothed training click "
                            "log-odds (default: the dataset's default)")
    train.add_argument("--item-bias-reg-lambda", type=float,
                       help="lambda of the item bias's own regularization (default: the dataset's default)")
    train.add_argument("--patience", type=int,
                       help="stop after this many epochs without a better validation AUC; 0 never stops early "
                            "(default: the dataset's default)")
    train.add_argument("--seed", type=int, default=0,
                       help="seed of the data split, the initial parameters and the shuffling (default 0)")
    train.add_argument("--out", type=Path, help="output folder (default runs/<data>-<model>)")
    train.add_argument("--quiet", action="store_true", help="print only the final metrics")

    evaluate = commands.add_parser("evaluate", help="score a checkpoint on the test split it was trained with")
    evaluate.add_argument("--checkpoint", type=Path, required=True, help="model.npz written by train")
    evaluate.add_argument("--data", choices=DATASETS,
                          help="dataset name; must match the checkpoint's (default: the checkpoint's)")
    evaluate.add_argument("--data-dir", type=Path, help="folder with a local copy of the data (default: the checkpoint's)")
    evaluate.add_argument("--out", type=Path, help="JSON file for the metrics (default: evaluation.json beside the checkpoint)")

    compare = commands.add_parser("compare", help="train DIN, the BaseModel and popularity and print one table")
    _add_data_arguments(compare, COMPARE_DATASETS, required=True)
    compare.add_argument("--seeds", type=int, nargs="+", default=[0],
                         help="one run per seed; several give median and range (default 0)")
    compare.add_argument("--out", type=Path, help="output folder (default runs/compare-<data>)")
    compare.add_argument("--quiet", action="store_true", help="print only the table")

    demo = commands.add_parser("demo", help="compare the models on the built-in synthetic data")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    demo.add_argument("--quiet", action="store_true", help="print only the table")

    gradcheck = commands.add_parser("gradcheck", help="check every backward pass by finite differences")
    gradcheck.add_argument("--json", metavar="PATH", help="also write the rows to PATH as JSON")
    gradcheck.add_argument("--seed", type=int, default=0, help="seed of the random parameters and inputs (default 0)")
    return parser


def _add_data_arguments(parser, datasets, required: bool) -> None:
    parser.add_argument("--data", choices=datasets, required=required, help="dataset to use")
    parser.add_argument("--data-dir", type=Path,
                        help="folder with a local copy of the data (real datasets; default: the download cache)")
    parser.add_argument("--task", choices=TASKS,
                        help="MovieLens: 'rating' (a rating of 4 or more is a click, the default) or 'next' "
                             "(each rated movie against one random unrated movie); Amazon: 'next' only")
    parser.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                        help="extra option of the data source, repeatable, e.g. n_users=2000 for synthetic "
                             "or variant=ml-1m for movielens")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "gradcheck":
        return _run_gradcheck(args)

    quiet = getattr(args, "quiet", False)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    # matplotlib and the data readers log at INFO too; keep the output to tinydin's lines.
    logging.getLogger("matplotlib").setLevel(logging.WARNING)

    from tinydin.checkpoint import CheckpointError

    handlers = {"train": run_train, "evaluate": run_evaluate, "compare": run_compare, "demo": run_demo}
    try:
        return handlers[args.command](args)
    except (UsageError, CheckpointError, *USER_ERRORS) as exc:
        message = " ".join(str(exc).split())
        print(f"python -m tinydin {args.command}: error: {message}", file=sys.stderr)
        return 2


def _run_gradcheck(args) -> int:
    from tinydin.selfcheck import main as selfcheck_main

    argv = ["--seed", str(args.seed)] + (["--json", args.json] if args.json else [])
    return int(selfcheck_main(argv) or 0)


# Data -------------------------------------------------------------------------

def _parse_data_options(pairs: list[str]) -> dict:
    """Turn ["n_users=2000", "variant=ml-1m"] into {"n_users": 2000, "variant": "ml-1m"}."""
    options = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--data-option {pair!r} is not KEY=VALUE; write it as e.g. n_users=2000")
        try:
            options[key] = json.loads(text)  # numbers, true/false, null
        except json.JSONDecodeError:
            options[key] = text  # anything else is a string
    return options


def _data_recipe(name: str, data_dir, task, seed: int, options: dict | None = None) -> dict:
    """Return the JSON-serializable description from which `_load` rebuilds the splits."""
    if task is not None and name == "synthetic":
        raise UsageError("--task applies to movielens and amazon only; synthetic has one task, so drop --task")
    options = dict(options or {})
    if task is not None:
        options["task"] = task
    return {"name": name, "data_dir": None if data_dir is None else str(data_dir), "options": options, "seed": seed}


def _load(recipe: dict):
    from tinydin.data import load_dataset

    data_dir = recipe.get("data_dir")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UsageError(
            f"data folder {data_dir} not found; pass --data-dir with the folder that holds the "
            f"{recipe['name']} files, or omit it to use the download cache"
        )
    return load_dataset(recipe["name"], data_dir=data_dir, seed=recipe["seed"], **recipe.get("options", {}))


# train --------------------------------------------------------------------------

def _train_one(kind: str, splits, recipe: dict, seed: int, model_overrides: dict, train_overrides: dict):
    from tinydin.models import ModelConfig, build_model
    from tinydin.train import default_train_config, train

    config = ModelConfig.from_samples(splits.train, seed=seed, **model_overrides)
    model = build_model(kind, config)
    train_config = default_train_config(recipe["name"], kind, seed=seed, **train_overrides)
    result = train(model, splits, train_config)
    return model, train_config, result


def run_train(args) -> int:
    from tinydin.checkpoint import save_checkpoint
    from tinydin.plots import plot_attention_example, plot_curves

    model_overrides = {}
    if args.unit is not None:
        model_overrides["unit"] = args.unit
    if args.activation is not None:
        model_overrides["mlp_activation"] = args.activation
        model_overrides["attention_activation"] = args.activation
    train_overrides = {"verbose": not args.quiet}
    flags = (("reg", "embedding_reg"), ("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"),
             ("schedule", "schedule"), ("reg_lambda", "reg_lambda"), ("patience", "patience"),
             ("weight_decay", "weight_decay"), ("item_bias_init", "item_bias_init"),
             ("item_bias_reg_lambda", "item_bias_reg_lambda"))
    for flag, key in flags:
        value = getattr(args, flag)
        if value is not None:
            train_overrides[key] = value

    recipe = _data_recipe(args.data, args.data_dir, args.task, args.seed, _parse_data_options(args.data_option))
    out = args.out or Path("runs") / f"{args.data}-{args.model}"
    splits = _load(recipe)
    model, train_config, result = _train_one(args.model, splits, recipe, args.seed, model_overrides, train_overrides)

    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        "model": args.model,
        "data": recipe,
        "model_config": model.config.to_dict(),
        "train_config": train_config.to_dict(),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "seconds": result.seconds,
        "validation": result.validation,
        "test": result.test,
        "history": result.history,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    save_checkpoint(out / "model.npz", model, data=recipe,
                    extra={"train_config": train_config.to_dict(), "best_epoch": result.best_epoch})
    plot_curves(result.history, out / "curves.png", title=f"{args.model} on {args.data}")
    written = ["metrics.json", "model.npz", "curves.png"]
    if args.model == "din":
        plot_attention_example(model, splits.test, out / "attention.png")
        written.append("attention.png")

    print(_format_metrics(f"{args.model} on {args.data}, best epoch {result.best_epoch}", result.test))
    print(f"wrote {', '.join(written)} in {out}")
    return 0


def _format_metrics(title: str, metrics: dict) -> str:
    gauc = "n/a" if metrics.get("gauc") is None else f"{metrics['gauc']:.4f}"
    line = f"{title}: test auc {metrics['auc']:.4f} | gauc {gauc} | logloss {metrics['logloss']:.4f} | n {metrics['n']}"
    if "oracle_auc" in metrics:
        line += f" | oracle auc {metrics['oracle_auc']:.4f}"
    return line


# evaluate -------------------------------------------------------------------------

def run_evaluate(args) -> int:
    from tinydin.checkpoint import load_checkpoint
    from tinydin.train import evaluate

    checkpoint = load_checkpoint(args.checkpoint)
    recipe = dict(checkpoint.data)
    if "name" not in recipe or "seed" not in recipe:
        raise UsageError(
            f"{args.checkpoint} stores no data source, so its test split cannot be rebuilt; "
            f"save it with save_checkpoint(..., data=...) or retrain with 'python -m tinydin train'"
        )
    if args.data is not None and args.data != recipe["name"]:
        raise UsageError(
            f"--data {args.data} does not match the checkpoint, which was trained on {recipe['name']}; "
            f"omit --data or pass --data {recipe['name']}"
        )
    if args.data_dir is not None:
        recipe["data_dir"] = str(args.data_dir)

    splits = _load(recipe)
    metrics = evaluate(checkpoint.model, splits.test)
    out = args.out or args.checkpoint.parent / "evaluation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "data": recipe, "test": metrics}, indent=1) + "\n",
                   encoding="utf-8")
    print(_format_metrics(f"{checkpoint.kind} on {recipe['name']}", metrics))
    print(f"wrote {out}")
    return 0


# compare and demo --------------------------------------------------------------------

COMPARED = (("din", "DIN"), ("base", "BaseModel"), ("popularity", "Popularity"))


def run_compare(args) -> int:
    out = args.out or Path("runs") / f"compare-{args.data}"
    return _compare(args.data, args.data_dir, args.task, _parse_data_options(args.data_option), args.seeds, out,
                    verbose=not args.quiet)


def run_demo(args) -> int:
    return _compare("synthetic", None, None, {}, [0], args.out, verbose=not args.quiet)


def _compare(data: str, data_dir, task, options: dict, seeds: list[int], out: Path, verbose: bool) -> int:
    from tinydin.metrics import rela_impr

    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {' '.join(map(str, seeds))} repeats a seed; give each seed once")

    runs = []  # one dict per (seed, model)
    for seed in seeds:
        recipe = _data_recipe(data, data_dir, task, seed, options)
        splits = _load(recipe)
        for kind, label in COMPARED:
            logging.getLogger("tinydin.cli").info("== %s, seed %d ==", label, seed)
            started = time.perf_counter()
            _, _, result = _train_one(kind, splits, recipe, seed, {}, {"verbose": verbose})
            runs.append({
                "seed": seed, "model": kind, "test": result.test, "validation": result.validation,
                "best_epoch": result.best_epoch, "epochs_run": len(result.history) if kind != "popularity" else 0,
                "seconds": time.perf_counter() - started,
            })

    # RelaImpr against the BaseModel of the same seed (same data split).
    base_auc = {run["seed"]: run["test"]["auc"] for run in runs if run["model"] == "base"}
    for run in runs:
        try:
            run["rela_impr"] = rela_impr(run["test"]["auc"], base_auc[run["seed"]])
        except ValueError:
            run["rela_impr"] = None  # the BaseModel is at or below chance: RelaImpr is undefined

    table = _compare_table(runs, seeds)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"data": data, "seeds": seeds, "runs": runs}, indent=1) + "\n",
                                      encoding="utf-8")
    (out / "table.md").write_text(table + "\n", encoding="utf-8")
    print(f"wrote {out / 'results.json'} and {out / 'table.md'}")
    return 0


def _summary(values: list, digits: int, suffix: str = "") -> str:
    """Return "value" for one run, "median [min, max]" for several; "n/a" if any is missing."""
    if any(value is None for value in values):
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}{suffix}"
    return (f"{statistics.median(values):.{digits}f}{suffix} "
            f"[{min(values):.{digits}f}, {max(values):.{digits}f}]")


def _compare_table(runs: list[dict], seeds: list[int]) -> str:
    header = ["model", "test AUC", "test GAUC", "test log loss", "RelaImpr", "epochs", "time (s)"]
    rows = []
    for kind, label in COMPARED:
        mine = [run for run in runs if run["model"] == kind]
        rows.append([
            label,
            _summary([run["test"]["auc"] for run in mine], 4),
            _summary([run["test"]["gauc"] for run in mine], 4),
            _summary([run["test"]["logloss"] for run in mine], 4),
            _summary([run["rela_impr"] for run in mine], 1, "%"),
            _summary([run["best_epoch"] for run in mine], 0) if kind != "popularity" else "-",
            _summary([run["seconds"] for run in mine], 0),
        ])

    oracle = [run["test"].get("oracle_auc") for run in runs if run["model"] == "din"]
    if oracle and all(value is not None for value in oracle):
        oracle_gauc = [run["test"].get("oracle_gauc") for run in runs if run["model"] == "din"]
        oracle_logloss = [run["test"]["oracle_logloss"] for run in runs if run["model"] == "din"]
        rows.append(["oracle (true p)", _summary(oracle, 4), _summary(oracle_gauc, 4), _summary(oracle_logloss, 4),
                     "-", "-", "-"])

    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(header, widths)) + " |",
             "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) + " |")
    note = f"seeds {', '.join(map(str, seeds))}"
    if len(seeds) > 1:
        note += ": median [min, max] over seeds"
    note += "; epochs = best epoch on validation AUC; RelaImpr against the BaseModel"
    return "\n".join(lines) + "\n" + note
