"""The local target: an AWS emulator (moto server) and a Punk API server on 127.0.0.1, with
the SAM template deployed to the emulator.

    from brewops import local
    state = local.up()      # or `brewops local up`
    state.endpoint_url, state.punkapi_url, state.outputs
    local.down()
"""

from typing import TYPE_CHECKING, Any

from brewops.local.state import LocalState

if TYPE_CHECKING:
    from brewops.local.runtime import down, status, up

__all__ = ["LocalState", "down", "status", "up"]


def __getattr__(name: str) -> Any:
    # The runtime (requests, psutil, tenacity) is imported when first used, not with the
    # package: `brewops local`'s help and its shell completion would wait for it.
    if name in ("down", "status", "up"):
        from brewops.local import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
