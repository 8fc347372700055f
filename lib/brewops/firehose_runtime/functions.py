"""Lambda functions run in this process, from the same files the template deploys.

The emulator stores the functions but cannot run them (no Docker). A `LocalFunction` reads
the function's configuration back from the Lambda API, imports the module its ``Handler``
names, applies its ``Environment`` while the handler runs, passes a Lambda-like context,
and keeps what the handler logs in a log file, in memory and, given a CloudWatch Logs
client, in the function's log group, where Lambda puts it on AWS. The handler runs in a
thread of its own, waited for until the function's ``Timeout``, as Lambda stops a call.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import itertools
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
from brewops.environ import function_environment
from brewops.files import exclusive, naming

logger = logging.getLogger(__name__)

# PutLogEvents takes up to 10,000 events (calls here stay well under that, at 1,000) and
# 1 MB per call, each event counted as its UTF-8 message plus 26 bytes; an event's message
# is at most 256 KB, beyond which Lambda cuts a line as well
LOG_EVENTS_PER_CALL = 1_000
LOG_BYTES_PER_CALL = 1_048_576
LOG_EVENT_OVERHEAD = 26
LOG_MESSAGE_BYTES = 262_144 - LOG_EVENT_OVERHEAD
# A function's log file moves to NAME.log.1 (that one to .2) before it would pass this size:
# a `stream run` left up for days keeps at most three files of it (a tick logs about 1 KB)
LOG_FILE_BYTES = 5_000_000
LOG_FILES_KEPT = 2
# A function's environment and its captured output are the whole process's: os.environ and
# sys.stdout. Two functions called from two threads (the scheduler's producer beside the
# Firehose transform) would read each other's variables and log lines, so one runs at a time.
# Other threads are not held back: what they print while a function runs lands in its log.
# A call given up at its deadline does not hold it: the next call runs beside it.
_ONE_AT_A_TIME = threading.RLock()
# The call a handler thread runs, for what it prints and logs once it has been given up
_RUNNING = threading.local()


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
    deadline_ms: int  # on time.monotonic(): a jump of the wall clock moves no deadline
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.monotonic() * 1000))


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


def _given_up_here() -> bool:
    """Whether this thread runs a call that was given up at its deadline."""
    call = getattr(_RUNNING, "call", None)
    return call is not None and call.given_up


class _Output(io.StringIO):
    """What is printed during a call, but for what a call given up on still prints."""

    def write(self, text: str) -> int:
        return len(text) if _given_up_here() else super().write(text)


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.output = ""  # everything the handler printed, once it has returned

    def emit(self, record: logging.LogRecord) -> None:
        if not _given_up_here():
            self.records.append(record)


def _console_handlers() -> list[logging.StreamHandler]:
    consoles = {id(s) for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)}
    # copied in one step: another thread may make a logger meanwhile (importing a module),
    # and a table changed under a loop over it raises RuntimeError
    known = list(logging.Logger.manager.loggerDict.values())
    loggers = [logging.getLogger()] + [item for item in known if isinstance(item, logging.Logger)]
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
    buffer = _Output()
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
            try:
                append_to_log(log_file, buffer.getvalue())
            # the log is a copy, as CloudWatch's is: a full disk leaves the call's result as
            # it was (a producer's beer sent, and counted as sent)
            except OSError as error:
                logger.warning("log lines not written to %s: %s", log_file, error)


def append_to_log(log_file: Path, text: str) -> None:
    """Append `text` to `log_file`, first moving the file to `.1` (`.1` to `.2`, and so on
    up to LOG_FILES_KEPT) when `text` would take it past LOG_FILE_BYTES."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    # several processes log one function (`stream run` beside `stream tick`): one moves it
    with exclusive(log_file.with_name(f".{log_file.name}.lock")):
        size = log_file.stat().st_size if log_file.exists() else 0
        if size and size + len(text.encode()) > LOG_FILE_BYTES:
            numbered = (
                log_file.with_name(f"{log_file.name}.{n}") for n in range(1, 1 + LOG_FILES_KEPT)
            )
            for newer, older in reversed(list(itertools.pairwise([log_file, *numbered]))):
                if newer.exists():  # the oldest is replaced
                    newer.replace(older)
        with naming(log_file), log_file.open("a", encoding="utf-8") as out:
            out.write(text)


class _Call:
    """One call of a handler, in a daemon thread the caller waits for until the deadline.
    A thread cannot be stopped: a call given up on runs on until it returns. What it
    returns or raises is dropped, and so is what it prints or logs into a later capture."""

    def __init__(self, handler: Callable[[Any, Any], Any], event: Any, context: LambdaContext):
        self.handler, self.event, self.context = handler, event, context
        self.result: Any = None
        self.error: str | None = None
        self.error_trace: str | None = None
        self.escaped: BaseException | None = None  # SystemExit and the like, raised again
        self.returned = threading.Event()
        self.given_up = False
        self.thread = threading.Thread(
            target=self._run, name=f"{context.function_name} {context.aws_request_id}", daemon=True
        )

    def _run(self) -> None:
        _RUNNING.call = self
        try:
            self.result = self.handler(self.event, self.context)
        except Exception as error:  # Lambda reports any exception as a function error
            self.error = f"{type(error).__name__}: {error}"
            self.error_trace = traceback.format_exc()
        except BaseException as error:  # not Lambda's to report: the caller's, as before
            self.escaped = error
        finally:
            self.returned.set()

    def wait(self) -> bool:
        """Start the call and wait for it until its context has no time left (or the
        caller is interrupted); False, and the call given up, if it has not returned."""
        self.thread.start()
        try:
            while (remaining := self.context.get_remaining_time_in_millis()) > 0:
                if self.returned.wait(remaining / 1000):
                    break
        finally:
            self.given_up = not self.returned.is_set()
        return not self.given_up


@contextlib.contextmanager
def _process_console() -> Iterator[None]:
    """The process's own stdout and stderr for the block, as Lambda imports a handler with.
    A logger made at import keeps the stream it is given (Powertools' does): a stand-in
    for the console at that time (click's CliRunner, a redirect) would keep the lines of
    every later call out of the function's log, once the stand-in is no console."""
    with (
        contextlib.redirect_stdout(sys.__stdout__ or sys.stdout),
        contextlib.redirect_stderr(sys.__stderr__ or sys.stderr),
    ):
        yield


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
                with function_environment(self.environment), _process_console():
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
            deadline_ms=int(time.monotonic() * 1000) + timeout * 1000,
        )

    def invoke(self, event: Any) -> Invocation:
        """Call the handler once; an exception becomes a failed Invocation, as in Lambda.
        So does a handler that cannot be loaded, with the error type Lambda gives it, and
        a call still running at the function's Timeout, failed then, as Lambda does.

        In-process, a thread cannot be stopped: the call given up on runs on in the
        background until it returns. What it returns is thrown away, which is what the
        caller of a timed-out Lambda sees, and so is what it prints or logs while a later
        call is captured; printed between calls, it reaches the console as any thread's
        output does. Its environment is no longer its own: the variables the process had
        are back, and a later call sets its own. Nor is its module: the next call shares
        its globals (a client cached at import), where Lambda resets the execution
        environment of a call that timed out and runs Init again. A fresh import here would
        have to unpick the handler's loggers from `logging` for Powertools to make them
        again, for a case only a timed-out call meets.

        The variables the process lacked stay set after the call, as
        `brewops.environ.function_environment` explains: deleting them would break other
        threads reading the environment at that moment."""
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
        with function_environment(self.environment), captured_output(self.log_file) as logs:
            if handler is not None:
                call = _Call(handler, event, self.context(invocation.request_id))
                if call.wait():
                    if call.escaped is not None:
                        raise call.escaped
                    invocation.result = call.result
                    invocation.error, invocation.error_trace = call.error, call.error_trace
                else:
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
                # Lambda dates the stream in UTC, not in this machine's time zone
                day = time.strftime("%Y/%m/%d", time.gmtime())
                stream = f"{day}/[$LATEST]{uuid.uuid4().hex}"
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
