"""The base of errors a user can act on: their message says what went wrong and what to do.

The command line prints them as one clean line instead of a traceback."""


class ActionableError(Exception):
    """An error whose message tells the user what to do next."""
