"""The local target: an AWS emulator (moto server) and a Punk API server on 127.0.0.1, with
the SAM template deployed to the emulator.

    from brewops import local
    state = local.up()      # or `brewops local up`
    state.endpoint_url, state.punkapi_url, state.outputs
    local.down()
"""

from brewops.local.runtime import down, status, up
from brewops.local.state import LocalState

__all__ = ["LocalState", "down", "status", "up"]
