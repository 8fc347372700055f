"""`brewops model`: train on a catalogue file, evaluate a model on one, predict beers."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from brewops.model import MAX_SEED, PROTOCOL_SEED
from brewops.progress_option import PROGRESS_OPTION
from brewops.streaming_cli import TARGET_OPTION, use_target

HEADLINE = ("accuracy", "macro_f1", "mae", "r2", "mae_ibu_le_150", "r2_ibu_le_150")
# what `evaluate` adds: the band probabilities' figures, and how often band and IBU differ
PROBABILITY_FIGURES = ("brier", "log_loss", "ece", "band_ibu_disagreement")


def _nonzero_jobs(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value == 0:
        raise click.BadParameter("0 would run no fold: use 1 or more, or -1 for one per CPU")
    return value


def _writable_folder(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    """Refuse, before the minutes of training, a folder the model could not be written to."""
    existing = next(p for p in (value.absolute(), *value.absolute().parents) if p.exists())
    # a file made and dropped, not access(): /proc lets root write, yet takes no new file
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as error:
        raise click.BadParameter(f"{existing} is not a folder you can write in") from error
    return value


def _complete_model_folder(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The shell's own completion of folders for --model, none for a registry URI."""
    return [] if incomplete.startswith("s3:") else [CompletionItem(incomplete, type="dir")]


@click.group(help="Train, evaluate and use the IBU model.")
def model() -> None:
    pass


@model.command(
    help="""Run the evaluation protocol on a catalogue and write the model trained on all of it.

    The last line printed is one JSON object (its JSON Schema: `brewops schema training`):
    `version`, `out` and the cross-validation figures `accuracy`, `macro_f1`, `mae`, `r2`,
    `mae_ibu_le_150` and `r2_ibu_le_150`.
    """
)
@click.option(
    "--catalog",
    "catalog_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Catalogue file: a JSON array of beers, v2 or v3 shape.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    callback=_writable_folder,
    help="Folder for model.joblib, metrics.json and the model card (model_card.json, "
    "model_card.md); `brewops schema metrics|model_card` prints the JSON files' schemas.",
)
@click.option(
    "--repeats",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Repeats of the cross-validation.",
)
@click.option(
    "--folds", default=5, show_default=True, type=click.IntRange(min=2), help="Folds per repeat."
)
@click.option(
    "--seed",
    default=PROTOCOL_SEED,
    show_default=True,
    type=click.IntRange(min=0, max=MAX_SEED),
    help="Seed of the cross-validation folds, the baseline forests and the permutation "
    "importance (not of the model's own forests); the default is the fixed protocol's.",
)
@click.option(
    "--jobs",
    default=2,
    show_default=True,
    callback=_nonzero_jobs,
    help="Folds evaluated in parallel, at most one per usable CPU and one per fold (-1: one "
    "per usable CPU).",
)
@PROGRESS_OPTION
def train(
    catalog_path: Path,
    out_dir: Path,
    repeats: int,
    folds: int,
    seed: int,
    jobs: int,
    progress: bool,
) -> None:
    from brewops.catalog import catalog_source
    from brewops.model import registry
    from brewops.model import train as training

    beers = _load(catalog_path)
    protocol = training.Protocol(n_splits=folds, n_repeats=repeats, seed=seed, n_jobs=jobs)
    source = catalog_source(catalog_path)
    try:
        result = training.train(beers, protocol=protocol, progress=progress, source=source)
    except training.TrainingError as error:
        raise click.ClickException(str(error)) from error
    version = registry.new_version(result.card["data"]["sha256"])
    card = {**result.card, "version": version}
    registry.save(result.model, result.metrics, card, out_dir)
    _print_table(result.metrics)
    click.echo(f"model {version} written to {out_dir}")
    click.echo(
        _json_line({"version": version, "out": str(out_dir), **_headline(result.metrics["cv"])})
    )


@model.command(
    help="""Score a model on the beers of a catalogue. The last line printed is one JSON object;
    its JSON Schema: `brewops schema evaluation`.

    `n` beers scored, the headline figures `accuracy`, `macro_f1`, `mae`, `r2`,
    `mae_ibu_le_150` and `r2_ibu_le_150` (an undefined one, R² of a single beer, is null),
    `accuracy_interval` (the Wilson 95 % interval of the accuracy: how far the luck of the
    beers scored could move it), `per_class` and `confusion_matrix` (rows the true band),
    and `model_version`.
    Beers the model was trained on (same name) are counted in `seen_in_training`, and the
    figures on the others alone are under `unseen` (null when there is none); both are null
    when the model card does not list its beers. Beers without a numeric IBU cannot be
    scored: they are counted in `without_ibu`, and repeated ids in `duplicates_dropped`.
    Beside the headline figures: `brier`, `log_loss` and `ece` (top-label expected
    calibration error) of the band probabilities, and `band_ibu_disagreement`, the share
    of beers whose predicted IBU lies in another band than their predicted band.

    `tinseth_formula` holds the same figures of the brewer's own formula, the recipe's
    Tinseth estimate as the IBU and its band as the band (nothing fitted, no
    probabilities), on the same beers, and under its `unseen` on the same new beers: what
    the model adds over the formula.

    `outside_training` is the drift summary: `n` beers unlike those the model was trained
    on, `n_features` of them with a feature outside its training range (the range of each
    is in the model card's data.feature_ranges), `n_new_hops` with a hop variety no
    training recipe had, the beers of each feature (`by_feature`) and hop (`by_hop`), and
    `n` and the headline figures on those beers (`outside`) and on the others (`inside`),
    over the beers not trained on (null when there is none). It is null for a model whose
    card records no training ranges.
    """
)
@click.option(
    "--model",
    "model_location",
    required=True,
    shell_complete=_complete_model_folder,
    help="Model folder written by `train`, or a registry URI (s3://…/models/ibu/[VERSION]).",
)
@click.option(
    "--catalog",
    "catalog_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Catalogue file (v2 or v3 shape); beers without a numeric IBU are left out and "
    "counted in `without_ibu`.",
)
@PROGRESS_OPTION
def evaluate(model_location: str, catalog_path: Path, progress: bool) -> None:
    from brewops.model import features
    from brewops.model import train as training

    loaded = _load_model(model_location)
    dropped: list[int] = []
    records = _load(catalog_path, on_dropped=dropped.append)
    beers = features.labelled(records)
    without_ibu = [b for b in records if features.number(b.get("ibu")) is None]
    if not records:
        raise click.ClickException(f"{catalog_path} holds no beer to evaluate on: it is []")
    if not beers:
        raise click.ClickException(
            f"{catalog_path} has no beer with an IBU to evaluate on: "
            f"{_without_ibu_summary(without_ibu)}. Give them their measured IBU (a number)."
        )
    metrics = training.evaluate_catalogue(
        loaded.model,
        beers,
        _trained_on(loaded),
        progress=progress,
        training_domain=_training_domain(loaded),
    )
    click.echo(f"{len(beers)} beer{'' if len(beers) == 1 else 's'} with an IBU in {catalog_path}")
    if without_ibu:
        click.echo(f"left out: {_without_ibu_summary(without_ibu)}")
    for key in HEADLINE:
        click.echo(f"  {key:16s} {metrics[key]:.3f}")
    low, high = metrics["accuracy_interval"]
    click.echo(f"  accuracy 95 % interval [{low:.3f}, {high:.3f}] (Wilson, {metrics['n']} beers)")
    click.echo(
        f"band probabilities: brier {metrics['brier']:.3f}, log_loss {metrics['log_loss']:.3f}, "
        f"ece {metrics['ece']:.3f}; predicted IBU in another band than the predicted band "
        f"for {metrics['band_ibu_disagreement']:.1%} of the beers"
    )
    click.echo(_formula_summary(metrics["tinseth_formula"]))
    click.echo(_seen_summary(metrics))
    click.echo(_outside_summary(metrics["outside_training"], len(beers)))
    outside = metrics["outside_training"]
    formula = metrics["tinseth_formula"]
    result = {
        "n": metrics["n"],
        **_headline(metrics),
        "accuracy_interval": metrics["accuracy_interval"],
        **{key: metrics[key] for key in PROBABILITY_FIGURES},
        "per_class": metrics["per_class"],
        "confusion_matrix": metrics["confusion_matrix"],
        "seen_in_training": metrics["seen_in_training"],
        "tinseth_formula": {
            "n": formula["n"],
            **_headline(formula),
            "unseen": _scored(formula["unseen"]),
        },
        "without_ibu": len(without_ibu),
        "duplicates_dropped": sum(dropped),
        "unseen": _scored(metrics["unseen"], "accuracy_interval", *PROBABILITY_FIGURES),
        "outside_training": (
            {
                **{
                    key: value for key, value in outside.items() if key not in ("outside", "inside")
                },
                **{part: _scored(outside[part]) for part in ("outside", "inside")},
            }
            if outside
            else None
        ),
        "model_version": loaded.version,
    }
    click.echo(_json_line(result))


@model.command(
    help="""Predict band, IBU and band probabilities; one JSON object per beer and line, whose
    JSON Schema is `brewops schema prediction`.

    Its keys: `id` and `name` as the catalogue gives them, `band`, `band_index` (0 the least
    bitter), `predicted_ibu`, `predicted_ibu_band`, `estimated_ibu`, `probabilities` (each
    band's), `ibu` (the catalogue's, null when it is not a number), `seen_in_training`,
    `outside_training` and `model_version`, the version that predicted (as its model card
    names it; null for a card that names none).

    `band` is the most probable band and `predicted_ibu` a separate regression: they can
    disagree (in cross-validation about one beer in five, by one band), so
    `predicted_ibu_band` names the band the predicted IBU lies in. `estimated_ibu` is the
    recipe's own Tinseth estimate (the brewer's formula, from the hop schedule; null when
    it cannot be computed), to read `predicted_ibu` against.

    `seen_in_training` is true for a beer the model was trained on (same name): its
    prediction is in-sample. It is null when the model card does not list its beers.

    `outside_training` says what makes a beer unlike those the model was trained on, whose
    prediction is then an extrapolation: `features`, each feature outside its training
    range, with the beer's `value` and the `trained` range, and `new_hops`, the hop
    varieties no training recipe had (both empty for a beer like them). It is null for a
    model whose card records no training ranges (trained before they were recorded).
    An empty catalogue, or an --id it does not hold, ends with status 1 and no line.
    """
)
@click.option(
    "--model",
    "model_location",
    required=True,
    shell_complete=_complete_model_folder,
    help="Model folder or registry URI.",
)
@click.option(
    "--catalog",
    "catalog_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Catalogue file (v2 or v3 shape).",
)
@click.option("--id", "ids", multiple=True, type=int, help="Only these beer ids (repeatable).")
@PROGRESS_OPTION
def predict(model_location: str, catalog_path: Path, ids: tuple[int, ...], progress: bool) -> None:
    from brewops.model.predict import predict_beers

    loaded = _load_model(model_location)
    beers = _load(catalog_path)
    if not beers:  # no line and status 0 would pass for a prediction of every beer
        raise click.ClickException(f"{catalog_path} holds no beer to predict: it is []")
    if ids:
        wanted = set(ids)
        beers = [b for b in beers if b.get("id") in wanted]
        missing = sorted(wanted - {b.get("id") for b in beers})
        if missing:
            raise click.ClickException(
                f"no beer with id {', '.join(map(str, missing))} in {catalog_path}"
                " (ids are the catalogue's own; leave out --id to predict every beer)"
            )
    predictions = predict_beers(
        loaded.model,
        beers,
        _trained_on(loaded),
        progress=progress,
        training_domain=_training_domain(loaded),
    )
    for prediction in predictions:
        # each line names its model: lines kept apart from the command still say what made them
        line = {**prediction, "model_version": loaded.version}
        # JSON is UTF-8 whatever the locale: a Latin-1 one cannot even encode some names
        click.echo(json.dumps(line, ensure_ascii=False).encode("utf-8"))


@model.command(
    help="""List the registered versions, oldest first (the latest last), with what
    compares them: when trained, rows used, data checksum, CV accuracy and macro-F1, the
    accuracy on the newest fifth by first_brewed, and the CV MAE (IBU).

    Reads each version's metrics.json and model card, not its model. A version whose files
    are missing or damaged is listed with what is wrong; `--model URI` of `evaluate` and
    `predict` takes a version's URI."""
)
@TARGET_OPTION
@click.option(
    "--registry",
    "registry_uri",
    metavar="s3://BUCKET/PREFIX/",
    help="List this registry instead of the target's (its ModelRegistryUri Output), with "
    "the AWS SDK's own credentials and endpoint, as `--model s3://…` is read.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per version and line, for scripts (the whole data sha256); "
    "`brewops schema model_version` prints its JSON Schema.",
)
def versions(target: str, registry_uri: str | None, as_json: bool) -> None:
    from brewops.model import registry

    client = None
    if registry_uri is None:
        tgt = use_target(target)
        registry_uri = tgt.outputs.get("ModelRegistryUri")
        if not registry_uri:
            raise click.ClickException(
                f"The stack {tgt.stack_name} has no ModelRegistryUri Output: it was deployed "
                "from an older template. Deploy it again (`brewops local down` then `brewops "
                "local up`, or `sam deploy` on aws), or give --registry."
            )
        client = tgt.client("s3")
    try:
        listing = registry.describe_versions(registry_uri, client=client)
    except (registry.RegistryError, ValueError) as error:  # ValueError: not an s3:// URI
        raise click.ClickException(str(error)) from error
    notes = []
    if listing.incomplete:
        shown = ", ".join(listing.incomplete[-3:])
        notes.append(
            f"not listed: {len(listing.incomplete)} version folder(s) without a model card "
            f"(an upload in progress or cut short): {shown}"
        )
    if not listing.versions:
        notes.insert(
            0,
            f"No model version under {listing.uri}. Notebook 05 registers one each run: "
            f"`brewops run --target {target} --only 05`.",
        )
    if as_json:
        for summary in listing.versions:
            click.echo(_json_line(dataclasses.asdict(summary)))
        for note in notes:  # stdout stays one JSON object per line
            click.echo(note, err=True)
        return
    if listing.versions:
        count = len(listing.versions)
        click.echo(f"{listing.uri}: {count} version{'s' * (count != 1)}, oldest first")
        click.echo(registry.versions_table(listing.versions))
    for note in notes:
        click.echo(note)


def _load(path: Path, on_dropped: Callable[[int], Any] | None = None) -> list[dict[str, Any]]:
    """The catalogue's beers; a repeated id keeps its last record, as the protocol says.
    `on_dropped` is told how many records that dropped."""
    from brewops.catalog import CatalogError, load_catalog

    def report(dropped: list[dict[str, Any]], kept: dict[int, dict[str, Any]]) -> None:
        from brewops.model.features import beer_key

        if on_dropped is not None:
            on_dropped(len(dropped))
        ids = sorted({beer["id"] for beer in dropped})
        shown = ", ".join(map(str, ids[:10])) + (", …" if len(ids) > 10 else "")
        line = (
            f"{path.name}: dropped {len(dropped)} duplicate record(s) of id {shown}"
            " (the last record of each id is used)"
        )
        # Two catalogues numbered apart (v2 and v3) can give one id to two beers.
        others = [beer for beer in dropped if beer_key(beer) != beer_key(kept[beer["id"]])]
        if others:
            pairs = [(b["id"], b.get("name"), kept[b["id"]].get("name")) for b in others[:3]]
            named = "; ".join(f"id {i} {_quoted(old)}, not {_quoted(new)}" for i, old, new in pairs)
            more = "; …" if len(others) > 3 else ""
            line += (
                f"; {len(others)} of them is another beer than the one kept ({named}{more}):"
                " give each beer its own id to use it"
            )
        click.echo(line, err=True)

    try:
        return load_catalog(path, on_duplicates=report)
    except CatalogError as error:
        raise click.ClickException(str(error)) from error


def _quoted(text: Any) -> str:
    return json.dumps(text, ensure_ascii=False)


def _without_ibu_summary(beers: list[dict[str, Any]]) -> str:
    """'3 beer(s) without a numeric IBU (id 4, 9 "n/a", 12)': the value when there is
    one, so that a typing slip can be told from a beer never measured."""

    def shown(beer: dict[str, Any]) -> str:
        ibu = beer.get("ibu")
        return str(beer["id"]) if ibu is None else f"{beer['id']} {json.dumps(ibu)}"

    ids = ", ".join(shown(beer) for beer in beers[:10]) + (", …" if len(beers) > 10 else "")
    return f"{len(beers)} beer(s) without a numeric IBU (id {ids})"


def _load_model(location: str) -> Any:
    from brewops.model import registry

    try:
        if location.startswith("s3://"):
            return registry.load_uri(location)
        return registry.load(location)
    except registry.RegistryError as error:
        raise click.ClickException(str(error)) from error


def _trained_on(loaded: Any) -> list[str] | None:
    """The names of the beers the model was trained on, from its card (None if unlisted)."""
    from brewops.model.registry import CARD_FILE

    data = loaded.card.get("data") or {}
    keys = data.get("beer_keys") if isinstance(data, dict) else data
    if keys is None:
        return None
    if (
        not isinstance(data, dict)
        or not isinstance(keys, list)
        or not all(isinstance(key, str) for key in keys)
    ):
        # a card edited by hand: which beers are in-sample cannot be told
        raise click.ClickException(
            f"{loaded.path}: {CARD_FILE} holds no list of beer names in data.beer_keys: the "
            "version is damaged. Train the model again with `brewops model train`, or load "
            "another version."
        )
    return keys


def _training_domain(loaded: Any) -> Any:
    """What the card records of the training beers' ranges (None if not recorded)."""
    from brewops.model.domain import DomainError, TrainingDomain
    from brewops.model.registry import CARD_FILE

    try:
        return TrainingDomain.from_card(loaded.card)
    except DomainError as error:  # a card edited by hand
        raise click.ClickException(
            f"{loaded.path}: {CARD_FILE}: {error}: the version is damaged. Train the model "
            "again with `brewops model train`, or load another version."
        ) from error


def _outside_summary(outside: dict[str, Any] | None, n: int) -> str:
    """One line: how many beers are unlike the training beers, why, and their figures."""
    if outside is None:
        return (
            "the model card records no training ranges: beers unlike the training beers not checked"
        )
    if not outside["n"]:
        return "every beer is within the training ranges, with hops trained on"

    def most(counts: dict[str, int]) -> str:
        shown = ", ".join(f"{name} {count}" for name, count in list(counts.items())[:5])
        return shown + (", …" if len(counts) > 5 else "")

    reasons = []
    if outside["n_features"]:
        reasons.append(
            f"{outside['n_features']} with a feature outside its training range: "
            + most(outside["by_feature"])
        )
    if outside["n_new_hops"]:
        reasons.append(
            f"{outside['n_new_hops']} with a hop never trained on: " + most(outside["by_hop"])
        )
    line = f"{outside['n']} of {n} beers unlike the training beers ({'; '.join(reasons)})"
    scored = [
        f"{label} {figures['n']}: accuracy {figures['accuracy']:.3f}, mae {figures['mae']:.1f}"
        for label, figures in (("outside", outside["outside"]), ("inside", outside["inside"]))
        if figures
    ]
    return line + ("; " + ", ".join(scored) if scored else "")


def _formula_summary(formula: dict[str, Any]) -> str:
    """One line: the Tinseth formula's figures on the same beers (and on the new ones)."""

    def shown(figures: dict[str, Any]) -> str:
        return ", ".join(f"{key} {figures[key]:.3f}" for key in ("accuracy", "macro_f1", "mae"))

    line = f"the Tinseth formula alone on these beers: {shown(formula)}"
    if formula["unseen"]:
        line += f"; on the {formula['unseen']['n']} not trained on: {shown(formula['unseen'])}"
    return line


def _seen_summary(metrics: dict[str, Any]) -> str:
    seen, unseen = metrics["seen_in_training"], metrics["unseen"]
    if seen is None:
        return "the model card does not list its training beers: seen and new beers not told apart"
    if not seen:
        return "none of these beers is in the model's training data"
    line = f"{seen} of these beers are in the model's training data (same name): in-sample"
    if unseen is None:
        return line + "; no new beer to score"
    figures = ", ".join(f"{key} {unseen[key]:.3f}" for key in ("accuracy", "macro_f1", "mae"))
    return f"{line}; on the {unseen['n']} others: {figures}"


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: metrics[key] for key in HEADLINE if key in metrics}


def _scored(figures: dict[str, Any] | None, *extra: str) -> dict[str, Any] | None:
    """`n`, the headline figures and the `extra` ones of a part of the beers; None for a
    part that has no beers."""
    if not figures:
        return None
    return {"n": figures["n"], **_headline(figures), **{key: figures[key] for key in extra}}


def _json_line(data: Any) -> str:
    """Strict JSON on one line: NaN (e.g. R² of a single beer) becomes null."""
    from brewops.model import registry

    return json.dumps(registry.strict_json(data), allow_nan=False)


def _print_table(metrics: dict[str, Any]) -> None:
    from brewops.model import train as training

    rows = [("model (cv)", metrics["cv"])]
    rows += [(f"{name} (cv)", figures) for name, figures in metrics["baselines"].items()]
    rows.append(("model (newest fifth)", metrics["time_split"]))
    rows += [
        (f"{name} (newest fifth)", figures)
        for name, figures in metrics["time_split"]["baselines"].items()
    ]
    click.echo(f"{'':40s}" + "".join(f"{key:>16s}" for key in HEADLINE))
    for name, figures in rows:
        click.echo(f"{name:40s}" + "".join(f"{figures[key]:16.3f}" for key in HEADLINE))
    click.echo(training.seed_spread_summary(metrics["time_split"]))
