"""Domain errors; the message names the field (or object) and the reason.

DomainError
├── NotFound    404
├── Conflict    409  (the state forbids it: another machine's name, a finished run)
├── Invalid     422  (names the field)
├── TooLarge    413  (names the field and the limit)
└── Forbidden   403  (not the caller's to do)
    └── Unproven     (a lease token missing or wrong)
"""


class DomainError(Exception):
    """Base of the errors the business rules raise on purpose."""


class NotFound(DomainError):  # noqa: N818 - reads as the HTTP status it becomes
    pass


class Conflict(DomainError):  # noqa: N818
    pass


class Invalid(DomainError):  # noqa: N818
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class TooLarge(DomainError):  # noqa: N818
    """Over a configured limit; the message names the limit's setting."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Forbidden(DomainError):  # noqa: N818
    """The caller is who it says, but may not do this (another agent's run, say)."""


class Unproven(Forbidden):
    """A secret the request had to carry (a lease token) was missing or wrong."""
