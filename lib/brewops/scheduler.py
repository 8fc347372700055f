"""The schedule: invoke the producer function the way its EventBridge rule does.

The rule (its ARN, schedule and targets) is read back from EventBridge. Each tick sends
every Lambda target the rule's event: the target's constant ``Input`` when it has one, else
the ``Scheduled Event`` EventBridge generates. On the local target the handler runs in this
process, with the function's environment; on AWS, ``in_process=False`` calls Lambda.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from numbers import Integral
from pathlib import Path
from typing import Any

from botocore.config import Config

from brewops import paths
from brewops.firehose_runtime.functions import LocalFunction

logger = logging.getLogger(__name__)

# A synchronous Invoke waits for the function to finish: as long as any function can run
# (900 s), not botocore's default 60 s, the producer's own Timeout. And it is never sent
# again: botocore retries a timed-out read or a 5xx, which would run the tick twice.
INVOKE_CONFIG = Config(read_timeout=900 + 10, retries={"total_max_attempts": 1})
# An open-ended run returns its most recent ticks only: left up for days at the rule's rate,
# keeping them all would grow without end (about 2 KB a tick)
RECENT_TICKS = 100

RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
# An open-ended run ticks this often when the rule's schedule is no rate(...): a cron(...)
# expression's times are not computed locally
CRON_INTERVAL_SECONDS = 60.0


def checked_ticks(ticks: Any) -> int:
    """`ticks` as a number of ticks, or a ValueError saying what it must be: a float or a
    string would run a tick more than asked, or fail after the backfill."""
    if isinstance(ticks, bool) or not isinstance(ticks, Integral) or ticks < 0:
        raise ValueError(f"ticks must be a whole number of ticks, 0 or more, not {ticks!r}")
    return int(ticks)


def rate_seconds(expression: str) -> float | None:
    """Seconds between ticks of a ``rate(...)`` expression; None for ``cron(...)``."""
    match = RATE.match(expression.strip())
    if not match:
        return None
    return int(match.group(1)) * UNIT_SECONDS[match.group(2).rstrip("s")]


def scheduled_event(rule_arn: str, moment: datetime | None = None) -> dict[str, Any]:
    """The event EventBridge sends a target of a scheduled rule."""
    _, _, _, region, account, _ = rule_arn.split(":", 5)
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


@dataclass
class Tick:
    number: int
    function: str
    event: dict[str, Any]
    result: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _RemoteFunction:
    """A deployed function, called through the Lambda API (AWS target)."""

    def __init__(self, arn: str, lambda_client: Any) -> None:
        self.name = arn
        self.lambda_client = lambda_client
        self.timeout = INVOKE_CONFIG.read_timeout  # the longest an Invoke is waited for

    def invoke(self, event: Any) -> tuple[Any, str | None]:
        response = self.lambda_client.invoke(FunctionName=self.name, Payload=json.dumps(event))
        payload = json.loads(response["Payload"].read() or b"null")
        kind = response.get("FunctionError")
        if kind:
            if not isinstance(payload, dict):
                return payload, f"{kind}: {payload!r:.200}"
            # a timeout's payload has an errorMessage but no errorType
            return payload, f"{payload.get('errorType') or kind}: {payload.get('errorMessage')}"
        return payload, None


class Scheduler:
    """Ticks of one schedule rule (or, without a rule, of one function)."""

    def __init__(
        self,
        rule_name: str | None = None,
        *,
        function: str | None = None,
        session: Any = None,
        environment: dict[str, str] | None = None,
        in_process: bool = True,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        from brewops.target import aws_session

        session = session or aws_session()
        lambda_client = session.client("lambda")
        self.rule_arn: str | None = None
        self.schedule: str | None = None
        # a DISABLED rule (ScheduleState) fires nothing; invoking by hand still runs the function
        self.enabled = True
        targets: list[tuple[str, dict[str, Any] | None]] = []
        if rule_name:
            events = session.client("events")
            rule = events.describe_rule(Name=rule_name)
            self.rule_arn, self.schedule = rule["Arn"], rule.get("ScheduleExpression")
            self.enabled = rule.get("State", "ENABLED") != "DISABLED"
            listed = events.list_targets_by_rule(Rule=rule_name)["Targets"]
            for target in listed:
                if ":lambda:" not in target["Arn"]:
                    continue
                if target.get("InputPath") or target.get("InputTransformer"):
                    raise ValueError(f"{rule_name}: only constant or default input is supported")
                constant = json.loads(target["Input"]) if target.get("Input") else None
                targets.append((target["Arn"], constant))
        if not targets:
            if not function:
                raise ValueError(f"rule {rule_name!r} has no Lambda target and no function given")
            targets.append((function, None))
        logs = Path(log_dir) if log_dir else paths.local_log_dir()
        self.targets = [
            (
                LocalFunction.lookup(arn, lambda_client, environment=environment, log_dir=logs)
                if in_process
                else _RemoteFunction(arn, session.client("lambda", config=INVOKE_CONFIG)),
                constant,
            )
            for arn, constant in targets
        ]
        self.ticks = 0

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, str], **kwargs: Any) -> Scheduler:
        """The scheduler of the stack's schedule rule and producer function, named by its
        Outputs; `kwargs` as for `Scheduler`."""
        return cls(
            outputs.get("ScheduleRuleName"), function=outputs.get("ProducerFunctionName"), **kwargs
        )

    @property
    def tick_timeout(self) -> float:
        """Seconds a tick lasts at most: its functions' Timeouts, one after the other (a call
        still running at its Timeout is given up, as Lambda stops it)."""
        return float(sum(function.timeout for function, _ in self.targets))

    @property
    def interval_seconds(self) -> float | None:
        return rate_seconds(self.schedule) if self.schedule else None

    def event(self) -> dict[str, Any]:
        rule_arn = self.rule_arn or "arn:aws:events:local:000000000000:rule/manual"
        return scheduled_event(rule_arn)

    def tick(self) -> list[Tick]:
        """One firing of the rule: every target invoked once. A target that cannot be
        invoked fails its tick, with the reason; the other targets and the schedule go on."""
        self.ticks += 1
        ticks = []
        for function, constant in self.targets:
            event = constant if constant is not None else self.event()
            try:
                if isinstance(function, LocalFunction):
                    invocation = function.invoke(event)
                    result, error = invocation.result, invocation.error
                else:
                    result, error = function.invoke(event)
            except Exception as failure:  # the Lambda API refused or never answered
                result, error = None, f"{type(failure).__name__}: {failure}"
            ticks.append(Tick(self.ticks, function.name, event, result, error))
            if error:
                logger.warning("tick %d: %s failed: %s", self.ticks, function.name, error)
        return ticks

    def run(
        self,
        ticks: int | None = None,
        *,
        interval: float | None = None,
        stop: threading.Event | None = None,
        on_tick: Callable[[list[Tick]], Any] | None = None,
    ) -> list[Tick]:
        """`ticks` firings (or until `stop`/Ctrl-C), `interval` seconds apart.

        Without `interval`, a given number of ticks runs back to back, and an open-ended
        run follows the rule's rate. Returns every tick of a given number; an open-ended
        run, its RECENT_TICKS last ones (`on_tick` sees each).
        """
        if ticks is not None:
            ticks = checked_ticks(ticks)
        if interval is None:
            interval = (
                0.0 if ticks is not None else (self.interval_seconds or CRON_INTERVAL_SECONDS)
            )
        stop = stop or threading.Event()
        done: deque[Tick] = deque(maxlen=RECENT_TICKS if ticks is None else None)
        fired_count = 0
        try:
            while not stop.is_set() and (ticks is None or fired_count < ticks):
                started = time.monotonic()
                fired = self.tick()
                fired_count += 1
                done.extend(fired)
                if on_tick:
                    on_tick(fired)
                if ticks is not None and fired_count >= ticks:
                    break
                stop.wait(max(0.0, interval - (time.monotonic() - started)))
        except KeyboardInterrupt:
            pass
        return list(done)
