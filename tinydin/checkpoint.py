"""Checkpoints: one .npz file with a trained model and the recipe of its data.

Layout of the archive (every member a plain array, so it loads with
allow_pickle=False):

    meta              0-d string: JSON with format_version, kind ("din", "base",
                      "popularity"), config (ModelConfig.to_dict()), data (source
                      name, data_dir, options, seed) and any extra fields the caller
                      stores (train config, best epoch)
    param/<name>      every entry of model.params, in its own dtype
    state/<name>      every Dice running statistic (model.state())

Parameters are stored bit for bit, so save -> load -> predict returns exactly the
probabilities of the saved model. Loading checks every key and every shape
against a model rebuilt from the stored config and raises CheckpointError, whose
message names the file and the problem on one line.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinydin.models import ModelConfig, Popularity, build_model

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged or does not match its own config."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt model and what was stored beside it."""

    model: object                   # DIN, BaseModel or Popularity with the stored values
    kind: str                       # "din", "base" or "popularity"
    data: dict                      # name, data_dir, options, seed of the data source
    extra: dict = field(default_factory=dict)  # anything else save_checkpoint was given
    path: Path | None = None


def save_checkpoint(path, model, data: dict | None = None, extra: dict | None = None) -> Path:
    """Write `model` and its data recipe to `path` (.npz) and return the path.

    data: how to rebuild the splits, e.g. {"name": "synthetic", "data_dir": None,
    "options": {}, "seed": 0}. extra: JSON-serializable facts to keep (train
    config, best epoch). The file is written to a temporary name first and then
    renamed, so an interrupted save never leaves half a checkpoint at `path`.
    """
    path = Path(path)
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": model.kind,
        "config": model.config.to_dict(),
        "data": data or {},
        "extra": extra or {},
    }
    if isinstance(model, Popularity):
        if model.rates is None:
            raise ValueError("the popularity model is not fitted; call fit(train_samples) before saving it")
        meta["popularity"] = {"prior": model.prior, "prior_strength": model.prior_strength}

    arrays = {"meta": np.array(json.dumps(meta, sort_keys=True))}
    for name, value in model.params.items():
        arrays[f"param/{name}"] = value
    for name, value in model.state().items():
        arrays[f"state/{name}"] = value

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path


def load_checkpoint(path) -> Checkpoint:
    """Rebuild the model stored at `path`; raise CheckpointError if anything is missing or wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such checkpoint file; pass the model.npz that 'python -m tinydin train' wrote"
        )

    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({detail}); the file is damaged or not a tinydin "
            f".npz, so copy it again or retrain"
        ) from exc

    meta = _read_meta(path, arrays)
    kind = meta["kind"]
    try:
        config = ModelConfig.from_dict(meta["config"])
        model = build_model(kind, config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the stored model config is invalid: {exc}") from exc

    if isinstance(model, Popularity):
        _load_popularity(path, model, meta, arrays)
    else:
        _load_arrays(path, "param", model.params, arrays)
        _load_arrays(path, "state", model.state(), arrays)

    unexpected = sorted(key for key in arrays if key != "meta" and not _expected(key, model))
    if unexpected:
        raise CheckpointError(
            f"{path}: unexpected arrays {unexpected[:3]} that the stored {kind} config does not have; "
            f"the file was edited or written by another version of tinydin"
        )
    return Checkpoint(model=model, kind=kind, data=meta.get("data", {}), extra=meta.get("extra", {}), path=path)


def _read_meta(path: Path, arrays: dict) -> dict:
    if "meta" not in arrays:
        raise CheckpointError(
            f"{path}: missing key 'meta'; this .npz was not written by tinydin.checkpoint.save_checkpoint"
        )
    try:
        meta = json.loads(str(arrays["meta"]))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: the 'meta' entry is not valid JSON ({exc}); the file is damaged") from exc

    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the 'meta' entry is not a JSON object; the file is damaged")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is not supported (this tinydin reads "
            f"version {FORMAT_VERSION}); retrain the model with this version"
        )
    for key in ("kind", "config"):
        if key not in meta:
            raise CheckpointError(f"{path}: meta has no '{key}'; the file is damaged")
    return meta


def _load_arrays(path: Path, prefix: str, targets: dict[str, np.ndarray], arrays: dict) -> None:
    """Copy arrays["<prefix>/<name>"] into each target array, checking presence, shape and dtype."""
    for name, target in targets.items():
        key = f"{prefix}/{name}"
        if key not in arrays:
            raise CheckpointError(
                f"{path}: missing array '{key}' that the stored config needs; the file is damaged "
                f"or incomplete, so retrain or copy it again"
            )
        value = arrays[key]
        if value.shape != target.shape:
            raise CheckpointError(
                f"{path}: array '{key}' has shape {value.shape} but the stored config gives "
                f"{target.shape}; the file's arrays and config do not match"
            )
        if value.dtype != target.dtype:
            raise CheckpointError(
                f"{path}: array '{key}' has dtype {value.dtype} but the stored config gives "
                f"{target.dtype}; the file's arrays and config do not match"
            )
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"{path}: array '{key}' contains NaN or inf; the saved model had diverged or the file is damaged, so retrain")
        # Write into the model's own arrays: its layers hold the same objects.
        target[...] = value


def _load_popularity(path: Path, model: Popularity, meta: dict, arrays: dict) -> None:
    stored = meta.get("popularity")
    if not isinstance(stored, dict) or "prior" not in stored or "prior_strength" not in stored:
        raise CheckpointError(f"{path}: meta has no popularity prior; the file is damaged")
    rates = np.empty(model.config.vocab_sizes[0] + 1, dtype=np.float64)
    _load_arrays(path, "param", {"rates": rates}, arrays)
    model.rates = rates
    model.prior = float(stored["prior"])
    model.prior_strength = float(stored["prior_strength"])


def _expected(key: str, model) -> bool:
    prefix, _, name = key.partition("/")
    if prefix == "param":
        return name in model.params
    if prefix == "state":
        return name in model.state()
    return False
