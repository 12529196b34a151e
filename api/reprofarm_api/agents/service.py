"""Agents' service functions that the router would otherwise hold: a batch of
results, each stored in a transaction of its own."""

from __future__ import annotations

from datetime import UTC, datetime

from reprofarm_db import agents, leases
from reprofarm_db.engine import transaction
from reprofarm_db.errors import DomainError
from reprofarm_protocol.jobs import RunReport, RunReports
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from reprofarm_api.agents.schemas import ResultOutcome
from reprofarm_api.errors import status_of


def record_results(
    sessions: sessionmaker[Session], *, agent_id: int, reports: RunReports
) -> tuple[list[ResultOutcome], bool]:
    """Store each result as ``POST /runs/{id}/result`` would, each committed on its
    own (one refused, or one that waits for its run's lock, never holds back or
    undoes another). Returns the outcomes in order, and whether a counted result
    belongs to a study (its step should go out now).

    A value the database refuses (422) or a run another request changed first (503)
    refuses that item alone, as the single route would; a database that is away ends
    the whole call: the results before it are stored, and sending them all again is
    safe (a repeated result changes nothing)."""
    outcomes: list[ResultOutcome] = []
    study = False
    for item in reports.results:
        try:
            with transaction(sessions) as session:
                run, counted = leases.record_result(
                    session,
                    agent=agents.get_or_raise(session, agent_id=agent_id),
                    run_id=item.run_id,
                    lease_token=item.lease_token,
                    report=RunReport(result=item.result),
                    now=datetime.now(UTC),
                )
                study = study or (counted and run.cell is not None)
                outcome = ResultOutcome(
                    run_id=run.id, http_status=200, status=run.status, counted=counted, message=None
                )
        except DomainError as exc:
            outcome = _refused(item.run_id, status_of(exc), str(exc))
        except (StaleDataError, IntegrityError):
            # Another request changed the run first (its result, the sweep): this item was
            # rolled back whole; sending it again is safe, and says what happened.
            outcome = _refused(item.run_id, 503, "the run changed meanwhile; nothing stored; retry")
        except DataError:
            outcome = _refused(item.run_id, 422, "a value is out of the range the farm stores")
        except StatementError as exc:
            if isinstance(exc, DBAPIError):
                raise  # the database is away (or a bug): the whole call fails
            # a value the driver could not even bind (an integer past 64 bits)
            outcome = _refused(item.run_id, 422, "a value is out of the range the farm stores")
        outcomes.append(outcome)
    return outcomes, study


def _refused(run_id: int, http_status: int, message: str) -> ResultOutcome:
    return ResultOutcome(
        run_id=run_id, http_status=http_status, status=None, counted=False, message=message
    )
