"""A job kind whose body does nothing, for exercising the queue itself at volume: the worker runs
it through the same `runners` mapping as real kinds (`run_stored_job(store, job_id, root)`)."""

from datagen.jobs.store import JobState, JobStore

KIND = "noop"


def run_stored_job(store: JobStore, job_id: str, registry_root: str) -> JobState:
    """Record the claimed job succeeded."""
    return store.finish(job_id, JobState.SUCCEEDED).state
