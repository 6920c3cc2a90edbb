"""The one exception type for user mistakes: the CLI prints its message on one line, no traceback."""


class OffdiffError(Exception):
    """A clear, user-facing error (bad input, missing data, corrupt file). Nothing is lost when raised."""
