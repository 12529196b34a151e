"""The Celery application, built by a factory from settings.

Queues: ``controller`` (plan jobs, sweep leases; cancelling is immediate, in
the api), ``build`` (hangtest builds), ``analysis`` (every completed dump
upload, and re-analysis after a rules change).
Beat runs the lease sweep, and the sweep of abandoned uploads every
``UPLOAD_SWEEP_S`` (or a quarter of ``REPROFARM_ABANDONED_UPLOAD_S`` if that is
shorter).
"""

from __future__ import annotations

from celery import Celery
from reprofarm_db.engine import make_engine, make_sessionmaker
from reprofarm_db.settings import ControllerSettings
from reprofarm_protocol.queues import TASK_QUEUES, TASK_SWEEP_LEASES, TASK_SWEEP_UPLOADS

from reprofarm_worker import tasks

UPLOAD_SWEEP_S = 600.0
"""How often beat looks for abandoned uploads: one indexed query of the few
unfinished ones, so an abandoned upload lives at most this much past its limit."""


def create_celery(settings: ControllerSettings | None = None) -> Celery:
    settings = settings or ControllerSettings()
    if settings.celery_broker.startswith("filesystem"):
        settings.broker_dir.mkdir(parents=True, exist_ok=True)
        (settings.broker_dir.parent / (settings.broker_dir.name + "-processed")).mkdir(
            parents=True, exist_ok=True
        )
    app = Celery("reprofarm")
    app.conf.update(settings.celery_conf())
    app.conf.task_routes = {name: {"queue": queue} for name, queue in TASK_QUEUES.items()}
    app.conf.beat_schedule = {
        "sweep-leases": {"task": TASK_SWEEP_LEASES, "schedule": settings.sweep_interval_s},
        "sweep-uploads": {
            "task": TASK_SWEEP_UPLOADS,
            "schedule": min(UPLOAD_SWEEP_S, settings.abandoned_upload_s / 4),
        },
    }
    sessions = make_sessionmaker(make_engine(settings.db_url))
    tasks.register(app, settings, sessions)
    return app
