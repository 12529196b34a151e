"""Celery queue and task names: the api sends tasks by name, so it never imports the worker."""

QUEUE_CONTROLLER = "controller"
QUEUE_BUILD = "build"
QUEUE_ANALYSIS = "analysis"

TASK_PLAN_JOB = "reprofarm.plan_job"
TASK_BUILD = "reprofarm.build"
TASK_SWEEP_LEASES = "reprofarm.sweep_leases"
TASK_SWEEP_UPLOADS = "reprofarm.sweep_uploads"
TASK_ANALYZE_ARTIFACT = "reprofarm.analyze_artifact"
TASK_REANALYZE = "reprofarm.reanalyze"
TASK_STUDY_STEP = "reprofarm.study_step"
TASK_STUDY_WEBHOOK = "reprofarm.study_webhook"

TASK_QUEUES = {
    TASK_PLAN_JOB: QUEUE_CONTROLLER,
    TASK_SWEEP_LEASES: QUEUE_CONTROLLER,
    TASK_SWEEP_UPLOADS: QUEUE_CONTROLLER,
    TASK_STUDY_STEP: QUEUE_CONTROLLER,
    TASK_STUDY_WEBHOOK: QUEUE_CONTROLLER,
    TASK_BUILD: QUEUE_BUILD,
    TASK_ANALYZE_ARTIFACT: QUEUE_ANALYSIS,
    TASK_REANALYZE: QUEUE_ANALYSIS,
}
