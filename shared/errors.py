"""Domain errors; the API maps each to one status code in one place."""


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


class Unavailable(Exception):
    """Redis (or another backing service) cannot be reached; the message says which and why."""
