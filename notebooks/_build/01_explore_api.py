"""Notebook 01: crawl the Punk API and look at what comes back."""

from common import build, code, md

build(
    "01_explore_api",
    "Explore the Punk API",
    overview="""
Crawls the whole Punk API catalogue through the project's client (paging to the end,
retrying what fails, checking every beer against the schema) and looks at what came back:
the schema, the nulls and data quirks a cleaner must survive, the distributions of ABV,
IBU, EBC and pH, IBU against ABV, how the numeric fields correlate, and the hop schedule.
""",
    needs="""
Nothing beyond the set-up in the README: by default the notebook uses the local Punk API
server of the local target, serving the real catalogue (`punkapi-db` 2.6.0, 325 beers).
With `target = "aws"` it reads the API the deployed stack's producer uses (its `PunkApiUrl`
parameter, by default the community v3 service, a newer edition of 415 beers), or for a
stack not deployed yet the one notebook 02 will deploy it with. Set
`api_url` to explore another server: the API version comes from the URL's last segment
(`/v2` or `/v3`) unless `api_version` says otherwise.
""",
    costs="""
None: it only reads from the API.
""",
    parameters="""
from typing import Optional  # papermill reads `Optional[int]`, not `int | None`

target = "local"  # "local" (embedded emulator) or "aws"
api_url: Optional[str] = None  # None: the target's Punk API; else a base URL with /v2 or /v3
api_version: Optional[str] = None  # "v2"/"v3"; None: api_url's, else the target's (PunkApiVersion)
expected_beers: Optional[int] = None  # None: 325 from the local server, unchecked from another
""",
    cells=[
        code("""
from brewops import target as targets
from brewops.catalog import EXPECTED_BEERS

if expected_beers is None and target == "local" and api_url is None:
    expected_beers = EXPECTED_BEERS  # the local server serves the pinned catalogue
tgt = targets.use(target) if api_url is None else None  # another server needs no stack
base_url, api_version = targets.punkapi_endpoint(api_url, api_version, tgt)
print(f"Punk API {api_version} at {base_url}")
"""),
        md("## Crawl the catalogue\n\nPage after page (80 beers each) until a short page."),
        code("""
import json
import time

import pandas as pd
from brewops import explore, summary
from brewops.punkapi.client import PunkApiClient

client = PunkApiClient(base_url, api_version=api_version)
started = time.perf_counter()
beers = client.all_beers(progress=True)
crawl_seconds = time.perf_counter() - started
ids = [beer["id"] for beer in beers]
print(f"{len(beers)} beers in {client.requests_made} requests, {crawl_seconds:.2f} s")
"""),
        code("""
# an empty crawl has nothing to explore: every cell below would fail on it
assert beers, f"{base_url} served no beers: set api_url (and api_version) to a Punk API"
assert len(ids) == len(set(ids)), "beer ids must be unique"
if expected_beers is not None:
    assert len(beers) == expected_beers, (
        f"expected {expected_beers} beers, got {len(beers)} (another catalogue? set expected_beers)"
    )
assert ids == sorted(ids), "the API serves beers sorted by id"
"""),
        md("## One beer, as the API returns it"),
        code("print(json.dumps(beers[0], indent=2, ensure_ascii=False))"),
        md(
            "## Schema\n\nEvery field path (`[]` marks list items), its JSON types, how many "
            "values and nulls, and an example."
        ),
        code("explore.schema_table(beers)"),
        md("## Nulls and data quirks"),
        code("explore.null_table(beers)"),
        md(
            "Quirks the cleaner and the model must survive. The plausible ranges come from the "
            "cleaned record definition (`brewops.schema`)."
        ),
        code("explore.quirks_table(beers)"),
        md("""
## Distributions of ABV, IBU, EBC and pH

The table gives every numeric field; the histograms show the four a reader of a beer
label knows. Each panel leaves out the few values above its 99th percentile, so that
abv 55 or ph 79 do not squash the rest into one bar, and its title counts them. EBC runs
from pale (2) to black (hundreds), so its axis is logarithmic. Look for what a cleaner
must handle: the extremes named in the titles, and the spikes of values copied from
recipe to recipe (most beers state pH 4.4).
"""),
        code("""
frame = explore.beers_frame(beers)
frame[list(explore.NUMERIC_FIELDS)].describe().T
"""),
        code("explore.plot_distributions(frame)"),
        md("## IBU against ABV\n\nThe axis stops at IBU 300: a couple of beers claim over 1,000."),
        code("explore.plot_ibu_vs_abv(frame, ibu_max=300)"),
        md("## Correlations\n\nSpearman (rank) correlations, so the outliers do not dominate."),
        code("explore.plot_correlation_heatmap(frame)"),
        md(
            "## Hop schedule\n\nThe free-text `add` of each hop addition mapped to a brewing stage. "
            "A number is minutes before the end of the boil, mapped to the nearest stage word "
            "(start about 60, middle about 30, end the last few)."
        ),
        code("explore.hop_schedule_summary(beers)"),
        code("explore.top_hops(beers, n=10)"),
        md("## Key figures"),
        code("""
figures = summary.record(
    notebook="01_explore_api",
    api_version=api_version,
    crawl_seconds=round(crawl_seconds, 3),
    crawl_requests=client.requests_made,
    **explore.catalogue_figures(beers),
)
pd.Series(figures)
"""),
        md("## Clean-up\n\nNothing to clean up: this notebook only reads from the API."),
    ],
)
