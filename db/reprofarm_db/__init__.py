"""reprofarm's database: the truth about every job, run, agent and build.

The business rules that both the api and the worker apply (expanding a job,
leasing a run, sweeping leases, recording results, statistics) are plain
functions here that take a Session, so both call the same code.

Exceptions (each becomes a 4xx at the api's edge)::

    DomainError
    ├── NotFound        no such job, run, agent, build or artifact
    ├── Conflict        the request contradicts the current state (409)
    └── Invalid         the request is well-formed but impossible (422)
"""

from reprofarm_db.errors import Conflict, DomainError, Invalid, NotFound

__all__ = ["Conflict", "DomainError", "Invalid", "NotFound"]
