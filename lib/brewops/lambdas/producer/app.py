"""EventBridge calls this on the schedule; it puts random beers from the Punk API into Kinesis.

Configuration comes from the environment the template sets: PUNKAPI_URL (base URL with the
version prefix), PUNKAPI_VERSION (v2|v3), STREAM_NAME and BEERS_PER_TICK (default 1).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from brewops.lambdas.console import stdout_handler
from brewops.producer import produce_random_beers

logger = Logger(service="brewops-producer", logger_handler=stdout_handler())

# Seconds of the invocation kept for the Kinesis puts and their retries: the Punk API client
# stops retrying before then, so a tick that cannot get beers says why before it times out.
# It holds the longest PutRecords call (longest_call_seconds) and TICK_END_SECONDS.
KINESIS_RESERVE_SECONDS = 25.0
# The puts end this long before the function's timeout: time to log and return the failure
TICK_END_SECONDS = 1.0
# botocore's defaults (60 s to connect, 60 s to read, then retries) would outlast the reserve
# and the function: a Kinesis that never answers must fail the puts, with the reason, in time.
KINESIS_CLIENT_CONFIG = Config(
    connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 2}
)


@dataclass(frozen=True)
class Settings:
    punkapi_url: str
    punkapi_version: str
    stream_name: str
    beers_per_tick: int = 1

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            punkapi_url=os.environ["PUNKAPI_URL"],
            punkapi_version=os.environ.get("PUNKAPI_VERSION", "v2"),
            stream_name=os.environ["STREAM_NAME"],
            beers_per_tick=int(os.environ.get("BEERS_PER_TICK", "1")),
        )


# Clients live for the life of the execution environment, keyed by what configures them,
# so the local runtime can point the same module at another endpoint or API.
@cache
def punkapi_client(base_url: str, api_version: str) -> Any:
    from brewops.punkapi.client import PunkApiClient

    # A beer that fails the schema is still sent: the transform, the pipeline's one
    # validator, fails it into the error prefix and logs why if it cannot be cleaned.
    return PunkApiClient(base_url, api_version=api_version, on_invalid="keep")


@cache
def kinesis_client(endpoint_url: str | None, region: str | None) -> Any:
    import boto3

    return boto3.client(
        "kinesis", endpoint_url=endpoint_url, region_name=region, config=KINESIS_CLIENT_CONFIG
    )


def dependencies() -> dict[str, Any]:
    settings = Settings.from_env()
    return {
        "api": punkapi_client(settings.punkapi_url, settings.punkapi_version),
        "stream_name": settings.stream_name,
        "count": settings.beers_per_tick,
        "kinesis_client": kinesis_client(
            os.environ.get("AWS_ENDPOINT_URL"),
            os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        ),
    }


@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=EventBridgeEvent)
def handler(event: EventBridgeEvent, context: LambdaContext) -> dict:
    wiring = dependencies()
    api = wiring["api"]  # lives across invocations: this tick's budget and errors only
    remaining = context.get_remaining_time_in_millis() / 1000.0
    now = time.monotonic()
    api.deadline = now + max(remaining - KINESIS_RESERVE_SECONDS, 0.0)
    api.schema_errors.clear()
    # a constant Input on the rule, or a test invocation, has no "time": it is still a tick
    return produce_random_beers(
        **wiring,
        log=logger,
        deadline=now + remaining - TICK_END_SECONDS,
        scheduled_at=event.get("time"),
    )
