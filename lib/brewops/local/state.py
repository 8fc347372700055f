"""What `brewops local up` started, recorded in `paths.local_state_dir()/state.json` where
notebooks, tests and later commands find it."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from brewops import paths
from brewops.errors import ActionableError
from brewops.files import write_atomically
from brewops.jsontext import parse_json

REGION = "us-east-1"
DEFAULT_STACK_NAME = "brewops-dev"
# moto accepts any credentials; these are the ones its documentation uses
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def emulator_environment(endpoint_url: str, region: str = REGION) -> dict[str, str]:
    """The variables that route boto3 and awswrangler (and child processes) to the emulator."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }


# CloudFormation's rule for stack names, without its upper case: the Glue database is the
# stack name with "_" for "-", and Glue folds it to lower case, so Brewops-Dev and
# brewops-dev would share one database. At most 50 characters: the longest name the stack
# gives, its tick rule's `NAME-producer-tick`, may hold 64.
STACK_NAME_LIMIT = 50
STACK_NAME = re.compile(rf"[a-z][a-z0-9-]{{0,{STACK_NAME_LIMIT - 1}}}")


class StackNameError(ValueError, ActionableError):
    """A stack name the template cannot give a database and names of its own."""


def check_stack_name(name: str, given_as: str = "") -> str:
    """`name`, if the template can deploy a stack of that name; else StackNameError, naming
    what gave it first (`given_as`: "BREWOPS_STACK_NAME=", say)."""
    if not STACK_NAME.fullmatch(name):
        raise StackNameError(
            f"{given_as}{name!r} is not a stack name brewops deploys: use lower-case "
            f"letters, digits and hyphens, starting with a letter, {STACK_NAME_LIMIT} at most "
            "(its Glue database is the name with _ for -, and Glue keeps names in lower case "
            "only; the names the stack gives add up to 14 characters to it)"
        )
    return name


def chosen_stack_name() -> str | None:
    """The stack BREWOPS_STACK_NAME names, or None when it is not set."""
    name = os.environ.get("BREWOPS_STACK_NAME") or None
    return None if name is None else check_stack_name(name, "BREWOPS_STACK_NAME=")


def default_stack_name() -> str:
    return chosen_stack_name() or DEFAULT_STACK_NAME


def state_file() -> Path:
    return paths.local_state_dir() / "state.json"


class UnreadableStateError(RuntimeError, ActionableError):
    """The state file is damaged: `brewops local down` stops what it can find and clears it."""


@dataclass
class Service:
    """A server process started in its own session, so it outlives the command that
    started it. `create_time` tells it apart from a later process given the same pid, and
    `since_boot` after a step of the wall clock has moved the create_time psutil gives."""

    pid: int
    port: int
    url: str
    log: str
    create_time: float
    # seconds from the machine's boot to its start; None in a state written before it was kept
    since_boot: float | None = None

    def __post_init__(self) -> None:
        # a state file edited or damaged by hand must fail here, not later as a TypeError
        kinds: dict[str, type | tuple[type, ...]] = {
            "pid": int,
            "port": int,
            "url": str,
            "log": str,
            "create_time": (int, float),
            "since_boot": (int, float, type(None)),
        }
        for name, kind in kinds.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise TypeError(f"service {name} is {value!r}")


@dataclass
class RunProcess:
    """The `brewops run` in charge of the local target, which stops it when done: the one
    that started it, or took it over. Told apart from a later process given its pid as a
    Service is."""

    pid: int
    create_time: float
    since_boot: float | None = None

    def __post_init__(self) -> None:
        kinds: dict[str, type | tuple[type, ...]] = {
            "pid": int,
            "create_time": (int, float),
            "since_boot": (int, float, type(None)),
        }
        for name, kind in kinds.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise TypeError(f"run {name} is {value!r}")


@dataclass
class LocalState:
    endpoint_url: str
    region: str
    stack_name: str
    started_at: str
    services: dict[str, Service]
    punkapi_url: str | None = None
    # the package's code the Punk API server was started from (runtime.code_digest); None
    # in a state written before it was recorded
    punkapi_code_digest: str | None = None
    catalog: str | None = None
    deployed: bool = False
    outputs: dict[str, str] = field(default_factory=dict)
    template: str | None = None  # the SAM template the stack was deployed from
    template_digest: str | None = None  # what that template said then (deploy.template_digest)
    # the template parameters `up` was given (`--parameter-overrides`); the others took
    # their Default, and PunkApiUrl and PunkApiVersion the local Punk API server's
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    # the `brewops run` that stops the target when done; None when `brewops local up`
    # started it (it runs until `brewops local down`)
    run: RunProcess | None = None
    # True when `up` found everything already running (not stored)
    already_running: bool = False
    # the run in charge of the running target found by `up`, which ended without stopping
    # it (killed): `up` took the target over from it (not stored)
    left_by: RunProcess | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("already_running")
        data.pop("left_by")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalState:
        services = {name: Service(**s) for name, s in data.get("services", {}).items()}
        run = data.get("run")
        return cls(
            **{**data, "services": services, "run": None if run is None else RunProcess(**run)}
        )

    def save(self) -> Path:
        path = state_file()
        write_atomically(path, json.dumps(self.to_dict(), indent=2) + "\n")  # never half a file
        return path

    @classmethod
    def load(cls) -> LocalState | None:
        path = state_file()
        try:
            return cls.from_dict(parse_json(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, AttributeError) as error:
            raise UnreadableStateError(
                f"The local target's state {path} is damaged ({error}). Run `brewops local "
                "down` to stop the servers it records and clear it, then `brewops local up`."
            ) from error

    @staticmethod
    def recorded_services() -> list[Service]:
        """The services a damaged state file still names (those that parse)."""
        try:
            data = parse_json(state_file().read_text(encoding="utf-8"))
            services = data.get("services", {}) if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return []
        found = []
        for recorded in services.values() if isinstance(services, dict) else []:
            try:
                found.append(Service(**recorded))
            except TypeError:
                continue
        return found

    @staticmethod
    def remove() -> None:
        state_file().unlink(missing_ok=True)

    def session(self) -> Any:
        """A boto3 session for the emulator (pass `endpoint_url` to its clients, or use
        `client`)."""
        from brewops.target import aws_session

        return aws_session(region_name=self.region, **CREDENTIALS)

    def client(self, service_name: str) -> Any:
        return self.session().client(service_name, endpoint_url=self.endpoint_url)
