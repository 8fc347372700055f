"""The base of errors a user can act on: their message says what went wrong and what to do.

The command line prints them as one clean line instead of a traceback."""


class ActionableError(Exception):
    """An error whose message tells the user what to do next."""


def refused_deletions(refused: list[dict], of: int, where: str) -> str:
    """What a DeleteObjects answer's `Errors` mean for the user: S3 answers 200 and lists
    the keys it kept (no permission, an object lock) instead of raising."""
    named = "; ".join(
        f"{e.get('Key')}: {e.get('Code')} {e.get('Message', '')}".strip() for e in refused[:5]
    )
    return (
        f"{len(refused)} of {of} objects {where} were not deleted ({named}). Check that your "
        "AWS credentials may s3:DeleteObject there and that no object lock or legal hold "
        "keeps them."
    )
