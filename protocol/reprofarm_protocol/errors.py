"""Errors raised when input does not follow the wire contract."""


class ProtocolError(ValueError):
    """A line or document that does not follow the contract; the message says why."""
