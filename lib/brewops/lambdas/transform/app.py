"""Firehose calls this with a batch of Kinesis records; it answers one result per record."""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import KinesisFirehoseEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from brewops.lambdas.console import stdout_handler
from brewops.transform import firehose_transform

logger = Logger(service="brewops-transform", logger_handler=stdout_handler())


@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=KinesisFirehoseEvent)
def handler(event: KinesisFirehoseEvent, context: LambdaContext) -> dict:
    return {"records": firehose_transform(event.records, log=logger)}
