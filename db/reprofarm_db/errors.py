"""Domain errors; the message names the field (or object) and the reason."""


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
