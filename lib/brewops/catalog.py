"""The Punk API catalogue: the real BrewDog DIY Dog recipes, fetched, checked and cached.

The catalogue is the npm package `punkapi-db` (2.6.0): its `data.json` holds the 325 v2 beers.
It is fetched with `npm pack`, checked against a pinned sha256 and cached outside git.
Catalogue files in the v3 shape (`image` instead of `image_url`) are read too.

No pandas here: the producer Lambda imports this module through the client.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import posixpath
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from brewops import paths
from brewops.errors import ActionableError
from brewops.files import SHARED, make_folder, naming, replacing, sha256_file, write_atomically
from brewops.jsontext import collector_paused, parse_json

NPM_PACKAGE = "punkapi-db"
NPM_VERSION = "2.6.0"
# sha256 of data.json in punkapi-db 2.6.0, not a secret
CATALOG_SHA256 = (
    "609728c9e7b5c03aeb73e87d6b0932e1e97f2968397cc97292db93c0ca8cc500"  # pragma: allowlist secret
)
CATALOG_MEMBER = "package/data.json"
CATALOG_FILENAME = f"{NPM_PACKAGE}-{NPM_VERSION}.json"
EXPECTED_BEERS = 325
NPM_TIMEOUT_SECONDS = 300


class CatalogError(RuntimeError, ActionableError):
    """The catalogue could not be obtained or read; the message says what to do."""


def cached_catalog_path(cache_dir: Path | None = None) -> Path:
    return (cache_dir or paths.cache_dir()) / CATALOG_FILENAME


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_catalog(
    *,
    force: bool = False,
    cache_dir: Path | None = None,
    expected_sha256: str = CATALOG_SHA256,
) -> Path:
    """Return the path of the cached catalogue, fetching it with `npm pack` if needed.

    A cached file is trusted only while its checksum matches; otherwise it is fetched again.
    The file appears in the cache in one atomic rename, its bytes and then its name synced
    to disk (`files.write_atomically`), so a failure or a power cut leaves nothing behind.
    """
    cache_dir = cache_dir or paths.cache_dir()
    target = cached_catalog_path(cache_dir)
    if not force and target.is_file():
        if sha256_of(target.read_bytes()) == expected_sha256:
            return target
        target.unlink()  # tampered or damaged: fetch a good copy instead of serving it

    npm = shutil.which("npm")
    if npm is None:
        raise CatalogError(
            "npm was not found on PATH. Install Node.js (which brings npm) and run "
            "`brewops data fetch` again, or copy the data.json of punkapi-db 2.6.0 you "
            f"already have to {target} (its sha256 is checked), or pass a catalogue file "
            "to a command that takes --catalog FILE."
        )
    make_folder(cache_dir)
    spec = f"{NPM_PACKAGE}@{NPM_VERSION}"
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".fetch-") as scratch:
        tarball = _npm_pack(npm, spec, Path(scratch))
        data = _read_member(tarball, spec)
        actual = sha256_of(data)
        if actual != expected_sha256:
            raise CatalogError(
                f"Checksum mismatch for {CATALOG_MEMBER} in {spec}: expected sha256 "
                f"{expected_sha256}, got {actual}. The package on the registry (or a proxy "
                "in between) does not hold the pinned catalogue; nothing was cached. Check "
                "your npm registry setting (`npm config get registry`) and try again, or "
                "pass a catalogue file with --catalog FILE."
            )
        _parse_catalog_bytes(data, source=f"{spec}:{CATALOG_MEMBER}")
    write_atomically(target, data, mode=SHARED)  # as open() makes it: a cache to share
    return target


def _npm_pack(npm: str, spec: str, workdir: Path) -> Path:
    try:
        result = subprocess.run(
            # not --silent: that silences npm's errors too, and the user needs their reason.
            # --prefer-offline: a copy in npm's cache is taken without asking the registry
            # (offline, npm would retry it for minutes): the version is exact, and its
            # data.json is checked against the pin all the same
            [npm, "pack", spec, "--loglevel=error", "--prefer-offline"],
            cwd=workdir,
            capture_output=True,
            encoding="utf-8",  # npm writes UTF-8 whatever the locale
            errors="replace",
            timeout=NPM_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CatalogError(
            f"`npm pack {spec}` did not finish within {NPM_TIMEOUT_SECONDS} s. "
            "Check the network connection to the npm registry and try again."
        ) from exc
    if result.returncode != 0:
        said = result.stderr or result.stdout
        detail = _npm_said(said)[-5:]
        if "ENOSPC" in said or "EDQUOT" in said:
            remedy = (
                f"Free some space in {workdir.parent} (BREWOPS_CACHE_DIR), where npm writes "
                "the tarball, and in npm's cache (`npm config get cache`), then try again."
            )
        elif "EFBIG" in said:
            remedy = "The shell's file size limit (`ulimit -f`) is too low: raise it and try again."
        else:
            remedy = (
                "Check the network connection to the npm registry (`npm config get "
                "registry`) and try again."
            )
        raise CatalogError(
            f"`npm pack {spec}` failed (exit {result.returncode}): {' '.join(detail)}. {remedy}"
        )
    tarballs = sorted(workdir.glob("*.tgz"))
    if not tarballs:
        raise CatalogError(f"`npm pack {spec}` produced no tarball in {workdir}.")
    return tarballs[0]


# what npm prints of a JavaScript error besides its message: stack frames and the
# error object's fields ("at ClientRequest.emit (node:events:524:28)", "port: 9,", "}")
_NPM_ERROR_NOISE = re.compile(r"^(|at .*|[{}]|\w+: ('.*'|\d+),?)$")
# the prefix of each error line: "npm error" in recent npm, "npm ERR!" in older ones
_NPM_ERROR_PREFIX = re.compile(r"^npm (error|ERR!)(\s+|$)")


def _npm_said(output: str) -> list[str]:
    """npm's lines that say something, without a stack trace or an error object's dump."""
    lines = (line.strip() for line in output.splitlines())
    return [line for line in lines if not _NPM_ERROR_NOISE.match(_NPM_ERROR_PREFIX.sub("", line))]


def _read_member(tarball: Path, spec: str) -> bytes:
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            member = archive.extractfile(CATALOG_MEMBER)
            if member is None:
                raise KeyError(CATALOG_MEMBER)
            return member.read()
    except (tarfile.TarError, OSError, EOFError, KeyError) as exc:
        raise CatalogError(
            f"The tarball of {spec} is corrupt or lacks {CATALOG_MEMBER} ({exc}). "
            "Clear npm's cache (`npm cache clean --force`) and run `brewops data fetch` again."
        ) from exc


def default_catalog_path() -> Path:
    """The real catalogue, fetched on first use."""
    return fetch_catalog()


_FETCH_AGAIN = "Fetch it again (`brewops data fetch --force`) or point --catalog at a good file."
_FIX_THE_FILE = (
    "Save it as one JSON array of beers in UTF-8 (not one object per line), "
    "or give the path of a good file."
)


def _parse_catalog_bytes(
    data: bytes, source: str, remedy: str = _FETCH_AGAIN
) -> list[dict[str, Any]]:
    try:
        with collector_paused():
            beers = parse_json(data)
    # ValueError: not UTF-8, not JSON (nested too deeply too), or an integer of more than
    # 4,300 digits
    except ValueError as exc:
        raise CatalogError(f"{source} is not valid JSON ({exc}). {remedy}") from exc
    if not isinstance(beers, list):
        one_beer = isinstance(beers, dict) and "id" in beers
        raise CatalogError(
            f"{source} is not a Punk API catalogue: expected a JSON array of beers, found "
            f"a JSON {json_type(beers)}" + (" (one beer? put it in [ ])." if one_beer else ".")
        )
    without_id = [
        (position, beer)
        for position, beer in enumerate(beers, start=1)
        if not (isinstance(beer, dict) and _is_integer_id(beer.get("id")))
    ]
    if without_id:
        shown = "; ".join(_without_id_summary(*entry) for entry in without_id[:3])
        more = "; …" if len(without_id) > 3 else ""
        raise CatalogError(
            f"{source} is not a Punk API catalogue: each beer needs an integer id; entries "
            f"without one: {len(without_id)} of {len(beers)} ({shown}{more}). Give every "
            "beer a whole-number id."
        )
    return beers


def _is_integer_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type: object, array, string, number, boolean, null."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _without_id_summary(position: int, entry: Any) -> str:
    """'entry 7 ("Hop Fiction"): id "405"' — where in the array, and what it holds."""
    if not isinstance(entry, dict):
        return f"entry {position}: a JSON {json_type(entry)}, not a beer"
    name = f" ({json.dumps(entry['name'], ensure_ascii=False)})" if entry.get("name") else ""
    found = f"id {json.dumps(entry['id'])}" if "id" in entry else "no id"
    return f"entry {position}{name}: {found}"


def load_catalog(
    path: str | os.PathLike[str] | None = None,
    *,
    on_duplicates: Callable[[list[dict[str, Any]], dict[int, dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Beers from a catalogue file (v2 or v3 shape), in v2 shape, sorted by id.

    A repeated id is refused (CatalogError), unless `on_duplicates` is given: then the last
    record of each id is kept and `on_duplicates(records dropped, record kept by id)` is
    called.
    """
    if path is not None and (not isinstance(path, str | os.PathLike) or not str(path)):
        # "" would be read as the current folder, a number fail inside pathlib
        raise CatalogError(
            f"The catalogue must be the path of a file (a JSON array of beers), not {path!r}."
        )
    path = Path(path) if path is not None else default_catalog_path()
    try:
        data = path.read_bytes()
    except OSError as exc:
        # a notebook reads a relative path from its own folder, not from where one expects
        where = "" if path.is_absolute() else f" (read from {Path.cwd()})"
        raise CatalogError(
            f"Cannot read the catalogue {path}{where}: {exc.strerror}. Give the path of a "
            "catalogue file: a JSON array of beers, v2 or v3 shape."
        ) from exc
    remedy = _FETCH_AGAIN if path.name == CATALOG_FILENAME else _FIX_THE_FILE
    beers = [to_v2_shape(b) for b in _parse_catalog_bytes(data, str(path), remedy)]
    beers.sort(key=lambda b: b["id"])  # stable: records of one id stay in file order
    ids = [b["id"] for b in beers]
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i, j in itertools.pairwise(ids) if i == j})
        if on_duplicates is None:
            raise CatalogError(f"{path} has duplicate beer ids: {duplicates[:10]}.")
        last_of_id = {b["id"]: b for b in beers}
        on_duplicates([b for b in beers if last_of_id[b["id"]] is not b], last_of_id)
        beers = list(last_of_id.values())
    return beers


def is_v3_shape(beer: dict[str, Any]) -> bool:
    return "image" in beer and "image_url" not in beer


def to_v2_shape(beer: dict[str, Any], image_base: str | None = None) -> dict[str, Any]:
    """A beer in the v2 shape: v3's `image` (a file name) becomes `image_url`.

    With `image_base` (e.g. "http://host/v3/images") the URL is absolute; without it the
    file name is kept as is. A v2 beer is returned unchanged.
    """
    if not is_v3_shape(beer):
        return beer
    image = beer["image"]
    if image and image_base:
        image = f"{image_base.rstrip('/')}/{image}"
    return {
        ("image_url" if k == "image" else k): (image if k == "image" else v)
        for k, v in beer.items()
    }


def image_file_name(beer: dict[str, Any]) -> str | None:
    """The file name v3 serves for a beer's image, derived from its v2 `image_url`."""
    url = beer.get("image_url")
    if not url:
        return None
    return posixpath.basename(urlparse(url).path) or None


def to_v3_shape(beer: dict[str, Any]) -> dict[str, Any]:
    """A v2-shaped beer as v3 serves it: `image` (a file name) in place of `image_url`."""
    if is_v3_shape(beer):
        return beer
    return {
        ("image" if k == "image_url" else k): (image_file_name(beer) if k == "image_url" else v)
        for k, v in beer.items()
    }


def _write_beers(beers: Iterable[dict[str, Any]], fh: Any) -> None:
    fh.write("[")
    for i, beer in enumerate(beers):
        fh.write(",\n" if i else "\n")
        fh.write(json.dumps(beer, ensure_ascii=False))
    fh.write("\n]\n")


def catalog_source(path: str | os.PathLike[str]) -> dict[str, str]:
    """A catalogue file as a model card's `data.source` names it: its name and the sha256 of
    its bytes (`sha256sum FILE` gives the same), which tells two copies of one name apart."""
    path = Path(path)
    return {"file": path.name, "file_sha256": sha256_file(path)}


def write_catalog(beers: Iterable[dict[str, Any]], out: str | os.PathLike[str]) -> Path:
    """Write beers as a JSON array, atomically (files.replacing: a temporary file synced to
    disk, then renamed into place), readable by whom the umask lets read what open() makes.
    A link or a path that is no regular file (/dev/stdout, a pipe) is written through: a
    rename would put a file in place of the link or the device."""
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_file()):
        with naming(out), out.open("w", encoding="utf-8", buffering=1 << 20) as fh:
            _write_beers(beers, fh)
        return out
    with replacing(out, mode=SHARED, buffering=1 << 20) as fh:
        _write_beers(beers, fh)
    return out
