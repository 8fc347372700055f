"""What an AWS error means for the user, in one line: the service and operation that
failed, AWS's error code and message, and what to do. The command line prints it instead
of botocore's traceback."""

from __future__ import annotations

from typing import Any

# the codes AWS gives each kind of refusal (they differ between services)
_CREDENTIALS_REFUSED = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "IncompleteSignature",
        "AuthFailure",
    }
)
_NOT_PERMITTED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthorizationError",
        "Forbidden",
        "AllAccessDisabled",
    }
)
_THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "KMSThrottlingException",
        "SlowDown",
    }
)
_INVALID = frozenset(
    {
        "ValidationException",
        "ValidationError",
        "InvalidParameterValue",
        "InvalidParameterValueException",
        "InvalidParameterException",
        "InvalidArgumentException",
        "InvalidArgument",
        "InvalidRequestException",
        "InvalidInputException",
    }
)


# S3 operations whose permission (IAM action) has another name
_S3_PERMISSIONS = {
    "ListObjectsV2": "ListBucket",
    "ListObjects": "ListBucket",
    "HeadBucket": "ListBucket",
    "HeadObject": "GetObject",
    "DeleteObjects": "DeleteObject",
}


def _not_found(code: str) -> bool:
    return code.startswith("NoSuch") or code.endswith(("NotFound", "NotFoundException"))


def _client_of(error: BaseException) -> Any:
    """The botocore client whose call raised `error`, found in its traceback; or None."""
    from botocore.client import BaseClient

    found = None
    step = error.__traceback__
    while step is not None:
        candidate = step.tb_frame.f_locals.get("self")
        if isinstance(candidate, BaseClient):
            found = candidate
        step = step.tb_next
    return found


# Kinesis's answer to more writes than its shards take: waiting does not make it bigger
KINESIS_TOO_SMALL = (
    "The stream's shards are at their write limit: raise the stack's ShardCount parameter "
    "(or deploy it with StreamMode=ON_DEMAND), then run it again."
)


def throttling_hint(service: str, code: str) -> str:
    """What to do about AWS throttling `service` ("kinesis", "s3", …) with `code`, once
    botocore's retries have run out."""
    if service == "kinesis" and code == "ProvisionedThroughputExceededException":
        return KINESIS_TOO_SMALL
    if service == "s3" and code == "SlowDown":
        return (
            "S3 asks for fewer requests a second on these keys: wait a minute and run it "
            "again, with fewer jobs on the bucket at once."
        )
    return (
        "AWS kept throttling the calls after botocore's retries (another job may be "
        "using the same resource, or the account's quota is reached): wait a minute and "
        "run it again."
    )


def _what_to_do(code: str, status: int, action: str, region: str) -> str:
    if code in _CREDENTIALS_REFUSED:
        return (
            "The AWS credentials have expired or are not valid: renew them (`aws sso login`, "
            "or new keys with `aws configure`), or choose another profile with AWS_PROFILE, "
            "then run it again."
        )
    if code in _NOT_PERMITTED or status == 403:
        return (
            f"The AWS identity in use may not call {action}: `aws sts get-caller-identity` "
            "names it. Ask for that permission, or choose a profile that has it with "
            "AWS_PROFILE."
        )
    if code in _THROTTLED:
        return throttling_hint(action.partition(":")[0], code)
    if _not_found(code) or status == 404:
        return (
            f"It does not exist in {region}: check that the stack is deployed there (`brewops "
            "local up` locally, notebook 02 on AWS) and that AWS_DEFAULT_REGION (or the "
            "profile's region) is the stack's."
        )
    if code in _INVALID or status == 400:
        return (
            "AWS refused the request: check the values given to the command, and that the "
            "stack was deployed from this version of infra/template.yaml (redeploy it)."
        )
    if status >= 500:
        return "AWS failed to answer after botocore's retries: run it again in a minute."
    return "Run it again; if it fails the same way, the message says what AWS refused."


def aws_refusal(error: BaseException) -> str | None:
    """One line for an AWS ClientError that ended a command; None for any other error."""
    from botocore.exceptions import ClientError

    if not isinstance(error, ClientError):
        return None
    details = error.response.get("Error", {})
    code = str(details.get("Code") or "an error")
    message = str(details.get("Message") or "").rstrip(".")
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    client = _client_of(error)
    service, prefix, region = "AWS", "", "this region"
    if client is not None:
        model = client.meta.service_model
        service, prefix = f"AWS {model.service_id}", model.endpoint_prefix
        region = client.meta.region_name or region
    operation = error.operation_name
    if prefix == "s3":
        operation = _S3_PERMISSIONS.get(operation, operation)
    action = f"{prefix}:{operation}" if prefix else operation
    said = f"{service} {error.operation_name} failed with {code}"
    if message and message != code:
        said += f": {message}"
    return f"{said}. {_what_to_do(code, status, action, region)}"
