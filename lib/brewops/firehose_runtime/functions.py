"""Lambda functions run in this process, from the same files the template deploys.

The emulator stores the functions but cannot run them (no Docker). A `LocalFunction` reads
the function's configuration back from the Lambda API, imports the module its ``Handler``
names, applies its ``Environment`` while the handler runs, passes a Lambda-like context,
and keeps what the handler logs in a log file, in memory and, given a CloudWatch Logs
client, in the function's log group, where Lambda puts it on AWS.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brewops.batching import within_limits
from brewops.environ import applied_environment

logger = logging.getLogger(__name__)

# PutLogEvents takes up to 10,000 events and 1 MB per call, each event counted as its
# UTF-8 message plus 26 bytes; an event's message is at most 256 KB, beyond which Lambda
# cuts a line as well
LOG_EVENTS_PER_CALL = 1_000
LOG_BYTES_PER_CALL = 1_048_576
LOG_EVENT_OVERHEAD = 26
LOG_MESSAGE_BYTES = 262_144 - LOG_EVENT_OVERHEAD
# A function's environment and its captured output are the whole process's: os.environ and
# sys.stdout. Two functions called from two threads (the scheduler's producer beside the
# Firehose transform) would read each other's variables and log lines, so one runs at a time.
# Other threads are not held back: what they print while a function runs lands in its log.
_ONE_AT_A_TIME = threading.RLock()


class HandlerLoadError(Exception):
    """The handler cannot be loaded; the message is Lambda's error type and message."""


@dataclass
class LambdaContext:
    """The attributes and method of the context object Lambda passes to a Python handler."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline_ms: int
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


@dataclass
class Invocation:
    """What one call returned: the handler's result, or the error Lambda would report."""

    request_id: str
    result: Any = None
    error: str | None = None  # "ExceptionType: message", as in Lambda's FunctionError
    error_trace: str | None = None
    log_records: list[logging.LogRecord] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.error is not None


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.output = ""  # everything the handler printed, once it has returned

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _console_handlers() -> list[logging.StreamHandler]:
    consoles = {id(s) for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)}
    loggers = [logging.getLogger()] + [
        item
        for item in logging.Logger.manager.loggerDict.values()
        if isinstance(item, logging.Logger)
    ]
    return [
        handler
        for item in loggers
        for handler in item.handlers
        if isinstance(handler, logging.StreamHandler) and id(handler.stream) in consoles
    ]


@contextlib.contextmanager
def captured_output(log_file: Path | None) -> Iterator[_Collector]:
    """Route the handler's prints and console log lines to `log_file` (its "CloudWatch")."""
    collector = _Collector()
    buffer = io.StringIO()
    root = logging.getLogger()
    root.addHandler(collector)
    swapped = [(handler, handler.setStream(buffer)) for handler in _console_handlers()]
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield collector
    finally:
        for handler, stream in swapped:
            handler.setStream(stream)
        root.removeHandler(collector)
        collector.output = buffer.getvalue()
        if log_file is not None and buffer.tell():
            log_file.parent.mkdir(parents=True, exist_ok=True)
            with log_file.open("a", encoding="utf-8") as out:
                out.write(buffer.getvalue())


def split_function_arn(function: str) -> tuple[str, str | None]:
    """(name, qualifier) of a function name or ARN; ``$LATEST`` counts as no qualifier."""
    parts = function.split(":")
    if parts[0] == "arn" and len(parts) >= 7:
        name, qualifier = parts[6], parts[7] if len(parts) > 7 else None
    else:
        name, _, qualifier = function.partition(":")
    return name, None if qualifier in (None, "", "$LATEST") else qualifier


class LocalFunction:
    """One Lambda function, invoked in-process."""

    def __init__(
        self,
        configuration: dict[str, Any],
        *,
        environment: dict[str, str] | None = None,
        log_dir: Path | None = None,
        logs_client: Any = None,
    ) -> None:
        self.configuration = configuration
        self.logs_client = logs_client
        self.log_stream: str | None = None
        self.name = configuration["FunctionName"]
        self.arn = configuration["FunctionArn"]
        self.handler_path = configuration["Handler"]
        self.log_file = Path(log_dir) / f"{self.name}.log" if log_dir else None
        region = self.arn.split(":")[3] if self.arn.startswith("arn:") else ""
        self.environment = {
            "AWS_LAMBDA_FUNCTION_NAME": self.name,
            "AWS_LAMBDA_FUNCTION_VERSION": configuration.get("Version", "$LATEST"),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(configuration.get("MemorySize", 128)),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.name}",
            **({"AWS_REGION": region} if region else {}),
            **((configuration.get("Environment") or {}).get("Variables") or {}),
            **(environment or {}),
        }
        self._handler: Callable[[Any, Any], Any] | None = None

    @classmethod
    def lookup(cls, function: str, lambda_client: Any, **kwargs: Any) -> LocalFunction:
        """Read the configuration of `function` (name or ARN) back from the Lambda API."""
        name, qualifier = split_function_arn(function)
        request = {"FunctionName": name, **({"Qualifier": qualifier} if qualifier else {})}
        return cls(lambda_client.get_function_configuration(**request), **kwargs)

    @property
    def handler(self) -> Callable[[Any, Any], Any]:
        """The handler function, imported with the function's environment applied. Raises
        HandlerLoadError, in Lambda's words, when it cannot be imported or found."""
        if self._handler is None:
            module_name, _, attribute = self.handler_path.rpartition(".")
            if not module_name:
                raise HandlerLoadError(
                    f"Runtime.MalformedHandlerName: Bad handler '{self.handler_path}': "
                    "not module.function"
                )
            try:
                with applied_environment(self.environment):
                    module = importlib.import_module(module_name)
            except Exception as error:  # whatever the module's own code raised
                raise HandlerLoadError(
                    f"Runtime.ImportModuleError: Unable to import module '{module_name}': {error}"
                ) from error
            try:
                self._handler = getattr(module, attribute)
            except AttributeError as error:
                raise HandlerLoadError(
                    f"Runtime.HandlerNotFound: Handler '{attribute}' missing on module "
                    f"'{module_name}'"
                ) from error
        return self._handler

    @property
    def timeout(self) -> int:
        """Seconds a call may take: the function's Timeout, Lambda's default 3 without one."""
        return int(self.configuration.get("Timeout", 3))

    def context(self, request_id: str) -> LambdaContext:
        timeout = self.timeout
        return LambdaContext(
            function_name=self.name,
            function_version=self.configuration.get("Version", "$LATEST"),
            invoked_function_arn=self.arn,
            memory_limit_in_mb=int(self.configuration.get("MemorySize", 128)),
            aws_request_id=request_id,
            log_group_name=f"/aws/lambda/{self.name}",
            log_stream_name=f"local/{request_id}",
            deadline_ms=int(time.time() * 1000) + timeout * 1000,
        )

    def invoke(self, event: Any) -> Invocation:
        """Call the handler once; an exception becomes a failed Invocation, as in Lambda.
        So does a handler that cannot be loaded, with the error type Lambda gives it, and
        a call that ran past the function's Timeout. In-process, such a call cannot be
        stopped midway: it is failed when it returns, and its answer thrown away, which is
        what the caller of a timed-out Lambda sees."""
        with _ONE_AT_A_TIME:
            return self._invoke(event)

    def _invoke(self, event: Any) -> Invocation:
        invocation = Invocation(request_id=str(uuid.uuid4()))
        handler = None
        try:
            # imported outside the capture: loggers made at import keep the real console
            handler = self.handler
        except HandlerLoadError as error:
            invocation.error = str(error)
            invocation.error_trace = traceback.format_exc()
        with applied_environment(self.environment), captured_output(self.log_file) as logs:
            if handler is not None:
                started = time.monotonic()
                try:
                    invocation.result = handler(event, self.context(invocation.request_id))
                except Exception as error:  # Lambda reports any exception as a function error
                    invocation.error = f"{type(error).__name__}: {error}"
                    invocation.error_trace = traceback.format_exc()
                if time.monotonic() - started > self.timeout:
                    invocation.result, invocation.error_trace = None, None
                    said = f"Task timed out after {self.timeout:.2f} seconds"  # Lambda's words
                    invocation.error = (
                        f"Sandbox.Timedout: RequestId: {invocation.request_id} Error: {said}"
                    )
                    print(f"{invocation.request_id} {said}")  # Lambda logs it for the function
        invocation.log_records = logs.records
        if invocation.failed:
            logger.warning("%s raised %s", self.name, invocation.error)
        if self.logs_client is not None:
            self._ship(logs.output)
        return invocation

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.name}"

    def _ship(self, output: str) -> None:
        """Put the lines the handler printed into the function's log group, one stream per
        instance as per Lambda execution environment. Never fails the invocation."""
        lines = [line for line in output.splitlines() if line.strip()]
        if not lines:
            return
        try:
            if self.log_stream is None:
                stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
                with contextlib.suppress(
                    self.logs_client.exceptions.ResourceAlreadyExistsException
                ):
                    self.logs_client.create_log_group(logGroupName=self.log_group)
                self.logs_client.create_log_stream(
                    logGroupName=self.log_group, logStreamName=stream
                )
                self.log_stream = stream  # only once it exists: a failure is tried again
            now = int(time.time() * 1000)
            for batch in _log_batches(lines):
                self.logs_client.put_log_events(
                    logGroupName=self.log_group,
                    logStreamName=self.log_stream,
                    logEvents=[{"timestamp": now, "message": line} for line in batch],
                )
        except Exception as error:  # the log is a copy; the invocation's result stands
            logger.warning("%s: log lines not put into %s: %s", self.name, self.log_group, error)


def _log_batches(lines: list[str]) -> Iterator[list[str]]:
    """The lines as PutLogEvents calls within its limits, a line over 256 KB cut short."""
    # a cut inside a character drops its first bytes; a line within the limit is unchanged
    messages = [line.encode()[:LOG_MESSAGE_BYTES].decode(errors="ignore") for line in lines]
    return within_limits(
        messages,
        lambda message: len(message.encode()) + LOG_EVENT_OVERHEAD,
        most_items=LOG_EVENTS_PER_CALL,
        most_bytes=LOG_BYTES_PER_CALL,
    )
