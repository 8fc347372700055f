"""A delivery stream's configuration, read back from the service (never copied into code)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MIB = 1024 * 1024

# Firehose's documented defaults when a value is not configured.
DEFAULT_BUFFER_MIB = 5
DEFAULT_BUFFER_SECONDS = 300
DEFAULT_PROCESSOR_BUFFER_MIB = 1.0
DEFAULT_PROCESSOR_SECONDS = 60
DEFAULT_PROCESSOR_RETRIES = 3
EXTENSIONS = {"UNCOMPRESSED": "", "GZIP": ".gz"}


def instant_text(value: Any) -> str:
    """A creation time as text that reads the same in every time zone: botocore gives it in
    the machine's zone, and a checkpoint must still match from a shell with another TZ."""
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else str(value)


class UnsupportedConfiguration(ValueError):
    """A delivery stream uses a feature the local runtime does not implement."""


@dataclass(frozen=True)
class LambdaProcessor:
    function_arn: str
    buffer_bytes: int
    interval_seconds: int
    retries: int


@dataclass(frozen=True)
class FormatConversion:
    database: str
    table: str
    table_version: str
    catalog_id: str | None
    region: str | None
    role_arn: str | None
    compression: str  # SNAPPY | GZIP | UNCOMPRESSED (Parquet codec)
    timestamp_formats: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeliveryStreamConfig:
    name: str
    arn: str
    version_id: str
    created: str
    region: str
    source_stream_arn: str
    bucket: str
    prefix: str
    error_prefix: str
    buffer_bytes: int
    interval_seconds: int
    compression: str
    file_extension: str
    append_delimiter: bool
    processor: LambdaProcessor | None
    conversion: FormatConversion | None

    @property
    def source_stream_name(self) -> str:
        return self.source_stream_arn.rsplit("/", 1)[-1]

    @property
    def extension(self) -> str:
        """FileExtension when configured, else what the compression implies."""
        if self.file_extension:
            return self.file_extension
        return "" if self.conversion else EXTENSIONS.get(self.compression, "")

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> DeliveryStreamConfig:
        """Parse ``describe_delivery_stream()["DeliveryStreamDescription"]``."""
        name = description["DeliveryStreamName"]
        source = (description.get("Source") or {}).get("KinesisStreamSourceDescription")
        if not source:
            raise UnsupportedConfiguration(f"{name}: not a Kinesis-stream-sourced delivery stream")
        destinations = description.get("Destinations") or []
        s3 = next(
            (
                d.get("ExtendedS3DestinationDescription") or d.get("S3DestinationDescription")
                for d in destinations
                if d.get("ExtendedS3DestinationDescription") or d.get("S3DestinationDescription")
            ),
            None,
        )
        if s3 is None:
            raise UnsupportedConfiguration(f"{name}: only S3 destinations are supported locally")
        compression = s3.get("CompressionFormat") or "UNCOMPRESSED"
        conversion = _conversion(s3.get("DataFormatConversionConfiguration"))
        if compression not in EXTENSIONS:
            raise UnsupportedConfiguration(f"{name}: CompressionFormat {compression}")
        if conversion and compression != "UNCOMPRESSED":
            raise UnsupportedConfiguration(
                f"{name}: record format conversion needs CompressionFormat UNCOMPRESSED"
            )
        if s3.get("DynamicPartitioningConfiguration", {}).get("Enabled"):
            raise UnsupportedConfiguration(f"{name}: dynamic partitioning")
        if (s3.get("CustomTimeZone") or "UTC") != "UTC":  # prefixes here are evaluated in UTC
            raise UnsupportedConfiguration(f"{name}: CustomTimeZone {s3['CustomTimeZone']}")
        if s3.get("S3BackupMode") == "Enabled":
            raise UnsupportedConfiguration(f"{name}: S3BackupMode Enabled (source record backup)")
        hints = s3.get("BufferingHints") or {}
        processor, append_delimiter = _processors(name, s3.get("ProcessingConfiguration"))
        arn = description["DeliveryStreamARN"]
        return cls(
            name=name,
            arn=arn,
            version_id=str(description.get("VersionId") or "1"),
            created=instant_text(description.get("CreateTimestamp")),
            region=arn.split(":")[3],
            source_stream_arn=source["KinesisStreamARN"],
            bucket=s3["BucketARN"].split(":::", 1)[-1],
            prefix=s3.get("Prefix") or "",
            error_prefix=s3.get("ErrorOutputPrefix") or "",
            buffer_bytes=int(float(hints.get("SizeInMBs") or DEFAULT_BUFFER_MIB) * MIB),
            interval_seconds=int(
                DEFAULT_BUFFER_SECONDS
                if hints.get("IntervalInSeconds") is None
                else hints["IntervalInSeconds"]
            ),
            compression=compression,
            file_extension=s3.get("FileExtension") or "",
            append_delimiter=append_delimiter,
            processor=processor,
            conversion=conversion,
        )


def _parameters(processor: dict[str, Any]) -> dict[str, str]:
    return {p["ParameterName"]: p["ParameterValue"] for p in processor.get("Parameters") or []}


def _processors(
    name: str, configuration: dict[str, Any] | None
) -> tuple[LambdaProcessor | None, bool]:
    if not configuration or not configuration.get("Enabled"):
        return None, False
    lambda_processor = None
    append_delimiter = False
    for processor in configuration.get("Processors") or []:
        kind, params = processor.get("Type"), _parameters(processor)
        if kind == "Lambda":
            lambda_processor = LambdaProcessor(
                function_arn=params["LambdaArn"],
                buffer_bytes=int(
                    float(params.get("BufferSizeInMBs", DEFAULT_PROCESSOR_BUFFER_MIB)) * MIB
                ),
                interval_seconds=int(
                    params.get("BufferIntervalInSeconds", DEFAULT_PROCESSOR_SECONDS)
                ),
                retries=int(params.get("NumberOfRetries", DEFAULT_PROCESSOR_RETRIES)),
            )
        elif kind == "AppendDelimiterToRecord":
            append_delimiter = True
        else:
            raise UnsupportedConfiguration(f"{name}: processor type {kind}")
    return lambda_processor, append_delimiter


def _conversion(configuration: dict[str, Any] | None) -> FormatConversion | None:
    if not configuration or configuration.get("Enabled") is False:
        return None
    schema = configuration.get("SchemaConfiguration") or {}
    deserializer = (configuration.get("InputFormatConfiguration") or {}).get("Deserializer") or {}
    serializer = (configuration.get("OutputFormatConfiguration") or {}).get("Serializer") or {}
    if "ParquetSerDe" not in serializer:
        raise UnsupportedConfiguration(f"output serializer {sorted(serializer)} (Parquet only)")
    if "HiveJsonSerDe" not in deserializer:
        raise UnsupportedConfiguration(
            f"input deserializer {sorted(deserializer)} (Hive JSON only)"
        )
    hive = deserializer["HiveJsonSerDe"] or {}
    parquet = serializer["ParquetSerDe"] or {}
    return FormatConversion(
        database=schema["DatabaseName"],
        table=schema["TableName"],
        table_version=str(schema.get("VersionId") or "LATEST"),
        catalog_id=schema.get("CatalogId"),
        region=schema.get("Region"),
        role_arn=schema.get("RoleARN"),
        compression=(parquet.get("Compression") or "SNAPPY").upper(),
        timestamp_formats=tuple(hive.get("TimestampFormats") or ()),
    )
