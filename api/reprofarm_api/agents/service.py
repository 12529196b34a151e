"""Agents' service functions that the router would otherwise hold: a batch of
results, each stored in a savepoint of one transaction, committed before the reply."""

from __future__ import annotations

from datetime import UTC, datetime

from reprofarm_db import agents, leases
from reprofarm_db.engine import transaction
from reprofarm_db.errors import DomainError
from reprofarm_db.models import Agent
from reprofarm_protocol.jobs import ReportedResult, RunReport, RunReports
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from reprofarm_api.agents.schemas import ResultOutcome
from reprofarm_api.errors import status_of


def record_results(
    sessions: sessionmaker[Session], *, agent_id: int, reports: RunReports
) -> tuple[list[ResultOutcome], bool]:
    """Store each result as ``POST /runs/{id}/result`` would, each in a savepoint of one
    transaction that commits before the reply: an item refused is undone alone, and
    the batch costs one commit, not one per result (ingest: docs/operations.md).
    Returns the outcomes in order, and whether a counted result belongs to a study
    (its step should go out now).

    A value the database refuses (422) or a run another request changed first (503)
    refuses that item alone, as the single route would. A database that is away, or a
    commit that fails (a deadlock with the sweep, say), fails the whole call and
    stores none of it: sending them all again is safe (a repeated result changes
    nothing). The batch locks its runs first, in id order, and holds them until that
    commit: they are all this agent's."""
    outcomes: list[ResultOutcome] = []
    study = False
    with transaction(sessions) as session:
        # Every run first, in id order, then the agent's row (a result releases it).
        leases.lock_runs_of(
            session, agent_id=agent_id, run_ids=[item.run_id for item in reports.results]
        )
        agent = agents.get_or_raise(session, agent_id=agent_id)
        for item in reports.results:
            outcome, counted_in_study = _record_one(session, agent=agent, item=item)
            outcomes.append(outcome)
            study = study or counted_in_study
    return outcomes, study


def _record_one(
    session: Session, *, agent: Agent, item: ReportedResult
) -> tuple[ResultOutcome, bool]:
    try:
        with session.begin_nested():
            run, counted = leases.record_result(
                session,
                agent=agent,
                run_id=item.run_id,
                lease_token=item.lease_token,
                report=RunReport(result=item.result),
                now=datetime.now(UTC),
            )
            outcome = ResultOutcome(
                run_id=run.id, http_status=200, status=run.status, counted=counted, message=None
            )
            return outcome, counted and run.cell is not None
    except DomainError as exc:
        return _refused(item.run_id, status_of(exc), str(exc)), False
    except (StaleDataError, IntegrityError):
        # Another request changed the run first (its result, the sweep): this item was
        # rolled back whole; sending it again is safe, and says what happened.
        return _refused(item.run_id, 503, "the run changed meanwhile; nothing stored; retry"), False
    except DataError:
        return _refused(item.run_id, 422, "a value is out of the range the farm stores"), False
    except StatementError as exc:
        if isinstance(exc, DBAPIError):
            raise  # the database is away (or a bug): the whole call fails
        # a value the driver could not even bind (an integer past 64 bits)
        return _refused(item.run_id, 422, "a value is out of the range the farm stores"), False


def _refused(run_id: int, http_status: int, message: str) -> ResultOutcome:
    return ResultOutcome(
        run_id=run_id, http_status=http_status, status=None, counted=False, message=message
    )
