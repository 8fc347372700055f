"""The Punk API, both sides: a client for any v2 or v3 server and a faithful local server."""

API_VERSIONS = ("v2", "v3")


def canonical_api_version(version: str) -> str:
    """`version` as API_VERSIONS spell it, in any case: "V2" is v2, as a v2 server answers
    /V2 too. ValueError for a version that is none of them."""
    spelt = version.lower() if isinstance(version, str) else version
    if spelt not in API_VERSIONS:
        raise ValueError(f"api_version must be one of {API_VERSIONS}, not {version!r}")
    return spelt
