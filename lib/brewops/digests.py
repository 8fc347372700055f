"""The digest that ties a logged reason to a record in the error prefix.

The transform logs it for each record it fails; reconcile and redrive compute it again from
the error records' rawData. It lives apart from the transform, which knows what a beer is,
so the modules that read the error prefix work whatever the records hold.
"""

from __future__ import annotations

import hashlib

# 64 bits of the digest: short to read, and two refused records sharing one is unlikely
# below billions of records
PAYLOAD_DIGEST_HEX_DIGITS = 16


def payload_sha256(data: bytes) -> str:
    """The first 16 hex digits of the SHA-256 of a record's bytes. The error prefix keeps
    neither Firehose's recordId nor the sequence number, only the bytes (rawData): this
    digest of them ties a logged reason to an error record whose bytes name no beer
    (malformed JSON, no id, not UTF-8)."""
    return hashlib.sha256(data).hexdigest()[:PAYLOAD_DIGEST_HEX_DIGITS]
