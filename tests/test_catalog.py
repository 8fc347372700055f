"""The catalogue: fetching with npm (a stand-in npm on PATH), checksum, cache, v2/v3 files."""

from __future__ import annotations

import base64
import errno
import gc
import hashlib
import http.server
import json
import os
import random
import shutil
import stat
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from brewops import catalog
from brewops.catalog import (
    CATALOG_FILENAME,
    CATALOG_SHA256,
    EXPECTED_BEERS,
    CatalogError,
    fetch_catalog,
    load_catalog,
    sha256_of,
    to_v2_shape,
    to_v3_shape,
    write_catalog,
)
from fixtures.punkapi import make_tarball


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def cache_leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_the_real_catalogue_matches_the_pin(catalog_path: Path, real_bytes: bytes):
    assert sha256_of(real_bytes) == CATALOG_SHA256
    beers = load_catalog(catalog_path)
    assert len(beers) == EXPECTED_BEERS
    assert [b["id"] for b in beers] == list(range(1, EXPECTED_BEERS + 1))


def test_fetch_packs_checks_and_caches(fake_npm, cache: Path, real_bytes: bytes):
    path = fetch_catalog(cache_dir=cache)
    assert path == cache / CATALOG_FILENAME
    assert path.read_bytes() == real_bytes
    assert fake_npm.calls.read_text(encoding="utf-8").split() == [
        "pack",
        "punkapi-db@2.6.0",
        "--loglevel=error",
        "--prefer-offline",
    ]
    assert cache_leftovers(cache) == [CATALOG_FILENAME]  # the scratch directory is gone


def test_a_fetched_catalogue_is_on_disk_before_it_is_named_and_its_name_after(
    fake_npm, cache: Path, real_bytes: bytes, monkeypatch
):
    cached = cache / CATALOG_FILENAME
    synced = []
    fsync = os.fsync

    def recorded(descriptor: int) -> None:
        found = os.fstat(descriptor)
        synced.append(("folder" if stat.S_ISDIR(found.st_mode) else found.st_size, cached.exists()))
        fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recorded)
    fetch_catalog(cache_dir=cache)

    # the bytes before the rename (a power cut then leaves no catalogue), the name after it
    assert synced == [(len(real_bytes), False), ("folder", True)]


def test_a_cached_catalogue_is_not_fetched_again(fake_npm, cache: Path):
    first = fetch_catalog(cache_dir=cache)
    second = fetch_catalog(cache_dir=cache)
    assert first == second
    assert fake_npm.call_count() == 1


def test_a_catalogue_cached_under_another_pin_is_not_fetched_again(
    fake_npm, cache: Path, tmp_path: Path
):
    small = json.dumps([{"id": 1}]).encode()
    fake_npm.serve(make_tarball(tmp_path / "small.tgz", small))

    for _ in range(2):
        path = fetch_catalog(cache_dir=cache, expected_sha256=sha256_of(small))

    assert path.read_bytes() == small
    assert fake_npm.call_count() == 1


def test_force_fetches_again(fake_npm, cache: Path):
    fetch_catalog(cache_dir=cache)
    fetch_catalog(cache_dir=cache, force=True)
    assert fake_npm.call_count() == 2


def test_wrong_checksum_is_refused_and_nothing_is_cached(
    fake_npm, cache: Path, tmp_path: Path, real_bytes: bytes
):
    tampered = real_bytes.replace(b'"abv":4.5', b'"abv":5.4', 1)
    assert tampered != real_bytes
    fake_npm.serve(make_tarball(tmp_path / "tampered.tgz", tampered))
    with pytest.raises(CatalogError, match="Checksum mismatch") as info:
        fetch_catalog(cache_dir=cache)
    assert CATALOG_SHA256 in str(info.value) and "nothing was cached" in str(info.value)
    assert cache_leftovers(cache) == []


def test_an_unexpected_pin_is_refused(fake_npm, cache: Path):
    with pytest.raises(CatalogError, match="Checksum mismatch"):
        fetch_catalog(cache_dir=cache, expected_sha256="0" * 64)
    assert cache_leftovers(cache) == []


def test_a_corrupt_tarball_gives_a_clear_error(fake_npm, cache: Path, tmp_path: Path):
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(random.Random(1).randbytes(2048))
    fake_npm.serve(junk)
    with pytest.raises(CatalogError, match="corrupt") as info:
        fetch_catalog(cache_dir=cache)
    assert "npm cache clean" in str(info.value)
    assert cache_leftovers(cache) == []


def test_a_tarball_without_data_json_is_refused(fake_npm, cache: Path, tmp_path: Path):
    fake_npm.serve(make_tarball(tmp_path / "other.tgz", b"{}", member="package/index.js"))
    with pytest.raises(CatalogError, match=r"lacks package/data\.json"):
        fetch_catalog(cache_dir=cache)
    assert cache_leftovers(cache) == []


def test_an_npm_failure_is_reported(fake_npm, cache: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FAKE_NPM_FAIL", "1")
    with pytest.raises(CatalogError, match=r"failed \(exit 1\).*E404"):
        fetch_catalog(cache_dir=cache)
    assert cache_leftovers(cache) == []


def test_an_npm_out_of_disk_space_says_where_to_free_some(fake_npm, cache: Path, tmp_path: Path):
    npm = tmp_path / "bin" / "npm"
    npm.write_text(  # what npm 10 says when the disk is full
        "#!/bin/sh\n"
        "echo 'npm error code ENOSPC' >&2\n"
        "echo 'npm error nospc ENOSPC: no space left on device, write' >&2\n"
        "exit 228\n",
        encoding="utf-8",
    )
    with pytest.raises(CatalogError, match="no space left on device") as info:
        fetch_catalog(cache_dir=cache)
    assert f"Free some space in {cache} (BREWOPS_CACHE_DIR)" in str(info.value)
    assert "network" not in str(info.value)
    assert cache_leftovers(cache) == []


@pytest.mark.parametrize(
    ("code", "message", "remedy"),
    [
        ("EDQUOT", "disk quota exceeded", "Free some space in"),
        ("EFBIG", "file too large", "file size limit (`ulimit -f`)"),
    ],
)
def test_an_npm_that_cannot_write_the_tarball_says_so_not_the_network(
    fake_npm, cache: Path, tmp_path: Path, code: str, message: str, remedy: str
):
    npm = tmp_path / "bin" / "npm"
    npm.write_text(  # what npm 10 says when a write fails so
        "#!/bin/sh\n"
        f"echo 'npm error code {code}' >&2\n"
        f"echo 'npm error {code}: {message}, write' >&2\n"
        "exit 229\n",
        encoding="utf-8",
    )
    with pytest.raises(CatalogError, match=message) as info:
        fetch_catalog(cache_dir=cache)
    assert remedy in str(info.value)
    assert "network" not in str(info.value)
    assert cache_leftovers(cache) == []


def test_a_full_disk_while_caching_names_the_cache_file_and_leaves_nothing(
    fake_npm, cache: Path, monkeypatch: pytest.MonkeyPatch
):
    import errno

    def disk_full(descriptor: int) -> None:  # as the write to the open file fails
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError) as raised:
        fetch_catalog(cache_dir=cache)
    assert raised.value.filename == str(cache / CATALOG_FILENAME)
    assert cache_leftovers(cache) == []


def test_an_npm_that_hangs_is_stopped_and_reported(
    fake_npm, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    npm = tmp_path / "bin" / "npm"
    npm.write_text("#!/bin/sh\nexec sleep 60\n", encoding="utf-8")
    monkeypatch.setattr(catalog, "NPM_TIMEOUT_SECONDS", 0.2)
    with pytest.raises(CatalogError, match=r"did not finish within 0\.2 s.*network"):
        fetch_catalog(cache_dir=cache)
    assert cache_leftovers(cache) == []


def test_missing_npm_says_what_to_do(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(CatalogError, match="npm was not found") as info:
        fetch_catalog(cache_dir=cache)
    assert "Install Node.js" in str(info.value) and "--catalog FILE" in str(info.value)
    # `brewops data fetch` (what `make run` runs) takes no --catalog: where a copy goes
    assert str(cache / CATALOG_FILENAME) in str(info.value)


def test_a_tampered_cache_is_replaced(fake_npm, cache: Path, real_bytes: bytes):
    path = fetch_catalog(cache_dir=cache)
    path.write_bytes(real_bytes[:1000])
    assert fetch_catalog(cache_dir=cache).read_bytes() == real_bytes
    assert fake_npm.call_count() == 2


def test_a_tampered_cache_is_not_kept_when_a_good_copy_cannot_be_fetched(
    fake_npm, cache: Path, real_bytes: bytes, monkeypatch: pytest.MonkeyPatch
):
    path = fetch_catalog(cache_dir=cache)
    path.write_bytes(real_bytes[:1000])
    monkeypatch.setenv("FAKE_NPM_FAIL", "1")
    with pytest.raises(CatalogError, match="failed"):
        fetch_catalog(cache_dir=cache)
    assert cache_leftovers(cache) == []


def test_a_pinned_file_that_is_not_a_catalogue_is_not_cached(fake_npm, cache: Path, tmp_path: Path):
    junk = b"<html>not a catalogue</html>"
    fake_npm.serve(make_tarball(tmp_path / "junk.tgz", junk))
    with pytest.raises(CatalogError, match="not valid JSON"):
        fetch_catalog(cache_dir=cache, expected_sha256=sha256_of(junk))
    assert cache_leftovers(cache) == []


def test_a_truncated_tarball_gives_a_clear_error(fake_npm, cache: Path, tmp_path: Path):
    good = (tmp_path / "good.tgz").read_bytes()  # the fake npm's tarball of the real catalogue
    truncated = tmp_path / "truncated.tgz"
    truncated.write_bytes(good[: len(good) // 2])
    fake_npm.serve(truncated)
    with pytest.raises(CatalogError, match="corrupt"):
        fetch_catalog(cache_dir=cache)
    assert cache_leftovers(cache) == []


def test_a_data_json_that_is_not_a_file_is_refused(fake_npm, cache: Path, tmp_path: Path):
    tarball = tmp_path / "dir.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        info = tarfile.TarInfo("package/data.json")
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
    fake_npm.serve(tarball)
    with pytest.raises(CatalogError, match=r"lacks package/data\.json"):
        fetch_catalog(cache_dir=cache)
    assert cache_leftovers(cache) == []


def test_npm_that_packs_nothing_is_reported(fake_npm, cache: Path, tmp_path: Path):
    fake_npm.serve(tmp_path / "no-such.tgz")  # the fake npm copies nothing, exits 0
    with pytest.raises(CatalogError, match="produced no tarball"):
        fetch_catalog(cache_dir=cache)
    assert cache_leftovers(cache) == []


@pytest.mark.parametrize("redirect", [">&2", ""])  # npm says it on stderr, or on stdout
def test_an_npm_failure_quotes_the_end_of_what_npm_said(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redirect: str
):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    said = [f"npm notice line {i}" for i in range(5)] + ["npm error code E404"]
    npm.write_text(
        "#!/bin/sh\n" + "".join(f"echo '{line}' {redirect}\n" for line in said) + "exit 1\n",
        encoding="utf-8",
    )
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(CatalogError) as info:
        fetch_catalog(cache_dir=cache)
    assert "npm error code E404" in str(info.value)
    assert "npm notice line 1" in str(info.value)
    assert "npm notice line 0" not in str(info.value)  # the last five lines only


# what npm 11 prints when the registry refuses the connection, stack trace and all
NPM_CONNECTION_REFUSED = """npm error code ECONNREFUSED
npm error syscall connect
npm error errno ECONNREFUSED
npm error FetchError: request to http://127.0.0.1:9/punkapi-db failed, reason: connect \
ECONNREFUSED 127.0.0.1:9
npm error     at ClientRequest.<anonymous> (/usr/lib/node_modules/npm/node_modules/minipass-fetch/lib/index.js:130:14)
npm error     at process.processTicksAndRejections (node:internal/process/task_queues:83:21) {
npm error   code: 'ECONNREFUSED',
npm error   port: 9,
npm error   type: 'system'
npm error }
npm error
npm error If you are behind a proxy, please make sure that the 'proxy' config is set properly.
npm error A complete log of this run can be found in: /root/.npm/_logs/debug-0.log
"""


# recent npm prefixes its error lines with "npm error", older ones with "npm ERR!"
@pytest.mark.parametrize("prefix", ["npm error", "npm ERR!"])
def test_an_unreachable_registry_is_named_without_the_stack_trace(
    prefix: str, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    npm_said = NPM_CONNECTION_REFUSED.replace("npm error", prefix)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "npm-said").write_text(npm_said, encoding="utf-8")
    npm = bin_dir / "npm"
    npm.write_text(f"#!/bin/sh\ncat '{tmp_path / 'npm-said'}' >&2\nexit 1\n", encoding="utf-8")
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(CatalogError) as info:
        fetch_catalog(cache_dir=cache)
    said = str(info.value)
    assert "request to http://127.0.0.1:9/punkapi-db failed" in said
    assert "ClientRequest" not in said and "port: 9" not in said
    # the last five lines that say something: no brace or empty line of the dump among them
    quoted = " ".join(npm_said.splitlines()[i] for i in (1, 2, 3, 11, 12))
    assert f"(exit 1): {quoted}. Check" in said
    assert "npm config get registry" in said


class Registry(http.server.ThreadingHTTPServer):
    """An npm registry on 127.0.0.1 holding one package, punkapi-db 2.6.0, that counts the
    requests it answers."""

    def __init__(self, tarball: bytes):
        super().__init__(("127.0.0.1", 0), RegistryHandler)
        self.tarball = tarball
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class RegistryHandler(http.server.BaseHTTPRequestHandler):
    server: Registry

    def do_GET(self) -> None:
        self.server.requests += 1
        if self.path.endswith(".tgz"):
            body = self.server.tarball
        else:
            integrity = base64.b64encode(hashlib.sha512(self.server.tarball).digest()).decode()
            version = {
                "name": catalog.NPM_PACKAGE,
                "version": catalog.NPM_VERSION,
                "dist": {
                    "tarball": f"{self.server.url}{catalog.NPM_PACKAGE}/-/package.tgz",
                    "integrity": f"sha512-{integrity}",
                },
            }
            body = json.dumps(
                {
                    "name": catalog.NPM_PACKAGE,
                    "dist-tags": {"latest": catalog.NPM_VERSION},
                    "versions": {catalog.NPM_VERSION: version},
                }
            ).encode()
        self.send_response(200)
        # stale at once, as a copy cached hours before is
        self.send_header("Cache-Control", "max-age=0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """A local npm registry for the real npm, with a cache of its own."""
    server = Registry(make_tarball(tmp_path / "package.tgz", b"[]").read_bytes())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("npm_config_registry", server.url)
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm")
def test_a_package_in_npms_cache_is_fetched_without_asking_the_registry(
    registry: Registry, tmp_path: Path
):
    # GIVEN the package fetched once, so in npm's cache
    pinned = sha256_of(b"[]")
    fetch_catalog(cache_dir=tmp_path / "first", expected_sha256=pinned)
    assert registry.requests > 0
    # WHEN another checkout (or cache folder) fetches it
    registry.requests = 0
    fetched = fetch_catalog(cache_dir=tmp_path / "second", expected_sha256=pinned)
    # THEN npm's copy serves, and the registry, which offline is not there, is not asked
    assert fetched.read_bytes() == b"[]"
    assert registry.requests == 0


# ----------------------------------------------------------------------------- files


def test_load_catalog_sorts_by_id(write_catalog_file, catalog_beers):
    shuffled = list(catalog_beers[:20])
    random.Random(3).shuffle(shuffled)
    assert [b["id"] for b in load_catalog(write_catalog_file(shuffled))] == list(range(1, 21))


def test_load_catalog_reads_the_v3_shape(write_catalog_file, catalog_beers):
    v3 = [to_v3_shape(b) for b in catalog_beers[:5]]
    assert "image" in v3[0] and "image_url" not in v3[0]
    loaded = load_catalog(write_catalog_file(v3))
    assert [list(b) for b in loaded] == [list(b) for b in catalog_beers[:5]]  # same fields, order
    assert loaded[1]["image_url"] == "2.png"


def test_to_v2_shape_builds_image_urls_and_leaves_v2_alone(catalog_beers):
    v2 = catalog_beers[1]
    assert to_v2_shape(v2) is v2
    back = to_v2_shape(to_v3_shape(v2), image_base="http://host/v3/images/")
    assert back["image_url"] == "http://host/v3/images/2.png"
    assert {k: v for k, v in back.items() if k != "image_url"} == {
        k: v for k, v in v2.items() if k != "image_url"
    }


def test_to_v3_shape_keeps_a_missing_image_missing(catalog_beers):
    no_image = next(b for b in catalog_beers if b["image_url"] is None)
    assert to_v3_shape(no_image)["image"] is None
    back = to_v2_shape(to_v3_shape(no_image), image_base="http://host/v3/images")
    assert back["image_url"] is None  # not "http://host/v3/images/None"


@pytest.mark.parametrize(
    ("url", "image"),
    [
        ("https://images.example/v2/2.png?width=300", "2.png"),
        ("https://images.example/", None),  # no file name: no image, not ""
    ],
)
def test_to_v3_shape_names_the_image_file_of_a_url_with_a_query(
    catalog_beers, url: str, image: str | None
):
    beer = {**catalog_beers[1], "image_url": url}
    assert to_v3_shape(beer)["image"] == image


def test_a_v2_beer_with_an_image_field_too_stays_as_it_is(catalog_beers):
    beer = {**catalog_beers[1], "image": "extra.png"}
    assert to_v2_shape(beer, image_base="http://host/v3/images") is beer


@pytest.mark.parametrize(
    ("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)], ids=oct
)
def test_a_written_catalogue_is_as_shared_as_the_umask_makes_a_new_file(
    tmp_path: Path, catalog_beers, umask, mask: int, mode: int
):
    umask(mask)
    path = write_catalog(catalog_beers[:3], tmp_path / "new" / "shared.json")
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert load_catalog(path) == catalog_beers[:3]


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])  # Ctrl-C too
def test_a_failed_write_leaves_the_previous_catalogue_and_no_partial_file(
    tmp_path: Path, catalog_beers, failure
):
    out = write_catalog(catalog_beers[:2], tmp_path / "catalog.json")
    before = out.read_bytes()

    def beers_then_a_failure():
        yield catalog_beers[2]
        raise failure("the source broke off")

    with pytest.raises(failure, match="broke off"):
        write_catalog(beers_then_a_failure(), out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.json"]


def test_a_catalogue_is_on_disk_before_it_replaces_the_previous_one(
    tmp_path: Path, catalog_beers, monkeypatch
):
    out = write_catalog(catalog_beers[:2], tmp_path / "catalog.json")
    before = out.read_bytes()
    synced = []

    def synced_then_interrupted(descriptor: int) -> None:  # Ctrl-C while the disk catches up
        synced.append(os.fstat(descriptor).st_size)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", synced_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_catalog(catalog_beers[:1], out)

    assert synced and synced[0] > 0  # the new catalogue's content, not yet renamed
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.json"]


def test_a_catalogue_another_user_owns_is_refused_naming_it(
    tmp_path: Path, catalog_beers, monkeypatch
):
    out = write_catalog(catalog_beers[:2], tmp_path / "catalog.json")

    def replace_refused(source, destination):  # as in /tmp, over another user's file
        raise PermissionError(errno.EPERM, "Operation not permitted", source, destination)

    monkeypatch.setattr(os, "replace", replace_refused)
    with pytest.raises(PermissionError) as raised:
        write_catalog(catalog_beers[:1], out)

    assert raised.value.filename == str(out)  # not the temporary file, gone by now
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in any folder")
def test_a_catalogue_in_a_read_only_folder_is_refused_naming_it(tmp_path: Path, catalog_beers):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError) as raised:
            write_catalog(catalog_beers[:1], folder / "catalog.json")
    finally:
        folder.chmod(0o755)

    assert raised.value.filename == str(folder / "catalog.json")
    assert list(folder.iterdir()) == []


def test_a_catalogue_whose_folder_refuses_its_temporary_file_is_refused_naming_it(
    tmp_path: Path, catalog_beers, monkeypatch
):
    import tempfile

    def refused(*args, **kwargs):  # as a read-only folder refuses a new file, root or not
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".x.part"))

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    monkeypatch.setattr(os, "open", refused)
    with pytest.raises(PermissionError) as raised:
        write_catalog(catalog_beers[:1], tmp_path / "catalog.json")

    assert raised.value.filename == str(tmp_path / "catalog.json")  # not the temporary's


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[{", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON \\(nested too deeply\\)"),
        (b'[{"id": ' + b"1" * 5000 + b"}]", "not valid JSON \\(Exceeds the limit \\(4300 digits"),
        # an object that is not a beer is not taken for one
        (b'{"beers": []}', "expected a JSON array of beers, found a JSON object\\.$"),
        (b"{}", "expected a JSON array"),
        (b'{"id": 1, "name": "A"}', "found a JSON object \\(one beer\\? put it in \\[ \\]\\)"),
        (b'[{"id": "1"}]', "integer id"),
        (b'[{"id": null, "name": "A"}]', 'entry 1 \\("A"\\): id null\\)'),  # null, not absent
        (json.dumps([{"id": 1}, {"id": 1}]).encode(), "duplicate beer ids: \\[1\\]"),
        (json.dumps([{"id": i} for i in (2, 1, 2, 1, 3)]).encode(), "ids: \\[1, 2\\]"),
        # the first ten of many
        (json.dumps([{"id": i % 11} for i in range(22)]).encode(), "ids: \\[0, 1, .*, 9\\]\\.$"),
    ],
)
def test_bad_catalogue_files_are_refused(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(CatalogError, match=message):
        load_catalog(path)


_NAMED = 'entry 2 ("B"): id "2"; entry 3: a JSON null, not a beer; entry 4 ("C"): no id'


@pytest.mark.parametrize(
    ("more", "said"),
    [
        ([{"id": True}], f"4 of 5 ({_NAMED}; …)"),  # a boolean is no id; the first three named
        ([], f"3 of 4 ({_NAMED})"),  # all three named: nothing more to hint at
    ],
)
def test_the_entries_without_an_integer_id_are_named(tmp_path: Path, more: list, said: str):
    path = tmp_path / "newer.json"
    entries = [{"id": 1, "name": "A"}, {"id": "2", "name": "B"}, None, {"name": "C"}, *more]
    path.write_text(json.dumps(entries), encoding="utf-8")
    with pytest.raises(CatalogError) as refused:
        load_catalog(path)
    assert f"entries without one: {said}. Give every beer a whole-number id." in str(refused.value)


@pytest.mark.parametrize(
    ("name", "remedy", "not_said"),
    [
        ("newer.json", "Save it as one JSON array of beers in UTF-8", "brewops data fetch"),
        (CATALOG_FILENAME, "Fetch it again (`brewops data fetch --force`)", "Save it"),
    ],
)
def test_only_a_broken_copy_of_the_real_catalogue_is_sent_to_fetch_it_again(
    tmp_path: Path, name: str, remedy: str, not_said: str
):
    # a file of one's own (here one object per line) is not mended by fetching the real one
    path = tmp_path / name
    path.write_text('{"id": 1}\n{"id": 2}\n', encoding="utf-8")
    with pytest.raises(CatalogError, match="not valid JSON") as refused:
        load_catalog(path)
    assert remedy in str(refused.value)
    assert not_said not in str(refused.value)


def test_a_missing_catalogue_file_is_reported(tmp_path: Path):
    with pytest.raises(CatalogError, match="Cannot read the catalogue") as refused:
        load_catalog(tmp_path / "nope.json")
    assert "read from" not in str(refused.value), "an absolute path needs no folder said"


def test_a_missing_relative_catalogue_says_where_it_was_looked_for(tmp_path: Path, monkeypatch):
    # a notebook reads a relative path from notebooks/, not from the repository's root
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CatalogError) as refused:
        load_catalog("data/beers.json")
    said = str(refused.value)
    assert said.startswith(f"Cannot read the catalogue data/beers.json (read from {tmp_path}): ")
    assert said.endswith(
        "Give the path of a catalogue file: a JSON array of beers, v2 or v3 shape."
    )


def test_a_file_of_ones_own_that_is_not_json_is_told_in_words_notebook_05_uses_too(tmp_path):
    # "--catalog" is a command's option: notebook 05 sets its `catalog` parameter instead
    path = tmp_path / "mine.json"
    path.write_text("not json {", encoding="utf-8")
    with pytest.raises(CatalogError, match="or give the path of a good file") as refused:
        load_catalog(path)
    assert "--catalog" not in str(refused.value)


@pytest.mark.parametrize("path", ["", 5, ["beers.json"]])
def test_a_catalogue_that_is_no_path_is_refused_saying_what_it_must_be(path):
    # "" was read as the current folder ("Is a directory"), 5 was a TypeError from pathlib
    with pytest.raises(CatalogError, match=r"must be the path of a file \(a JSON array of beers\)"):
        load_catalog(path)


def test_repeated_ids_can_keep_the_last_record_when_asked(tmp_path: Path):
    path = tmp_path / "dup.json"
    beers = [{"id": 2, "name": "old"}, {"id": 1, "name": "one"}, {"id": 2, "name": "new"}]
    beers += [{"id": 3, "name": "a"}, {"id": 3, "name": "b"}, {"id": 3, "name": "c"}]
    path.write_text(json.dumps(beers), encoding="utf-8")
    reported = []
    loaded = load_catalog(
        path, on_duplicates=lambda dropped, kept: reported.append((dropped, kept))
    )
    assert [(b["id"], b["name"]) for b in loaded] == [(1, "one"), (2, "new"), (3, "c")]
    ((dropped, kept),) = reported
    assert [(b["id"], b["name"]) for b in dropped] == [(2, "old"), (3, "a"), (3, "b")]
    assert kept == {b["id"]: b for b in loaded}
    # the default (the API server, synth, the stream backfill) still refuses them
    with pytest.raises(CatalogError, match="duplicate beer ids"):
        load_catalog(path)


def test_a_catalogue_written_to_a_device_leaves_the_device_in_place(tmp_path: Path, catalog_beers):
    # `--out /dev/stdout` is a link to a device: renaming a file over it would replace it
    out = tmp_path / "stdout"
    out.symlink_to(os.devnull)
    write_catalog(catalog_beers[:2], out)
    assert out.is_symlink() and stat.S_ISCHR(out.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stdout"]


def test_a_catalogue_written_through_a_link_leaves_the_link(tmp_path: Path, catalog_beers):
    # `--out /dev/stdout > file`: the link leads to a regular file
    target = tmp_path / "redirected.json"
    target.write_text("", encoding="utf-8")
    out = tmp_path / "stdout"
    out.symlink_to(target)
    write_catalog(catalog_beers[:2], out)
    assert out.is_symlink()
    assert load_catalog(target) == catalog_beers[:2]


def test_a_catalogue_written_to_a_pipe_reaches_its_reader(tmp_path: Path, catalog_beers):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    read = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)  # so the writer's open does not block
    try:
        write_catalog(catalog_beers[:1], pipe)
        assert json.loads(os.read(read, 1 << 16)) == catalog_beers[:1]
    finally:
        os.close(read)
    assert stat.S_ISFIFO(pipe.stat().st_mode)


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="needs /dev/full")
def test_a_catalogue_written_through_a_link_to_a_full_disk_names_the_link(
    tmp_path: Path, catalog_beers
):
    import errno

    out = tmp_path / "stdout"
    out.symlink_to("/dev/full")
    with pytest.raises(OSError) as raised:
        write_catalog(catalog_beers[:2], out)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(out)


def test_a_catalogue_on_a_full_disk_names_its_file_and_leaves_nothing(
    tmp_path: Path, catalog_beers, monkeypatch: pytest.MonkeyPatch
):
    import errno
    import io

    class FullDisk(io.StringIO):
        def write(self, text: str) -> int:  # as the write to the open file fails
            raise OSError(errno.ENOSPC, "No space left on device")

    def full_disk(descriptor: int, *args: object, **kwargs: object) -> FullDisk:
        os.close(descriptor)
        return FullDisk()

    monkeypatch.setattr(os, "fdopen", full_disk)
    out = tmp_path / "beers.json"
    with pytest.raises(OSError) as raised:
        write_catalog(catalog_beers[:2], out)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(out)
    assert list(tmp_path.iterdir()) == []


def test_a_catalogue_keeps_beer_names_as_they_are_spelled(tmp_path: Path, catalog_beers):
    beer = {**catalog_beers[0], "name": "Bräu Æble"}
    out = write_catalog([beer], tmp_path / "beers.json")
    assert "Bräu Æble".encode() in out.read_bytes() and b"\\u00" not in out.read_bytes()


# The cyclic collector finds nothing in a parsed catalogue but runs again and again over it
# while it grows: it is paused for the parse, and left as it was found.


@pytest.mark.parametrize("enabled", [True, False], ids=["collector on", "collector off"])
def test_the_catalogue_is_parsed_with_the_collector_paused_and_left_as_found(
    catalog_path: Path, monkeypatch: pytest.MonkeyPatch, enabled: bool
):
    collector_on_while_parsing = []
    original = catalog.parse_json

    def parse_json(data: bytes) -> object:
        collector_on_while_parsing.append(gc.isenabled())
        return original(data)

    monkeypatch.setattr(catalog, "parse_json", parse_json)
    was_enabled = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        beers = load_catalog(catalog_path)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was_enabled else gc.disable)()

    assert collector_on_while_parsing == [False]
    assert beers == sorted(json.loads(catalog_path.read_bytes()), key=lambda b: b["id"])


def test_a_catalogue_that_fails_to_parse_leaves_the_collector_on(tmp_path: Path):
    path = tmp_path / "bad.json"
    path.write_bytes(b'[{"id": 1}, ')
    assert gc.isenabled()

    with pytest.raises(CatalogError, match="not valid JSON"):
        load_catalog(path)

    assert gc.isenabled()


def test_a_catalogue_file_is_named_by_its_name_and_the_sha256_of_its_bytes(tmp_path):
    # more than one read's worth, so the hash runs over several chunks
    data = json.dumps([{"id": i, "name": "Ünïcode " * 40} for i in range(3000)]).encode()
    path = tmp_path / "beers.json"
    path.write_bytes(data)

    assert catalog.catalog_source(path) == {
        "file": "beers.json",
        "file_sha256": hashlib.sha256(data).hexdigest(),
    }
    assert catalog.catalog_source(str(path)) == catalog.catalog_source(path)
