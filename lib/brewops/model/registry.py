"""The model registry: one folder per version, locally and under s3://BUCKET/models/ibu/.

A version folder holds
- `model.joblib`: the fitted `IbuModel` (scikit-learn pipelines, serialised with joblib),
- `metrics.json`: the figures of the evaluation protocol,
- `model_card.json` and `model_card.md`: data checksum, rows used, features, parameters,
  library versions, the code's git commit, metrics, and the sha256 of `model.joblib`.

joblib files are pickles: loading one runs whatever code the file holds. A model is only
loaded after its sha256 matches the one its card records, which catches a damaged or
mismatched file but not a replaced one: the card lies beside the model, and whoever may
write one may write both. So load only from a registry whose write access you control (on
AWS: who may put objects under models/ in the bucket; no role of the stack may).

Version ids sort in time order: `YYYYMMDDTHHMMSSZ-<first 8 hex of the data sha256>`, the
UTC second a version was registered. A registered version is never overwritten: each file
goes up only if it is not there yet (an S3 conditional write), and a registration of the
same data in a second already taken takes the next free second.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brewops.errors import ActionableError, refused_deletions
from brewops.files import make_folder, naming, sha256_file
from brewops.jsontext import parse_json

if TYPE_CHECKING:
    from brewops.model.estimators import IbuModel

MODEL_FILE = "model.joblib"
METRICS_FILE = "metrics.json"
CARD_FILE = "model_card.json"
CARD_MARKDOWN_FILE = "model_card.md"
VERSION_FILES = (MODEL_FILE, METRICS_FILE, CARD_FILE, CARD_MARKDOWN_FILE)
VERSION_PATTERN = re.compile(r"\A\d{8}T\d{6}Z-[0-9a-f]{8}\Z")  # \Z: no trailing newline
VERSION_TIME = "%Y%m%dT%H%M%SZ"  # a version starts with the UTC second it was registered
# seconds `register` moves on when the same data was registered in the same second
_FREE_SECOND_TRIES = 10


class RegistryError(RuntimeError, ActionableError):
    """A version is missing, incomplete or does not match its card."""


class VersionExistsError(RegistryError):
    """A version (or part of one) is already under that id: it is not overwritten."""


@dataclass
class LoadedModel:
    """A registered version as `load_version` returns it: the model, its metrics and card."""

    model: IbuModel
    metrics: dict[str, Any]
    card: dict[str, Any]
    version: str | None
    # the version folder, or the version's s3:// URI (its downloaded copy is not kept)
    path: Path | str


def new_version(data_sha256: str, now: datetime | None = None) -> str:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:{VERSION_TIME}}-{data_sha256[:8].lower()}"


# ---------------------------------------------------------------------------------------
# Local folders


def save(model: Any, metrics: dict[str, Any], card: dict[str, Any], out_dir: str | Path) -> Path:
    """Write a version folder (created if needed) and return its path.

    The files are written whole in a scratch folder inside it, then moved in, the card
    last: a save that dies while writing (killed, a full disk) leaves the version the folder
    held before. One killed between the moves leaves a model its card does not match, which
    `load` refuses."""
    import joblib

    out = Path(out_dir)
    make_folder(out)
    with naming(out), tempfile.TemporaryDirectory(dir=out, prefix=".partial-") as scratch:
        written = Path(scratch)
        joblib.dump(model, written / MODEL_FILE, compress=3)
        card = dict(card)
        card["artifact"] = {"file": MODEL_FILE, "sha256": sha256_file(written / MODEL_FILE)}
        _write_json(written / METRICS_FILE, metrics)
        _write_json(written / CARD_FILE, card)
        (written / CARD_MARKDOWN_FILE).write_text(card_markdown(card), encoding="utf-8")
        for name in (MODEL_FILE, METRICS_FILE, CARD_MARKDOWN_FILE, CARD_FILE):
            os.replace(written / name, out / name)
    return out


def load(path: str | Path, version: str | None = None) -> LoadedModel:
    """Load a version folder, after checking the model file against its card."""
    import joblib

    from brewops.model.estimators import IbuModel

    folder = Path(path)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise RegistryError(
            f"{folder} {what}: a model is a version folder, made by `brewops model train "
            "--catalog FILE --out DIR`, or a registered version, s3://BUCKET/models/ibu/VERSION"
        )
    missing = [
        name for name in (MODEL_FILE, METRICS_FILE, CARD_FILE) if not (folder / name).is_file()
    ]
    if missing:
        raise RegistryError(f"{folder} is not a model version folder: missing {', '.join(missing)}")
    card = _read_json_object(folder / CARD_FILE)
    artifact = card.get("artifact")
    expected = artifact.get("sha256") if isinstance(artifact, dict) else None
    actual = sha256_file(folder / MODEL_FILE)
    if expected != actual:
        raise RegistryError(
            f"{folder / MODEL_FILE} has sha256 {actual}, its card says {expected}: not loading "
            "it. Train the model again with `brewops model train`, or load another version."
        )
    metrics = _read_json_object(folder / METRICS_FILE)
    try:
        model = joblib.load(folder / MODEL_FILE)
    # Unpickling fails in many ways (a class or module that moved, a changed attribute,
    # a truncated stream): each means this installation cannot use the file.
    except Exception as error:
        raise RegistryError(
            f"{folder / MODEL_FILE} does not load ({type(error).__name__}: {error}). "
            + _library_hint(card)
        ) from error
    if not isinstance(model, IbuModel):
        raise RegistryError(
            f"{folder / MODEL_FILE} holds a {type(model).__name__}, not an IBU model. "
            "Train the model again with `brewops model train`."
        )
    differences = model.differences_from_code()
    if differences:
        raise RegistryError(
            f"{folder / MODEL_FILE} was trained with {'; and with '.join(differences)}: "
            "its predictions would be labelled wrongly. Train the model again with "
            "`brewops model train`, or load it with the code it was trained with."
        )
    return LoadedModel(
        model=model,
        metrics=metrics,
        card=card,
        version=version or card.get("version"),
        path=folder,
    )


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = parse_json(path.read_text(encoding="utf-8"))
    # ValueError: not JSON (nested too deeply too), not UTF-8, or an integer of more than
    # 4,300 digits
    except (OSError, ValueError) as error:
        raise RegistryError(
            f"{path} is not readable JSON ({error}): the version is damaged. "
            "Train the model again with `brewops model train`, or load another version."
        ) from error
    if not isinstance(data, dict):
        raise RegistryError(
            f"{path} holds a JSON {type(data).__name__}, not an object: the version is damaged. "
            "Train the model again with `brewops model train`, or load another version."
        )
    return data


def _library_hint(card: dict[str, Any]) -> str:
    """What to do about a model file that does not load: the library versions it was saved
    with, where they differ from the installed ones, or else retrain."""
    from brewops.model.train import library_versions

    saved = card.get("library_versions")
    installed_versions = library_versions()  # what a card records, for this installation
    differing = []
    for name, version in (saved if isinstance(saved, dict) else {}).items():
        installed = installed_versions.get(name)
        if installed != version:
            differing.append(f"{name} {version} (installed: {installed or 'none'})")
    if differing:
        return (
            f"It was saved with {', '.join(differing)}: install those versions, or train the "
            "model again with `brewops model train`."
        )
    return "Train the model again with `brewops model train`."


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Files people read: beer names as they are spelled (Bräu, not Br\\u00e4u)."""
    text = json.dumps(
        strict_json(data),
        indent=2,
        sort_keys=True,
        allow_nan=False,
        default=str,
        ensure_ascii=False,
    )
    path.write_text(text + "\n", encoding="utf-8")


def strict_json(value: Any) -> Any:
    """`value` as strict JSON holds it: numpy scalars and arrays as numbers and lists, a
    non-finite float (R² of a single beer, say) as null, which every JSON reader accepts."""
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(item) for item in value]
    if hasattr(value, "tolist"):  # not .item(), which refuses an array of more than one value
        return strict_json(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _cross_validation(card: dict[str, Any]) -> str:
    """The CV the card's protocol ran, e.g. "stratified 5-fold CV, 5 repeats"."""
    protocol = card.get("protocol")
    if not isinstance(protocol, dict):
        protocol = {}
    n_splits, n_repeats = protocol.get("n_splits"), protocol.get("n_repeats")
    folds = f"stratified {n_splits}-fold CV" if n_splits else "stratified k-fold CV"
    if n_repeats:
        folds += f", {n_repeats} repeat{'s' if n_repeats != 1 else ''}"
    return folds


def _beers_per_band(card: dict[str, Any]) -> list[str]:
    per_band = card.get("data", {}).get("beers_per_band")
    if not isinstance(per_band, dict):  # a card written before it was recorded
        return []
    return ["- beers per band: " + ", ".join(f"{band} {n}" for band, n in per_band.items())]


def _training_ranges(card: dict[str, Any]) -> list[str]:
    data = card.get("data", {})
    ranges, hops = data.get("feature_ranges"), data.get("hop_varieties")
    if not isinstance(ranges, dict) or not isinstance(hops, list):  # a card written before
        return []
    return [
        f"- training ranges: {len(ranges)} features, {len(hops)} hop varieties "
        "(data.feature_ranges, data.hop_varieties: a beer outside them is an extrapolation)"
    ]


def _intervals(intervals: Any) -> list[str]:
    """The card's intervals: the model's figures, then its lead over each baseline."""
    if not isinstance(intervals, dict):  # a card written before they were computed
        return []

    def shown(figures: dict[str, list[float]]) -> str:
        return ", ".join(f"{key} [{low:.3f}, {high:.3f}]" for key, (low, high) in figures.items())

    lines = [
        "",
        f"## How sure: {intervals['confidence']:.0%} intervals "
        "(bootstrap over the beers scored, one recipe's beers together)",
    ]
    for evaluation, title in (("cv", "cross-validation"), ("time_split", "newest fifth")):
        lines.append(f"- {title}: {shown(intervals[evaluation])}")
        for name, figures in intervals[f"{evaluation}_model_minus"].items():
            lines.append(f"  - model minus {name}: {shown(figures)}")
    return lines


def _code(card: dict[str, Any]) -> list[str]:
    code = card.get("code")
    if not isinstance(code, dict):  # a card written before it was recorded
        return []
    commit = code.get("commit")
    if not commit:
        # git refuses a checkout another user owns (its safe.directory), as if it were none
        shown = "no git commit recorded (not run from a git checkout git could read)"
    else:
        shown = f"commit `{commit}`" + (
            ", with changes not committed" if code.get("modified") else ""
        )
    return ["## Code", f"brewops {code.get('brewops')}, {shown}", ""]


def card_markdown(card: dict[str, Any]) -> str:
    """The model card as a short human-readable page."""
    metrics = card.get("metrics", {})
    lines = [
        f"# Model card: {card.get('model', 'IBU model')} {card.get('version', '')}".rstrip(),
        "",
        card.get("task", ""),
        "",
        "## Data",
        f"- rows used: {card.get('data', {}).get('rows_used')}",
        f"- sha256: `{card.get('data', {}).get('sha256')}`",
        f"- rule: {card.get('data', {}).get('rule')}",
        *_beers_per_band(card),
        *_training_ranges(card),
        "",
        f"## Metrics ({_cross_validation(card)})",
    ]
    for key, value in (metrics.get("cv") or {}).items():
        lines.append(f"- {key}: {value:.3f}" if isinstance(value, float) else f"- {key}: {value}")
    lines += ["", "## Baselines (same folds)"]
    for name, values in (metrics.get("baselines") or {}).items():
        shown = ", ".join(f"{k} {v:.3f}" for k, v in values.items())
        lines.append(f"- {name}: {shown}")
    split = metrics.get("time_split") or {}
    if split:
        shown = ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in split.items()
        )
        lines += ["", "## Newest fifth by first_brewed (trained on the older beers)", f"- {shown}"]
    lines += _intervals(metrics.get("intervals"))
    lines += [
        "",
        "## Features",
        ", ".join(card.get("features", [])),
        "",
        "## Parameters",
        "```json",
        json.dumps(card.get("params", {}), indent=2),
        "```",
        "",
        "## Library versions",
        ", ".join(f"{k} {v}" for k, v in (card.get("library_versions") or {}).items()),
        "",
        *_code(card),
        "## Intended use and limitations",
        card.get("intended_use", ""),
        "",
        card.get("limitations", ""),
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# S3


def split_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/models/ibu/ -> ("bucket", "models/ibu/")."""
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", uri)
    if not match:
        raise ValueError(f"not an s3:// URI: {uri}")
    prefix = match.group(2)
    return match.group(1), (prefix.rstrip("/") + "/") if prefix else ""


def _s3(client: Any = None) -> Any:
    if client is not None:
        return client
    from brewops.target import aws_session

    return aws_session().client("s3")


def _sdk_errors() -> tuple[type[Exception], ...]:
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError, Boto3Error)


@contextmanager
def _s3_errors(uri: str) -> Iterator[None]:
    """A failure of S3 or of the SDK (no such bucket, no credentials) as a RegistryError."""
    try:
        yield
    except _sdk_errors() as error:
        raise RegistryError(
            f"{uri} cannot be used: {error}. Check the bucket name, and that your AWS "
            "credentials and region give access to it."
        ) from error


def _check_version(version: str) -> None:
    """A version goes into S3 keys and local folder names: nothing else may."""
    if not VERSION_PATTERN.match(version):
        raise ValueError(f"version {version!r} does not look like YYYYMMDDTHHMMSSZ-<hash8>")


def publish(folder: str | Path, registry_uri: str, version: str, client: Any = None) -> str:
    """Upload a version folder to <registry_uri><version>/ and return that URI.

    Each file is written only if its key is free (`IfNoneMatch="*"`, which S3 checks
    atomically): a version already there, complete or not, is left as it is and
    VersionExistsError raised, also when another upload of that id runs at the same time."""
    _check_version(version)
    bucket, prefix = split_uri(registry_uri)
    folder = Path(folder)
    # its card makes a version complete to every reader: never one without its model
    missing = [
        name for name in (MODEL_FILE, METRICS_FILE, CARD_FILE) if not (folder / name).is_file()
    ]
    if missing:
        raise RegistryError(
            f"{folder} is not a model version folder: missing {', '.join(missing)}; nothing "
            "was published. Give a folder made by `brewops model train --catalog FILE --out DIR`."
        )
    uri = f"s3://{bucket}/{prefix}{version}/"
    upload = uuid.uuid4().hex  # tells this upload's objects from another's of the same id
    with _s3_errors(registry_uri):
        s3 = _s3(client)
        # the card last: a version with a card is complete
        for name in (MODEL_FILE, METRICS_FILE, CARD_MARKDOWN_FILE, CARD_FILE):
            if (folder / name).is_file():
                _put_new(s3, folder / name, bucket, f"{prefix}{version}/{name}", uri, upload)
    return uri


# the object metadata naming the upload that wrote a version's file
UPLOAD_METADATA = "brewops-upload"


def _put_new(s3: Any, path: Path, bucket: str, key: str, version_uri: str, upload: str) -> None:
    """Upload a file to a key that must be free, in one PUT: the transfer manager
    (`upload_file`) passes no write condition, and a model of a few megabytes is below its
    multipart threshold anyway."""
    from botocore.exceptions import ClientError

    try:
        with open(path, "rb") as body:
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                IfNoneMatch="*",
                Metadata={UPLOAD_METADATA: upload},
            )
    except ClientError as error:
        # 412: the key is there; 409: another conditional write of it is under way
        code = error.response.get("Error", {}).get("Code")
        if code not in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise
        if _own_write_answered_late(s3, error, bucket, key, upload):
            return
        raise VersionExistsError(
            f"{version_uri} already holds a version (s3://{bucket}/{key} is there): it is not "
            "overwritten. Register under another version, or first delete that one "
            "(`registry.delete_version`)."
        ) from error


def _own_write_answered_late(s3: Any, error: Any, bucket: str, key: str, upload: str) -> bool:
    """Whether a PUT refused as taken was botocore's retry of this upload's own write: S3
    wrote the first attempt but its answer was lost (a timeout, a 5xx), so the key holds
    what this upload sent."""
    from botocore.exceptions import BotoCoreError, ClientError

    if not error.response.get("ResponseMetadata", {}).get("RetryAttempts"):
        return False  # refused at the first attempt: another upload's
    try:
        there = s3.head_object(Bucket=bucket, Key=key).get("Metadata", {})
    except (BotoCoreError, ClientError):
        return False
    return there.get(UPLOAD_METADATA) == upload


def register(
    model: Any,
    metrics: dict[str, Any],
    card: dict[str, Any],
    registry_uri: str,
    version: str | None = None,
    client: Any = None,
    now: datetime | None = None,
) -> tuple[str, str]:
    """Write the version locally (a temporary folder) and publish it; (version, uri).

    Without `version`, the id is `now` (the current time) and the data's sha256; when that
    id is taken (the same data registered in the same second), the next second's is tried:
    no version replaces another, and the later registration sorts after. A `version` given
    that is taken raises VersionExistsError."""
    data_sha256 = card.get("data", {}).get("sha256", "0" * 8)
    moment = now or datetime.now(UTC)
    with _s3_errors(registry_uri):
        s3 = _s3(client)
    seconds_later = 0
    while True:
        candidate = version or new_version(data_sha256, moment + timedelta(seconds=seconds_later))
        with tempfile.TemporaryDirectory(prefix="brewops-model-") as tmp:
            save(model, metrics, {**card, "version": candidate}, tmp)
            try:
                return candidate, publish(tmp, registry_uri, candidate, client=s3)
            except VersionExistsError:
                seconds_later += 1
                if version or seconds_later == _FREE_SECOND_TRIES:
                    raise


def list_versions(registry_uri: str, client: Any = None) -> list[str]:
    """Complete versions (those with a model card), oldest first."""
    return sorted(
        version
        for version, names in _version_files(registry_uri, client).items()
        if CARD_FILE in names
    )


def _version_files(registry_uri: str, client: Any = None) -> dict[str, set[str]]:
    """The file names in each version folder, complete or not, from one listing."""
    bucket, prefix = split_uri(registry_uri)
    files: dict[str, set[str]] = {}
    with _s3_errors(registry_uri):
        pages = _s3(client).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix) :]
                version, _, name = relative.partition("/")
                if VERSION_PATTERN.match(version):
                    files.setdefault(version, set()).add(name)
    return files


def latest_version(registry_uri: str, client: Any = None) -> str:
    versions = list_versions(registry_uri, client=client)
    if not versions:
        raise RegistryError(f"no model version under {registry_uri}")
    return versions[-1]


@dataclass
class VersionSummary:
    """What a user compares between versions, read from a version's metrics.json and model
    card (model.joblib is not downloaded); `problems` says what is wrong with the version."""

    version: str
    uri: str
    trained_at: str | None = None
    rows_used: int | None = None
    data_sha256: str | None = None
    cv_accuracy: float | None = None
    cv_macro_f1: float | None = None
    cv_mae: float | None = None
    newest_fifth_accuracy: float | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class RegistryListing:
    """What `describe_versions` found under a registry: its complete versions, oldest first
    (`versions_table` shows them), and the folders of versions not complete."""

    uri: str
    versions: list[VersionSummary]  # complete versions, oldest first
    incomplete: list[str]  # folders without a model card: an upload in progress or cut short


# each figure of a summary: where metrics.json holds it, and where the model card does
_SUMMARY_FIGURES = {
    "rows_used": (("data", "rows_used"), ("data", "rows_used")),
    "data_sha256": (("data", "sha256"), ("data", "sha256")),
    "cv_accuracy": (("cv", "accuracy"), ("metrics", "cv", "accuracy")),
    "cv_macro_f1": (("cv", "macro_f1"), ("metrics", "cv", "macro_f1")),
    "cv_mae": (("cv", "mae"), ("metrics", "cv", "mae")),
    "newest_fifth_accuracy": (("time_split", "accuracy"), ("metrics", "time_split", "accuracy")),
}


def describe_versions(registry_uri: str, client: Any = None) -> RegistryListing:
    """Every complete version with its headline figures, oldest first: one listing, then
    each version's metrics.json and model card (read a few versions at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    bucket, prefix = split_uri(registry_uri)
    with _s3_errors(registry_uri):
        s3 = _s3(client)
    files = _version_files(registry_uri, client=s3)
    complete = sorted(version for version, names in files.items() if CARD_FILE in names)
    incomplete = sorted(version for version, names in files.items() if CARD_FILE not in names)

    def describe(version: str) -> VersionSummary:
        return _summarise(s3, bucket, f"{prefix}{version}/", version, files[version])

    with ThreadPoolExecutor(max_workers=8) as pool:  # boto3 clients are thread-safe
        summaries = list(pool.map(describe, complete))
    return RegistryListing(f"s3://{bucket}/{prefix}", summaries, incomplete)


def _summarise(s3: Any, bucket: str, folder: str, version: str, names: set[str]) -> VersionSummary:
    summary = VersionSummary(version=version, uri=f"s3://{bucket}/{folder}")
    card, card_problem = _read_s3_json(s3, bucket, folder, CARD_FILE)
    metrics, metrics_problem = (
        _read_s3_json(s3, bucket, folder, METRICS_FILE)
        if METRICS_FILE in names
        else (None, f"{METRICS_FILE} is missing")
    )
    if MODEL_FILE not in names:
        summary.problems.append(f"{MODEL_FILE} is missing")
    summary.problems += [problem for problem in (card_problem, metrics_problem) if problem]
    if card is not None:
        trained_at = card.get("trained_at")
        summary.trained_at = trained_at if isinstance(trained_at, str) else None
    # the figures from metrics.json; from the card when metrics.json cannot be used
    source, name = (metrics, METRICS_FILE) if metrics is not None else (card, CARD_FILE)
    if source is None:
        return summary
    if metrics is None:
        summary.problems.append(f"figures from {CARD_FILE}")
    absent = []
    for attribute, places in _SUMMARY_FIGURES.items():
        path = places[0] if source is metrics else places[1]
        value = _dig(source, path)
        wanted = str if attribute == "data_sha256" else int if attribute == "rows_used" else float
        if _is_a(value, wanted):
            setattr(summary, attribute, float(value) if wanted is float else value)
        else:
            absent.append(".".join(path))
    if absent:
        summary.problems.append(f"no {', '.join(absent)} in {name}")
    return summary


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _is_a(value: Any, kind: type) -> bool:
    if isinstance(value, bool):  # JSON true is no figure
        return False
    if kind is float:
        try:
            return isinstance(value, int | float) and math.isfinite(value)
        except OverflowError:  # an integer beyond any float: no figure either
            return False
    return isinstance(value, kind)


def _read_s3_json(
    s3: Any, bucket: str, folder: str, name: str
) -> tuple[dict[str, Any] | None, str | None]:
    """(the JSON object in s3://bucket/folder+name, None), or (None, what is wrong with it)."""
    from botocore.exceptions import ClientError

    try:
        body = s3.get_object(Bucket=bucket, Key=f"{folder}{name}")["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None, f"{name} is missing"
        return None, f"{name} cannot be read ({error})"
    except _sdk_errors() as error:
        return None, f"{name} cannot be read ({error})"
    try:
        data = parse_json(body)
    except ValueError as error:  # not JSON, or not UTF-8
        return None, f"{name} is not readable JSON ({error})"
    if not isinstance(data, dict):
        return None, f"{name} holds a JSON {type(data).__name__}, not an object"
    return data, None


VERSION_COLUMNS = (
    ("version", "version"),
    ("trained (UTC)", "trained_at"),
    ("rows", "rows_used"),
    ("data sha256", "data_sha256"),
    ("cv accuracy", "cv_accuracy"),
    ("cv macro-F1", "cv_macro_f1"),
    ("newest fifth acc", "newest_fifth_accuracy"),
    ("cv MAE", "cv_mae"),
)


def versions_table(versions: list[VersionSummary]) -> str:
    """The versions as aligned plain text, one row each, a `problems` column when any has
    one: the table of `brewops model versions` and of notebook 05."""

    def shown(attribute: str, value: Any) -> str:
        if value is None:
            return "-"
        if attribute == "trained_at":  # 2025-06-01T12:00:00Z -> 2025-06-01 12:00
            return value.replace("T", " ")[:16]
        if attribute == "data_sha256":
            return value[:12]
        if attribute == "cv_mae":
            return f"{value:.1f}"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    header = [label for label, _ in VERSION_COLUMNS]
    rows = [[shown(attr, getattr(v, attr)) for _, attr in VERSION_COLUMNS] for v in versions]
    if any(v.problems for v in versions):
        header.append("problems")
        for row, version in zip(rows, versions, strict=True):
            row.append("; ".join(version.problems) or "-")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    left = {0, 1, 3, len(VERSION_COLUMNS)}  # text columns; the figures are right-aligned

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join(line(row) for row in (header, *rows))


def require_version(
    registry_uri: str, version: str, client: Any = None, started_at: str | None = None
) -> None:
    """Raise RegistryError, naming the versions there are, unless `version` is complete in
    the registry: a caller checks before work that would be lost when the load fails.
    `started_at`: when the local target, whose emulator holds the registry, started."""
    versions = list_versions(registry_uri, client=client)
    if version not in versions:
        there = ", ".join(versions[-5:]) if versions else "none"
        raise RegistryError(
            f"no model version {version} under {registry_uri}; the latest there: {there}"
            + _registered_before(version, started_at)
        )


def _registered_before(version: str, started_at: str | None) -> str:
    """Why a version registered before the local target started is gone, or ""."""
    if started_at is None or not isinstance(version, str) or not VERSION_PATTERN.match(version):
        return ""
    try:
        registered = datetime.strptime(version.split("-")[0], VERSION_TIME).replace(tzinfo=UTC)
        if registered >= datetime.fromisoformat(started_at):
            return ""
    except (ValueError, TypeError):  # not a date, or one without its zone: nothing to say
        return ""
    return (
        f". It was registered before this local target started ({started_at}): its registry "
        "lives in the emulator, and `brewops local down` discarded it with the emulator's "
        "data. Train the model again, or load a version registered since."
    )


def delete_version(registry_uri: str, version: str, client: Any = None) -> int:
    """Remove every object of a version; returns how many were deleted. Objects S3 refuses
    to delete (no permission, an object lock) are named in a RegistryError."""
    _check_version(version)
    bucket, prefix = split_uri(registry_uri)
    listed = 0
    refused: list[dict[str, Any]] = []
    with _s3_errors(registry_uri):
        s3 = _s3(client)
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{prefix}{version}/"
        ):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                # Quiet: the answer lists only the keys S3 did not delete
                answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                refused += answer.get("Errors", [])
                listed += len(keys)
    if refused:
        raise RegistryError(
            refused_deletions(refused, listed, f"of version {version} in s3://{bucket}")
        )
    return listed


def download(
    registry_uri: str,
    version: str | None = None,
    dest: str | Path | None = None,
    client: Any = None,
) -> Path:
    """Copy a version (the latest by default) into `dest` (a new temporary folder by default)."""
    with _s3_errors(registry_uri):
        s3 = _s3(client)
    version = version or latest_version(registry_uri, client=s3)
    _check_version(version)
    bucket, prefix = split_uri(registry_uri)
    folder = (
        Path(dest)
        if dest is not None
        else Path(tempfile.mkdtemp(prefix=f"brewops-model-{version}-"))
    )
    make_folder(folder)
    for name in VERSION_FILES:
        key = f"{prefix}{version}/{name}"
        try:
            # the SDK's error of a full disk names no file, so not which disk is full
            with naming(folder / name):
                s3.download_file(bucket, key, str(folder / name))
        except _sdk_errors() as error:
            if name in (MODEL_FILE, METRICS_FILE, CARD_FILE):  # the markdown card is optional
                raise RegistryError(
                    f"s3://{bucket}/{key} cannot be read: {error}. Check that the version "
                    "exists and that your AWS credentials may read it."
                ) from error
    return folder


def load_version(
    registry_uri: str,
    version: str | None = None,
    client: Any = None,
    dest: str | Path | None = None,
) -> LoadedModel:
    """Download and load a version from the registry (the latest by default). Without
    `dest` the files go to a temporary folder, removed once the model is loaded."""
    with _s3_errors(registry_uri):
        s3 = _s3(client)
    version = version or latest_version(registry_uri, client=s3)
    _check_version(version)
    if dest is not None:
        return load(download(registry_uri, version, dest=dest, client=s3), version=version)
    with tempfile.TemporaryDirectory(prefix=f"brewops-model-{version}-") as tmp:
        loaded = load(download(registry_uri, version, dest=tmp, client=s3), version=version)
    bucket, prefix = split_uri(registry_uri)
    loaded.path = f"s3://{bucket}/{prefix}{version}/"
    return loaded


def load_uri(uri: str, client: Any = None) -> LoadedModel:
    """Load from a registry URI (its latest version) or from one version's URI
    (s3://bucket/models/ibu/VERSION, or s3://bucket/VERSION for a registry at the root)."""
    bucket, prefix = split_uri(uri)
    parent, _, last = prefix.rstrip("/").rpartition("/")
    if VERSION_PATTERN.match(last):
        return load_version(f"s3://{bucket}/{parent}", last, client=client)
    return load_version(uri, client=client)
