"""Notebook 05: train and evaluate the IBU model, register it, predict with it."""

from common import build, code, md

from brewops.model import bands

# the bands as bands.EDGES sets them: the text follows a change of edges
BANDS = ("two", "three", "four", "five", "six", "seven", "eight")[bands.N_BANDS - 2]
SHOWN = [label.replace("inf)", "∞)") for label in bands.LABELS]
BAND_LIST = ", ".join(f"`{label}`" for label in SHOWN[:-1]) + f" and `{SHOWN[-1]}`"

build(
    "05_train_evaluate_model",
    "Train and evaluate the IBU model",
    overview=f"""
Classifies beers into {BANDS} bitterness bands by IBU, {BAND_LIST},
and estimates the IBU itself, from the **whole beer record**: the hop schedule
(amounts by stage and variety), the malt bill, gravities, volume, and a physics-informed
estimate of bitterness (Tinseth utilisation with typical alpha acids per hop variety,
documented in `brewops.model.hops`).

The evaluation protocol is fixed so results compare: repeated stratified 5-fold
cross-validation (5 repeats, fixed seeds; beers of identical features, one recipe under
several names, in one fold), the model side by side with two baselines on the same folds
(the majority class, and a random forest on the six numeric cleaned columns, as the public
solutions of the challenge do) and with the brewer's own formula (the recipe's Tinseth
estimate alone, which needs no fitting), and a split by `first_brewed` (train on the
older beers, test on the newest fifth) as a proxy for beers the model has never seen.

The model is then registered under `s3://BUCKET/models/ibu/<version>/` (the fitted
pipeline, `metrics.json`, a model card), loaded back and used to predict a few beers.
""",
    needs="""
The raw table (notebooks 02 and 03: the stack deployed and filled; in Colab the cell after the
parameters fills it), read and deduplicated with `brewops.tables`. With `catalog` set to a catalogue file (v2 or v3 JSON), the notebook
trains on that file instead and needs the stack only to register the model.
""",
    costs="""
None locally. On AWS: one Athena scan of the raw table (a few MB), and a few S3 PUT and GET
requests for the model (under 1 MB).
""",
    parameters="""
from typing import Optional  # papermill reads `Optional[int]`, not `int | None`

target = "local"  # "local" (embedded emulator) or "aws"
catalog: Optional[str] = None  # a catalogue file (v2 or v3 JSON) to train on, not the raw table
register = True  # write the model to the registry (ModelRegistryUri of the stack)
model_version: Optional[str] = None  # to load back; None: the one registered now, or the model
repeats = 5  # repeats of the cross-validation (the fixed protocol uses 5)
folds = 5  # folds per repeat (the fixed protocol uses 5)
seed: Optional[int] = None  # of the folds, baselines and importance; None: the fixed protocol's
n_jobs = 2  # folds evaluated in parallel, at most one per usable CPU and per fold; -1 for every CPU
predict_ids = [1, 25, 100, 192, 280]  # beers to predict; none in the data: the first five
keep_model = True  # False: delete the version registered by this run at the end
""",
    cells=[
        code("""
import pandas as pd

from brewops import summary, tables
from brewops import target as targets
from brewops.catalog import catalog_source, load_catalog
from brewops.model import PROTOCOL_SEED, bands, domain, features, plots, registry, train, uncertainty
from brewops.model.predict import beers_to_predict, checked_beer_ids, predict_beers, predictions_frame
from brewops.parameters import checked_flags

# refused here, before the target starts, when a value cannot run
protocol = train.Protocol(
    n_splits=folds, n_repeats=repeats, seed=PROTOCOL_SEED if seed is None else seed, n_jobs=n_jobs
)
predict_ids = checked_beer_ids(predict_ids, "predict_ids")
checked_flags(register=register, keep_model=keep_model)
# read now, so that a path that holds no catalogue is said before the target starts
records = load_catalog(catalog) if catalog is not None else None
needs_stack = catalog is None or register or model_version is not None
tgt = targets.use(target) if needs_stack else None
registry_uri = tgt.outputs["ModelRegistryUri"] if tgt else None
if model_version is not None:  # checked now, not after the training below
    registry.require_version(registry_uri, model_version, started_at=tgt.started_at)
pd.Series({"target": target, "catalog": catalog, "registry": registry_uri, "protocol": protocol})
"""),
        md("""
## The data: one record per beer, with an IBU

The raw table holds the full beer records as Firehose delivered them; a beer produced twice
has two rows, so the latest record of each id is kept (`tables.latest_per_id`). Beers
without an IBU cannot be scored and are left out.
"""),
        code("""
if catalog is None:
    raw = tables.read_table("raw", tgt)
    records = tables.latest_per_id(raw)
    source = {**tables.table_source("raw", tgt), "rows_read": len(raw)}
else:
    source = catalog_source(catalog)
beers = features.labelled(records)
ibu = features.ibu_values(beers)
print(f"{len(records)} beers, {len(beers)} with an IBU")
assert len(beers) >= 100, (
    f"too few beers to train on ({len(beers)} with an IBU, 100 needed): "
    "run notebooks 02-03 first, or set catalog to a catalogue that has more"
)
pd.Series(ibu).describe()
"""),
        md(f"""
## Features

One row per beer, computed by `brewops.model.features` from the record alone (the same
code runs at prediction time). The Tinseth estimate is the strongest single signal: on its
own it lands in the right band about half the time, where chance is one in {BANDS}. The
evaluation below scores it as a reference beside the baselines (`tinseth_formula`: the
estimate as the IBU, its band as the band), on the same folds and in the split by date.
"""),
        code("""
X = features.build_features(beers)
estimate_band = train.TinsethFormula().predict_band(X)  # the reference scored below
print(f"Tinseth estimate alone: right band for {(estimate_band == bands.band_index(ibu)).mean():.1%} of the beers")
X.assign(ibu=ibu).head()
"""),
        md("""
Points far from the diagonal are beers whose stated IBU does not follow from their own hop
schedule: Hype states 65 IBU from 9.5 g of hops, Hello My Name Is Little Ingrid 35 IBU from
550 g of hops in the boil. No other field of the record we tried explains such gaps, so
they bound what a model of the recipe can reach.
"""),
        code("""
estimate_figure = plots.plot_predicted_vs_actual(
    ibu,
    X["tinseth_ibu"],
    title="Tinseth estimate from the recipe vs stated IBU",
    ylabel="Tinseth estimate (IBU)",
)
"""),
        md("""
## Train and evaluate

The protocol runs the model and the baselines on the same folds (progress below), the
split by `first_brewed`, the permutation importance on the newest fifth, and finally fits
the model on every beer.
"""),
        code("""
result = train.train(beers, protocol=protocol, progress=True, source=source)
metrics = result.metrics
"""),
        md("""
## Model and baselines, side by side

Cross-validated figures are means over the repeats of the pooled out-of-fold predictions;
"newest fifth" trains on the older 80 % of the beers by `first_brewed` and tests on the
rest. MAE and R² are on the IBU scale, also over the beers with IBU ≤ 150 (the catalogue's
1085 and 1157 are transcription errors). `tinseth_formula` is the recipe's Tinseth
estimate taken as the IBU: it fits nothing, so the model's lead over it is what the model
learns beyond the brewer's formula.
"""),
        code("""
comparison = plots.comparison_frame(metrics)
comparison.set_index(["evaluation", "model"]).round(3)
"""),
        code("""
comparison_figure = plots.plot_comparison(metrics)
"""),
        md("""
## How sure are these figures?

Each figure comes from a few hundred beers, the newest fifth's from 64: other beers of the
same kind would give other figures. Beside each figure, its 95 % interval: a bootstrap
(BCa, fixed seed) that resamples the beers scored, the beers of one recipe together as the
folds keep them, and recomputes the figure. It counts which beers happened to be scored,
not how other training beers would change the model (the spread over the repeats, the
`_std` figures of `metrics.json`, and over the forest seeds, below, show some of that):
if anything, the intervals are narrow.
"""),
        code("""
plots.interval_table(metrics)
"""),
        code("""
aims = {  # the figures the model aims at
    ("cross-validation", "accuracy"): 0.68,
    ("cross-validation", "macro_f1"): 0.66,
    ("newest fifth", "accuracy"): 0.70,
}
interval_figure = plots.plot_intervals(metrics, aims=aims)
"""),
        md("""
Each aim against the model's interval: inside it, these beers cannot tell the model
from one that reaches the aim; above it, the model falls short by more than the luck
of the beers. On the newest fifth, the Wilson interval (each beer an independent trial of
a fixed model) says the same as the bootstrap.
"""),
        code("""
intervals = plots.interval_frame(metrics)
model_intervals = intervals[intervals["model"] == "model"].set_index(["evaluation", "figure"])
for (evaluation, key), aim in aims.items():
    row = model_intervals.loc[(evaluation, key)]
    print(f"{evaluation} {key}", uncertainty.against_aim(row["value"], [row["low"], row["high"]], aim))
low, high = metrics["time_split"]["intervals"]["accuracy_wilson"]
print(f"newest fifth accuracy, Wilson interval: [{low:.3f}, {high:.3f}]")
"""),
        md("""
The newest fifth is a small test set (one beer moves accuracy by 1.6 points), and the
forest seed alone shifts a beer or two across a band edge. The split is therefore also run
with a few consecutive forest seeds, the first being the registered model's:
"""),
        code("""
over_seeds = metrics["time_split"]["over_seeds"]
print(train.seed_spread_summary(metrics["time_split"]))
pd.DataFrame({key: over_seeds[key] for key in ("seeds", "accuracy", "macro_f1")}).set_index("seeds").T.round(3)
"""),
        code("""
pd.DataFrame(metrics["cv"]["per_class"]).T.round(3)
"""),
        md("## Confusion matrices"),
        code("""
cv_confusion = plots.plot_confusion_matrix(
    metrics["cv"]["confusion_matrix"],
    title=f"Cross-validation, summed over {metrics['cv']['repeats']} repeats",
)
"""),
        code("""
time_confusion = plots.plot_confusion_matrix(
    metrics["time_split"]["confusion_matrix"],
    title=f"Newest fifth ({metrics['time_split']['test_first_brewed_from']} to {metrics['time_split']['test_first_brewed_to']})",
)
"""),
        md(f"""
## Predicted against actual IBU

Out-of-fold predictions of the first repeat: every beer predicted once, by a model that
never saw it. Dashed lines are the band edges. Below, the eight beers it misses by the most
IBU (bands as indices: 0 is {bands.LABELS[0]}, {bands.N_BANDS - 1} is {bands.LABELS[-1]}); the two transcription errors top it.
"""),
        code("""
oof = result.out_of_fold
scatter = plots.plot_predicted_vs_actual(oof["ibu"], oof["predicted_ibu"])
"""),
        code("""
worst = oof.assign(error=(oof["predicted_ibu"] - oof["ibu"]).abs()).nlargest(8, "error")
worst[["id", "name", "ibu", "predicted_ibu", "band", "predicted_band"]].round(1)
"""),
        md("""
The band and the IBU come from two models, a classifier and a regressor, and need not agree:
below, how often the predicted IBU lies in another band than the predicted band. Each
prediction says where its IBU lies (`predicted_ibu_band`), so a reader seeing band
`(30, 50]` beside 55 IBU knows the two were not meant as one answer.
"""),
        code("""
differ = train.band_ibu_breakdown(oof)
print(
    f"predicted IBU in another band than the predicted band: "
    f"{metrics['cv']['band_ibu_disagreement']:.1%} of the beers (mean over the repeats); "
    f"in this repeat {differ['beers']} beers, {differ['more_than_one_band']} of them more "
    f"than one band apart; right: the band {differ['band_right']:.0%}, "
    f"the IBU's band {differ['ibu_band_right']:.0%}"
)
"""),
        md("""
## Are the band probabilities honest?

A prediction gives each band a probability: of the beers given their band with
probability 0.7, about 70 % should be in it. Over the same out-of-fold predictions, for the
model and the baselines: the Brier score (squared distance from the probabilities to the
true band, 0 best, 2 worst), the log loss (mean -ln of the true band's probability; a true
band given probability 0 costs 36) and the expected calibration error (ECE: the gap between
the probability of the predicted band and the share of those bands that are right, over
10 bins, weighted by their beers). The majority class gives each band its share of the
training beers: the no-skill reference, honest (an ECE near 0) but no better than a guess;
a model is worth its probabilities where its Brier score and log loss are below it. The
Tinseth formula gives one estimate, no probabilities, so it has no row here.
"""),
        code("""
calibration = plots.calibration_frame(metrics)
for name, figures in calibration.drop(index="model").iterrows():
    assert metrics["cv"]["brier"] < figures["brier"], (name, figures["brier"])
calibration.round(3)
"""),
        md("""
How to read the reliability diagram: each point is a bin of beers by the probability of
their predicted band; a point below the diagonal means the model was surer than it was
right (over-confident), above it less sure than it was right.
"""),
        code("""
reliability_figure = plots.plot_reliability(
    oof["band"],
    oof[[f"p {label}" for label in bands.LABELS]],
    title="Out-of-fold band probabilities (first repeat)",
)
"""),
        md("""
## Permutation importance

How much accuracy on the newest fifth drops when one feature's values are shuffled among
those beers (the model trained on the older beers). Correlated features share credit, so a
small number does not mean a feature carries no information.
"""),
        code("""
importance_figure = plots.plot_importance(result.importance)
"""),
        md("""
## The model must beat the baselines and the Tinseth formula

By a clear margin in cross-validation (accuracy and macro-F1 at least 5 points above the
six-column forest and the formula, MAE below them), and on the newest fifth. The table
shows the margins: model minus baseline (negative MAE margins are better).
"""),
        code("""
cv, baselines, split = metrics["cv"], metrics["baselines"], metrics["time_split"]
margins = {}
for name, baseline in baselines.items():
    margins[name] = {key: cv[key] - baseline[key] for key in ("accuracy", "macro_f1", "mae")}
    assert cv["accuracy"] >= baseline["accuracy"] + 0.05, (name, cv["accuracy"], baseline["accuracy"])
    assert cv["macro_f1"] >= baseline["macro_f1"] + 0.05, (name, cv["macro_f1"], baseline["macro_f1"])
    assert cv["mae"] < baseline["mae"], (name, cv["mae"], baseline["mae"])
    assert split["accuracy"] > split["baselines"][name]["accuracy"], name
pd.DataFrame(margins).round(3)
"""),
        md("""
How sure are the margins? The model and each baseline are scored on the same beers, so
the interval of their difference resamples the beers once for both (paired). An accuracy
or macro-F1 interval above 0, an MAE one below 0, is a lead beyond the luck of the beers.
"""),
        code("""
plots.margin_table(metrics)
"""),
        md("""
## Register the model

`s3://BUCKET/models/ibu/<version>/` gets the fitted pipeline (`model.joblib`), `metrics.json`
and the model card. Versions sort in time order: UTC timestamp and the first 8 hex digits of
the data's sha256. A registered version is never overwritten: the same data registered again
within the same second takes the next second.
"""),
        code("""
version = None
if register:
    version, version_uri = registry.register(result.model, metrics, result.card, registry_uri)
    print(f"registered {version} at {version_uri}")
    # the table of `brewops model versions`: the versions there are, oldest first
    print(registry.versions_table(registry.describe_versions(registry_uri).versions))
print(registry.card_markdown({**result.card, "version": version or "(not registered)"}))
"""),
        md("""
## Load it back and predict

The loaded model verifies its file against the card's sha256, then predicts beers as the
API returns them (v2 or v3 shape): band, IBU, the band that IBU lies in
(`predicted_ibu_band`), the recipe's own Tinseth estimate to read it against
(`estimated_ibu`) and the probability of each band (the `p` columns). With
`register = False` and no `model_version`, nothing is loaded: the model in memory predicts.
Each row names the `model_version` that predicted it (None for the model in memory), as each
line of `brewops model predict` does.
`seen_in_training` is true for a beer the card lists among the training beers: such a
prediction is in-sample, not a test of the model (the figures above are the tests).
`outside_training` names what makes a beer unlike the training beers, the features outside
the ranges the card records and the hops no training recipe had: its prediction is then an
extrapolation (empty for a beer like them; None for a card without the ranges).
"""),
        code("""
wanted = model_version or version
if registry_uri and (wanted or register):
    loaded = registry.load_version(registry_uri, wanted)
else:
    loaded = result.model
print("model version:", getattr(loaded, "version", "in memory"))
sample, notes = beers_to_predict(beers, predict_ids)
for note in notes:
    print(note)
card = getattr(loaded, "card", result.card)
training_domain = domain.TrainingDomain.from_card(card)
predictions = predictions_frame(
    predict_beers(loaded, sample, card["data"]["beer_keys"], training_domain=training_domain),
    model_version=getattr(loaded, "version", None),
)
predictions
"""),
        code("""
checked = predictions["outside_training"].notna()
unlike = predictions[checked & (predictions["outside_training"] != "")]
print(f"unlike the training beers: {len(unlike)} of the {checked.sum()} beers checked")
for beer in unlike.itertuples():
    print(f"  {beer.id} {beer.name}: {beer.outside_training}")
"""),
        code("""
if version is not None and wanted == version:  # the registered copy of the model just fitted
    in_memory = predict_beers(
        result.model,
        sample,
        result.card["data"]["beer_keys"],
        training_domain=domain.TrainingDomain.from_card(result.card),
    )
    pd.testing.assert_frame_equal(predictions, predictions_frame(in_memory, model_version=version))
assert predictions["band"].isin(bands.LABELS).all()
"""),
        md("## Key figures"),
        code("""
figures = summary.record(
    notebook="05_train_evaluate_model",
    rows_used=metrics["data"]["rows_used"],
    cv_accuracy=round(cv["accuracy"], 4),
    cv_macro_f1=round(cv["macro_f1"], 4),
    cv_mae=round(cv["mae"], 2),
    cv_r2=round(cv["r2"], 4),
    cv_mae_ibu_le_150=round(cv["mae_ibu_le_150"], 2),
    cv_r2_ibu_le_150=round(cv["r2_ibu_le_150"], 4),
    cv_brier=round(cv["brier"], 4),
    cv_ece=round(cv["ece"], 4),
    cv_band_ibu_disagreement=round(cv["band_ibu_disagreement"], 4),
    baseline_majority_accuracy=round(baselines["majority_class"]["accuracy"], 4),
    baseline_rf6_accuracy=round(baselines["random_forest_6_columns"]["accuracy"], 4),
    baseline_rf6_macro_f1=round(baselines["random_forest_6_columns"]["macro_f1"], 4),
    tinseth_formula_accuracy=round(baselines["tinseth_formula"]["accuracy"], 4),
    tinseth_formula_mae=round(baselines["tinseth_formula"]["mae"], 2),
    time_split_tinseth_formula_accuracy=round(split["baselines"]["tinseth_formula"]["accuracy"], 4),
    time_split_accuracy=round(split["accuracy"], 4),
    time_split_macro_f1=round(split["macro_f1"], 4),
    time_split_accuracy_mean_over_seeds=round(split["over_seeds"]["accuracy_mean"], 4),
    cv_accuracy_low=round(cv["intervals"]["figures"]["model"]["accuracy"][0], 4),
    cv_accuracy_high=round(cv["intervals"]["figures"]["model"]["accuracy"][1], 4),
    time_split_accuracy_low=round(split["intervals"]["figures"]["model"]["accuracy"][0], 4),
    time_split_accuracy_high=round(split["intervals"]["figures"]["model"]["accuracy"][1], 4),
    model_version=version,
)
pd.Series(figures)
"""),
        md("""
## Clean-up

The registered version stays for later use unless `keep_model = False`.
"""),
        code("""
if register and not keep_model:
    deleted = registry.delete_version(registry_uri, version)
    print(f"deleted {deleted} objects of {version}")
"""),
    ],
    reads_produced_data=True,
)
