"""CloudFormation models for the resource types the template uses that moto's CloudFormation
skips (Firehose delivery streams, Glue databases and tables, Athena workgroups, S3 bucket
policies, CloudWatch log streams, saved Logs Insights queries and alarms, SNS subscriptions)
or only half applies (stream mode and encryption of a Kinesis stream; lifecycle rules,
versioning, public access block and ownership controls of a bucket).

moto builds its map of resource types from the direct subclasses of `CloudFormationModel`,
so defining the classes below and calling `register()` inside the moto server process,
before the first stack is created, is all it takes. Every model creates its resource
through moto's own backend with the properties converted to the shapes of the service API
(the shapes boto3 sends), so describe/get/list calls return the full configuration, and
deletes the resource again when the stack is deleted.
"""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Callable
from functools import cache
from typing import Any

import botocore.session
from botocore import xform_name
from botocore.model import Shape
from moto.athena.models import athena_backends
from moto.cloudformation import parsing
from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
from moto.cloudwatch.models import cloudwatch_backends
from moto.core.common_models import CloudFormationModel
from moto.firehose.models import firehose_backends
from moto.glue.models import glue_backends
from moto.kinesis.models import Stream, kinesis_backends
from moto.logs.models import logs_backends
from moto.s3.models import FakeBucket, s3_backends
from moto.sns.models import sns_backends
from moto.utilities.utils import get_partition

# ----------------------------------------------------------------------------- API shapes


@cache
def _input_shape(service: str, operation: str) -> Shape:
    model = botocore.session.get_session().get_service_model(service)
    return model.operation_model(operation).input_shape


def _coerce(value: Any, shape: Shape) -> Any:
    """`value` in the types `shape` declares. CloudFormation hands over numbers and booleans
    from parameters as strings ("64", "true"); the service APIs take them typed. Members
    the API does not know (CloudFormation-only properties) are left out."""
    if value is None:
        return None
    kind = shape.type_name
    if kind == "structure":
        return {
            name: _coerce(item, shape.members[name])
            for name, item in value.items()
            if name in shape.members and item is not None
        }
    if kind == "list":
        return [_coerce(item, shape.member) for item in value]
    if kind == "map":
        return {str(key): _coerce(item, shape.value) for key, item in value.items()}
    if kind in ("integer", "long"):
        return int(value)
    if kind in ("double", "float"):
        return float(value)
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if kind == "string" and not isinstance(value, str):
        # as CloudFormation passes them: JSON for objects, true/false for booleans
        return json.dumps(value) if isinstance(value, dict | bool) else str(value)
    return value


def api_params(service: str, operation: str, properties: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation properties as the parameters of `service`'s `operation`."""
    return _coerce(properties, _input_shape(service, operation))


def _call(method: Callable[..., Any], params: dict[str, Any], **extra: Any) -> Any:
    """Call a moto backend method whose arguments are the snake_case API parameters.

    Arguments the request does not carry are passed as None, as moto's own request
    handlers do."""
    by_arg = {xform_name(name): value for name, value in params.items()}
    by_arg.update(extra)
    names = inspect.signature(method).parameters
    return method(**{name: by_arg.get(name) for name in names})


def _ignore_missing(delete: Callable[[], Any]) -> None:
    """Deletes are idempotent, as in CloudFormation: a resource already gone is deleted."""
    try:
        delete()
    except Exception as error:  # moto raises a different class per service
        described = f"{type(error).__name__} {getattr(error, 'code', '')} {error}"
        if not any(word in described for word in ("NotFound", "NoSuch", "not found")):
            raise


class _Model:
    """Mixin for the models below, which subclass CloudFormationModel directly."""

    ATTRIBUTES: tuple[str, ...] = ()

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in cls.ATTRIBUTES

    def is_created(self) -> bool:
        return True  # created synchronously by the backend


# ----------------------------------------------------------------------------- Firehose


class DeliveryStream(_Model, CloudFormationModel):
    ATTRIBUTES = ("Arn",)

    def __init__(self, name: str, arn: str) -> None:
        self.physical_resource_id = name
        self.arn = arn

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::KinesisFirehose::DeliveryStream"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "DeliveryStreamName"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> DeliveryStream:
        properties = {**cloudformation_json["Properties"], "DeliveryStreamName": resource_name}
        params = api_params("firehose", "CreateDeliveryStream", properties)
        backend = firehose_backends[account_id][region_name]
        arn = _call(backend.create_delivery_stream, params, region=region_name)
        return cls(resource_name, arn)

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name == "Arn":
            return self.arn
        raise UnformattedGetAttTemplateException()

    def delete(self, account_id: str, region_name: str) -> None:
        backend = firehose_backends[account_id][region_name]
        _ignore_missing(lambda: backend.delete_delivery_stream(self.physical_resource_id))


# ----------------------------------------------------------------------------- Glue


class GlueDatabase(_Model, CloudFormationModel):
    def __init__(self, name: str) -> None:
        self.physical_resource_id = name

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Glue::Database"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> GlueDatabase:
        properties = cloudformation_json["Properties"]
        database_input = dict(properties.get("DatabaseInput") or {})
        # Glue keeps names in lower case; a generated name must follow
        name = properties.get("DatabaseName") or database_input.get("Name") or resource_name.lower()
        database_input["Name"] = name
        params = api_params("glue", "CreateDatabase", {"DatabaseInput": database_input})
        glue_backends[account_id][region_name].create_database(name, params["DatabaseInput"])
        return cls(name)

    def delete(self, account_id: str, region_name: str) -> None:
        backend = glue_backends[account_id][region_name]
        _ignore_missing(lambda: backend.delete_database(self.physical_resource_id))


class GlueTable(_Model, CloudFormationModel):
    def __init__(self, database_name: str, name: str) -> None:
        self.database_name = database_name
        self.physical_resource_id = name

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Glue::Table"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> GlueTable:
        properties = cloudformation_json["Properties"]
        table_input = dict(properties["TableInput"])
        name = table_input.get("Name") or resource_name.lower()
        table_input["Name"] = name
        params = api_params(
            "glue",
            "CreateTable",
            {
                "DatabaseName": properties["DatabaseName"],
                "TableInput": table_input,
                "OpenTableFormatInput": properties.get("OpenTableFormatInput"),
            },
        )
        glue_backends[account_id][region_name].create_table(
            params["DatabaseName"],
            name,
            params["TableInput"],
            params.get("OpenTableFormatInput"),
        )
        return cls(params["DatabaseName"], name)

    def delete(self, account_id: str, region_name: str) -> None:
        backend = glue_backends[account_id][region_name]
        _ignore_missing(lambda: backend.delete_table(self.database_name, self.physical_resource_id))


# ----------------------------------------------------------------------------- Athena


class AthenaWorkGroup(_Model, CloudFormationModel):
    ATTRIBUTES = ("CreationTime",)

    def __init__(self, name: str, creation_time: str) -> None:
        self.physical_resource_id = name
        self.creation_time = creation_time

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Athena::WorkGroup"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> AthenaWorkGroup:
        properties = cloudformation_json["Properties"]
        params = api_params(
            "athena",
            "CreateWorkGroup",
            {
                "Name": resource_name,
                "Configuration": properties.get("WorkGroupConfiguration") or {},
                "Description": properties.get("Description"),
                "Tags": properties.get("Tags"),
            },
        )
        backend = athena_backends[account_id][region_name]
        backend.create_work_group(
            name=resource_name,
            configuration=params["Configuration"],
            description=params.get("Description", ""),
            tags=params.get("Tags", []),
        )
        work_group = backend.work_groups.get(resource_name)  # get_work_group() gives a dict
        if properties.get("State") == "DISABLED" and work_group is not None:
            work_group.state = "DISABLED"
        created = (backend.get_work_group(resource_name) or {}).get("CreationTime")
        return cls(resource_name, str(created or ""))

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name == "CreationTime":
            return self.creation_time
        raise UnformattedGetAttTemplateException()

    def delete(self, account_id: str, region_name: str) -> None:
        athena_backends[account_id][region_name].delete_work_group(self.physical_resource_id)


# ----------------------------------------------------------------------------- S3


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the shape moto's S3 backend keeps (the parsed
    PutBucketLifecycleConfiguration XML)."""
    out: dict[str, Any] = {"ID": rule.get("Id"), "Status": rule["Status"]}
    selector: dict[str, Any] = {"Prefix": rule["Prefix"]} if "Prefix" in rule else {}
    tags = list(rule.get("TagFilters") or [])
    if len(selector) + len(tags) > 1:  # S3 takes more than one condition only under And
        selector = {"And": {**selector, "Tag": tags}}
    elif tags:
        selector = {"Tag": tags[0]}
    out["Filter"] = selector or {"Prefix": ""}
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": str(rule["ExpirationInDays"])}
    elif "ExpirationDate" in rule:
        out["Expiration"] = {"Date": rule["ExpirationDate"]}
    if "NoncurrentVersionExpirationInDays" in rule:
        days = str(rule["NoncurrentVersionExpirationInDays"])
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": days}
    if "AbortIncompleteMultipartUpload" in rule:
        days = str(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    transitions = list(rule.get("Transitions") or [])
    if "Transition" in rule:
        transitions.append(rule["Transition"])
    if transitions:
        out["Transition"] = [
            {"StorageClass": t["StorageClass"], "Days": str(t["TransitionInDays"])}
            if "TransitionInDays" in t
            else {"StorageClass": t["StorageClass"], "Date": t["TransitionDate"]}
            for t in transitions
        ]
    return out


class Bucket(CloudFormationModel):
    """moto's bucket, plus the properties moto's own model leaves out."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::S3::Bucket"

    @staticmethod
    def cloudformation_name_type() -> str:
        return FakeBucket.cloudformation_name_type()

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return FakeBucket.has_cfn_attr(attr)

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> FakeBucket:
        bucket = FakeBucket.create_from_cloudformation_json(
            resource_name, cloudformation_json, account_id, region_name, **kwargs
        )
        backend = s3_backends[account_id][get_partition(region_name)]
        properties = cloudformation_json.get("Properties", {})
        if "PublicAccessBlockConfiguration" in properties:
            backend.put_public_access_block(
                resource_name, properties["PublicAccessBlockConfiguration"]
            )
        rules = (properties.get("LifecycleConfiguration") or {}).get("Rules")
        if rules:
            backend.put_bucket_lifecycle(resource_name, [_lifecycle_rule(r) for r in rules])
        versioning = (properties.get("VersioningConfiguration") or {}).get("Status")
        if versioning:
            backend.put_bucket_versioning(resource_name, versioning)
        ownership = (properties.get("OwnershipControls") or {}).get("Rules")
        if ownership:
            backend.put_bucket_ownership_controls(resource_name, ownership[0]["ObjectOwnership"])
        return bucket

    @classmethod
    def delete_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        FakeBucket.delete_from_cloudformation_json(
            resource_name, cloudformation_json, account_id, region_name
        )


class BucketPolicy(_Model, CloudFormationModel):
    def __init__(self, physical_resource_id: str, bucket_name: str) -> None:
        self.physical_resource_id = physical_resource_id
        self.bucket_name = bucket_name

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::S3::BucketPolicy"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> BucketPolicy:
        properties = cloudformation_json["Properties"]
        document = properties["PolicyDocument"]
        if not isinstance(document, str):
            document = json.dumps(document)
        backend = s3_backends[account_id][get_partition(region_name)]
        backend.put_bucket_policy(properties["Bucket"], document.encode())
        return cls(resource_name, properties["Bucket"])

    def delete(self, account_id: str, region_name: str) -> None:
        backend = s3_backends[account_id][get_partition(region_name)]
        _ignore_missing(lambda: backend.delete_bucket_policy(self.bucket_name))


# ----------------------------------------------------------------------------- Kinesis


class KinesisStream(CloudFormationModel):
    """moto's stream, created with its stream mode and encryption."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Kinesis::Stream"

    @staticmethod
    def cloudformation_name_type() -> str:
        return Stream.cloudformation_name_type()

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return Stream.has_cfn_attr(attr)

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Stream:
        properties = cloudformation_json.get("Properties", {})
        mode = properties.get("StreamModeDetails") or {"StreamMode": "PROVISIONED"}
        retention = properties.get("RetentionPeriodHours")
        backend = kinesis_backends[account_id][region_name]
        stream = backend.create_stream(
            resource_name,
            int(properties.get("ShardCount", 1)),
            stream_mode=mode,
            retention_period_hours=int(retention) if retention is not None else None,
        )
        tags = {tag["Key"]: tag["Value"] for tag in properties.get("Tags", [])}
        if tags:
            backend.add_tags_to_stream(stream_arn=None, stream_name=resource_name, tags=tags)
        encryption = properties.get("StreamEncryption")
        if encryption:
            backend.start_stream_encryption(
                stream_arn=None,  # type: ignore[arg-type]  # moto finds it by name, as for tags
                stream_name=resource_name,
                encryption_type=encryption["EncryptionType"],
                key_id=encryption["KeyId"],
            )
        return stream

    @classmethod
    def delete_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        Stream.delete_from_cloudformation_json(
            resource_name, cloudformation_json, account_id, region_name
        )


# ----------------------------------------------------------------------------- Logs


class LogStream(_Model, CloudFormationModel):
    def __init__(self, log_group_name: str, name: str) -> None:
        self.log_group_name = log_group_name
        self.physical_resource_id = name

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Logs::LogStream"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "LogStreamName"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> LogStream:
        log_group_name = cloudformation_json["Properties"]["LogGroupName"]
        logs_backends[account_id][region_name].create_log_stream(log_group_name, resource_name)
        return cls(log_group_name, resource_name)

    def delete(self, account_id: str, region_name: str) -> None:
        backend = logs_backends[account_id][region_name]
        _ignore_missing(
            lambda: backend.delete_log_stream(self.log_group_name, self.physical_resource_id)
        )


class QueryDefinition(_Model, CloudFormationModel):
    """A saved Logs Insights query. moto's Logs has no query definitions (no
    PutQueryDefinition): the emulator accepts them and keeps them with the stack, which
    lists each (describe_stack_resources) under an id as AWS gives one; `aws logs
    describe-query-definitions` does not know them, and the emulator runs no query."""

    ATTRIBUTES = ("QueryDefinitionId",)

    def __init__(self, name: str, query_string: str, log_group_names: list[str]) -> None:
        self.physical_resource_id = str(uuid.uuid4())  # Ref gives the id, as on AWS
        self.name = name
        self.query_string = query_string
        self.log_group_names = log_group_names

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Logs::QueryDefinition"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""  # Name is required, and need not be unique: it is no physical id

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> QueryDefinition:
        properties = cloudformation_json["Properties"]
        log_group_names = [str(name) for name in properties.get("LogGroupNames") or []]
        return cls(str(properties["Name"]), str(properties["QueryString"]), log_group_names)

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name == "QueryDefinitionId":
            return self.physical_resource_id
        raise UnformattedGetAttTemplateException()

    def delete(self, account_id: str, region_name: str) -> None:
        """Kept by the stack only: nothing to delete elsewhere."""


# ----------------------------------------------------------------------------- CloudWatch


class MetricAlarm(_Model, CloudFormationModel):
    """An alarm on one metric. The emulator keeps it (describe_alarms shows it) but
    publishes no metrics and evaluates no alarm: it stays OK and never notifies."""

    ATTRIBUTES = ("Arn",)

    def __init__(self, name: str, arn: str) -> None:
        self.physical_resource_id = name
        self.arn = arn

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "AlarmName"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> MetricAlarm:
        properties = {**cloudformation_json["Properties"], "AlarmName": resource_name}
        if properties.get("Metrics"):
            raise ValueError(f"{resource_name}: metric math alarms have no local model")
        params = api_params("cloudwatch", "PutMetricAlarm", properties)
        backend = cloudwatch_backends[account_id][region_name]
        alarm = _call(
            backend.put_metric_alarm,
            params,
            name=resource_name,
            description=params.get("AlarmDescription"),
            alarm_actions=params.get("AlarmActions", []),
            ok_actions=params.get("OKActions", []),
            insufficient_data_actions=params.get("InsufficientDataActions", []),
            dimensions=params.get("Dimensions", []),
            tags=params.get("Tags", []),
        )
        return cls(resource_name, alarm.alarm_arn)

    def get_cfn_attribute(self, attribute_name: str) -> str:
        if attribute_name == "Arn":
            return self.arn
        raise UnformattedGetAttTemplateException()

    def delete(self, account_id: str, region_name: str) -> None:
        cloudwatch_backends[account_id][region_name].delete_alarms([self.physical_resource_id])


# ----------------------------------------------------------------------------- SNS


class SnsSubscription(_Model, CloudFormationModel):
    """A subscription to a topic; the emulator delivers nothing to an email endpoint."""

    def __init__(self, arn: str) -> None:
        self.physical_resource_id = arn

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SNS::Subscription"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SnsSubscription:
        properties = cloudformation_json["Properties"]
        backend = sns_backends[account_id][region_name]
        subscription = backend.subscribe(
            properties["TopicArn"], properties["Endpoint"], properties["Protocol"]
        )
        return cls(subscription.arn)

    def delete(self, account_id: str, region_name: str) -> None:
        sns_backends[account_id][region_name].unsubscribe(self.physical_resource_id)


MODELS: tuple[type[CloudFormationModel], ...] = (
    DeliveryStream,
    GlueDatabase,
    GlueTable,
    AthenaWorkGroup,
    Bucket,
    BucketPolicy,
    KinesisStream,
    LogStream,
    QueryDefinition,
    MetricAlarm,
    SnsSubscription,
)


def register() -> dict[str, type[CloudFormationModel]]:
    """Make moto's CloudFormation use the models above; returns the model map in force.

    moto caches its model map on first use, so the caches are cleared here."""
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()
    model_map = parsing.get_model_map()
    for model in MODELS:
        registered = model_map.get(model.cloudformation_type())
        if registered is not model:
            raise RuntimeError(
                f"moto maps {model.cloudformation_type()} to {registered}, not {model}: "
                "its CloudFormation model registry has changed"
            )
    return model_map
