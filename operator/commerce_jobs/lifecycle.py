"""What to do next for a CommerceJob, decided from what the operator sees: a pure function, no API calls.

The states follow JMSJobQueueBundle: Pending (waiting for its time or its queue), Running (an attempt runs, or a
retry waits for its backoff: as in JMS, a job stays Running through its retries), and the final states Finished,
Failed, Terminated (its max runtime was exceeded), Incomplete (its Job vanished under it) and Canceled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from commerce_jobs.api_names import ADOPTED_JOB_ANNOTATION as ADOPTED_JOB_ANNOTATION
from commerce_jobs.api_names import CANCELED as CANCELED
from commerce_jobs.api_names import FAILED as FAILED
from commerce_jobs.api_names import FINAL_STATES as FINAL_STATES
from commerce_jobs.api_names import FINISHED as FINISHED
from commerce_jobs.api_names import INCOMPLETE as INCOMPLETE
from commerce_jobs.api_names import PENDING as PENDING
from commerce_jobs.api_names import RUNNING as RUNNING
from commerce_jobs.api_names import TERMINATED as TERMINATED

# The states (api_names.py), named here too: the decisions are written in them.
from commerce_jobs.fields import spec_of, status_of

MAX_RETRY_BACKOFF = timedelta(hours=1)
# The reason of a pod that the kubelet stopped at its activeDeadlineSeconds (maxRuntimeSeconds), and of a Job whose own
# activeDeadlineSeconds (the safety net after it, see jobbuild.py) passed.
DEADLINE_EXCEEDED = "DeadlineExceeded"
MAX_MESSAGE = 4096  # characters of a condition's message


@dataclass(frozen=True)
class JobView:
    """The part of a batch/v1 Job (one attempt of a CommerceJob) that decisions need."""

    name: str
    attempt: int
    complete: bool = False
    failed: bool = False
    # The Job's Failed condition reason: BackoffLimitExceeded when its pod failed (also when the kubelet stopped the
    # pod at its deadline: that reason is the pod's, see AttemptResult), DeadlineExceeded when the Job's safety net
    # passed.
    failure_reason: str = ""
    finished_at: datetime | None = None
    deleting: bool = False
    # Why the operator stopped this attempt because its container could not start (a view made by the operator,
    # not read from a Job). Whatever its pod reports afterwards (exit code 137, ContainerStatusUnknown, as the
    # kubelet writes for a stuck container that is deleted) is an effect of that stop, not the job's result.
    stopped: str = ""

    @property
    def finished(self) -> bool:
        return self.complete or self.failed

    @property
    def stopped_by_operator(self) -> bool:
        """Ended by the operator (a container that could not start) or for it (the Job's activeDeadlineSeconds;
        a pod stopped at its own deadline says so in AttemptResult): the exit code, if any, is the kill's, not the
        command's. A PHP process stopped by SIGTERM may even exit 0."""
        return bool(self.stopped) or self.failure_reason == DEADLINE_EXCEEDED


@dataclass(frozen=True)
class PodProblem:
    """Why the current attempt's container cannot start (ImagePullBackOff, CreateContainerConfigError ...)."""

    reason: str
    message: str  # "container console: <reason>: <the kubelet's message>"
    since: datetime
    # What to change, for a refusal that cannot go away by itself (the image runs as root under runAsNonRoot, an
    # invalid image name ...): the attempt then fails at once. None while waiting may still help (an image pull).
    remedy: str | None = None


@dataclass(frozen=True)
class PodOutcome:
    """How a Job's pod ended, as its watch reported it: spares a LIST of pods when the attempt is collected."""

    pod_name: str
    created: str  # creationTimestamp: the newest pod of a Job is the one that counts
    exit_code: int | None
    pod_reason: str = ""
    ended: bool = False  # the pod's phase is Succeeded or Failed: what it reports will not change any more
    deadline_exceeded: bool = False  # the kubelet stopped it at its activeDeadlineSeconds (maxRuntimeSeconds)


@dataclass(frozen=True)
class AttemptResult:
    """What a finished attempt left behind: read from its pod by the controller."""

    exit_code: int | None
    output: str
    output_truncated: bool
    pod_reason: str = ""  # why the pod ended without an exit code, e.g. Evicted
    deadline_exceeded: bool = False  # the kubelet stopped the pod at its activeDeadlineSeconds (maxRuntimeSeconds)


def max_runtime_exceeded(attempt: JobView, result: AttemptResult) -> bool:
    """Whether the attempt was stopped at its maxRuntimeSeconds: by the kubelet at the pod's deadline (the Job then
    fails with BackoffLimitExceeded, only its pod tells why), or by the Job's safety-net deadline."""
    return not attempt.stopped and (attempt.failure_reason == DEADLINE_EXCEEDED or result.deadline_exceeded)


def failure(spec: dict[str, Any], attempt: JobView, result: AttemptResult) -> str:
    """Why an attempt failed, in words. An attempt that the operator stopped keeps the operator's reason: the exit
    code that the kill leaves behind (137, or 0 from a PHP process that ends on SIGTERM) says nothing."""
    if attempt.stopped:
        return attempt.stopped
    if max_runtime_exceeded(attempt, result):
        return f"its max runtime of {spec.get('maxRuntimeSeconds')}s was exceeded"
    if result.exit_code is not None:
        return f"exit code {result.exit_code}"
    return result.pod_reason or attempt.failure_reason or "an unknown failure"


def exit_code(attempt: JobView, result: AttemptResult) -> int | None:
    """The exit code to record: the command's, never that of a kill (see JobView.stopped_by_operator)."""
    return None if attempt.stopped_by_operator or max_runtime_exceeded(attempt, result) else result.exit_code


@dataclass
class Decision:
    create_attempt: int | None = None  # create the batch Job of this attempt
    adopt: str | None = None  # attempt 1 is this existing Job (a CronJob started it)
    verify_attempt: int | None = None  # the attempt's Job is not in the cache: ask the apiserver whether it exists
    delete_jobs: list[str] = field(default_factory=list)
    finish: str | None = None  # the final state to record, once the attempt's result has been read
    collect: JobView | None = None  # the finished attempt whose exit code and output to read
    retry_at: datetime | None = None  # a failed attempt will be retried at this time
    status: dict[str, Any] | None = None  # a merge patch of the status
    requeue_after: float | None = None  # look again after this many seconds
    cancel_dependents: bool = False


def retry_backoff(spec: dict[str, Any], failed_attempts: int) -> timedelta:
    """The wait before the next attempt: retryBackoffSeconds, doubled after each failed attempt, capped."""
    base = int(spec.get("retryBackoffSeconds", 10))
    return min(timedelta(seconds=base * 2 ** max(failed_attempts - 1, 0)), MAX_RETRY_BACKOFF)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def format_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def bounded_message(text: str) -> str:
    """A condition's message, cut to MAX_MESSAGE: the apiserver's refusals quote the values they refused, 4 KiB each
    (the schema allows 32 KiB)."""
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def condition(
    status: str, reason: str, message: str, now: datetime, generation: int | None, kind: str = "Succeeded"
) -> dict[str, Any]:
    cond: dict[str, Any] = {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": bounded_message(message),
        "lastTransitionTime": format_time(now),
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def state_patch(
    cjob: dict[str, Any], state: str, cond_status: str, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    """The status of a new state (or reason), with its Succeeded condition (also for dependencies.py)."""
    generation = cjob.get("metadata", {}).get("generation")
    current = status_of(cjob)
    patch: dict[str, Any] = {"state": state, "reason": reason, "message": message}
    old = next((c for c in current.get("conditions") or [] if c.get("type") == "Succeeded"), None)
    cond = condition(cond_status, reason, message, now, generation)
    if old and old.get("status") == cond_status:
        cond["lastTransitionTime"] = old.get("lastTransitionTime", cond["lastTransitionTime"])
    patch["conditions"] = [cond]
    if generation is not None:
        patch["observedGeneration"] = generation
    return patch


def _unchanged(cjob: dict[str, Any], state: str, reason: str) -> bool:
    status = status_of(cjob)
    return bool(status.get("state") == state and status.get("reason") == reason)


def _pending(cjob: dict[str, Any], reason: str, message: str, now: datetime) -> dict[str, Any] | None:
    """The patch that marks a job Pending for this reason; None when it already is (no write for nothing)."""
    if _unchanged(cjob, PENDING, reason):
        return None
    return state_patch(cjob, PENDING, "Unknown", reason, message, now)


def duration(start: datetime | None, end: datetime) -> str:
    if start is None:
        return ""
    seconds = max(int((end - start).total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def decide(
    cjob: dict[str, Any],
    jobs: dict[int, JobView],
    now: datetime,
    admitted: bool,
    problem: PodProblem | None = None,
    start_timeout: timedelta = timedelta(minutes=5),
) -> Decision:
    """The next step for a CommerceJob.

    ``jobs`` holds its batch Jobs by attempt, as far as the cache knows them; ``admitted`` says whether its queue
    has room for it (only asked about for a job that has not started); ``problem`` is why the current attempt's
    container cannot start, if it cannot: after ``start_timeout`` of that, the attempt fails.
    """
    spec = spec_of(cjob)
    status = status_of(cjob)
    state = status.get("state") or PENDING
    if state in FINAL_STATES:
        return Decision()
    attempts = int(status.get("attempts") or 0)
    started = parse_time(status.get("startTime"))

    if spec.get("cancel"):
        live = [j.name for j in jobs.values() if not j.deleting and not j.finished]
        message = "canceled while running; its Job was deleted" if live else "canceled before it started"
        patch = state_patch(cjob, CANCELED, "False", "Canceled", message, now)
        patch["completionTime"] = format_time(now)
        if started:
            patch["duration"] = duration(started, now)
        return Decision(delete_jobs=live, status=patch, cancel_dependents=True)

    if attempts == 0:
        adopted = (cjob["metadata"].get("annotations") or {}).get(ADOPTED_JOB_ANNOTATION)
        if adopted:
            # A scheduled run: its CronJob started it already, so no queue or executeAfter holds it back.
            decision = _start(cjob, 1, now)
            decision.create_attempt, decision.adopt = None, adopted
            return decision
        execute_after = parse_time(spec.get("executeAfter"))
        if execute_after and now < execute_after:
            message = f"waits until {format_time(execute_after)} (executeAfter)"
            wait = (execute_after - now).total_seconds()
            return Decision(status=_pending(cjob, "Scheduled", message, now), requeue_after=wait)
        if not admitted:
            message = f"waits for a free slot in queue {spec.get('queue', 'default')!r}"
            return Decision(status=_pending(cjob, "Queued", message, now))
        return _start(cjob, 1, now)

    current = jobs.get(attempts)
    if current is None:
        return Decision(verify_attempt=attempts)
    if not current.finished:
        return _while_running(cjob, current, now, problem, start_timeout)
    if current.complete:
        return Decision(collect=current, finish=FINISHED)

    # A pod stopped at its deadline fails its Job like any failed pod: final_status turns that Failed into
    # Terminated once the pod has been read.
    final = TERMINATED if current.failure_reason == DEADLINE_EXCEEDED else FAILED
    return _after_failure(cjob, current, final, now)


def _while_running(
    cjob: dict[str, Any], current: JobView, now: datetime, problem: PodProblem | None, start_timeout: timedelta
) -> Decision:
    if problem is None:
        return Decision()
    if problem.remedy is not None:
        # The same refusal at every try: waiting for the timeout would only hide it for minutes.
        return _stop(cjob, current, f"{problem.message}. {problem.remedy}", problem.reason, now)
    deadline = problem.since + start_timeout
    if now >= deadline:
        # Kubernetes would retry the pull for ever: stop the attempt and let the retry rules decide.
        seconds = int(start_timeout.total_seconds())
        return _stop(cjob, current, f"{problem.message} (not started within {seconds}s)", problem.reason, now)
    message = f"{problem.message}; the attempt fails at {format_time(deadline)} unless the container starts"
    patch = None if _unchanged(cjob, RUNNING, problem.reason) else state_patch(
        cjob, RUNNING, "Unknown", problem.reason, message, now
    )  # fmt: skip
    return Decision(status=patch, requeue_after=(deadline - now).total_seconds())


def _stop(cjob: dict[str, Any], current: JobView, why: str, reason: str, now: datetime) -> Decision:
    """Fails an attempt whose container cannot start: its Job is deleted, and the retry rules decide."""
    failed = JobView(current.name, current.attempt, failed=True, failure_reason=reason, finished_at=now, stopped=why)
    decision = _after_failure(cjob, failed, FAILED, now)
    decision.delete_jobs.append(current.name)
    return decision


def _after_failure(cjob: dict[str, Any], attempt: JobView, final: str, now: datetime) -> Decision:
    """A failed, terminated or vanished attempt: retry while retries are left, else record the final state."""
    spec = spec_of(cjob)
    status = status_of(cjob)
    attempts = int(status.get("attempts") or 0)
    if attempts > int(spec.get("maxRetries", 0)):
        return Decision(collect=attempt, finish=final, cancel_dependents=True)
    recorded = status.get("reason") == "RetryBackoff" and parse_time(status.get("nextAttemptTime"))
    # Once recorded, the time of the next attempt is the status's: a Job deleted during the backoff, or a restart
    # of the operator, does not move it.
    retry_at = recorded or (attempt.finished_at or now) + retry_backoff(spec, attempts)
    if now >= retry_at:
        return _start(cjob, attempts + 1, now)
    wait = (retry_at - now).total_seconds()
    if recorded:
        return Decision(requeue_after=wait)
    return Decision(collect=attempt, retry_at=retry_at, requeue_after=wait)


def vanished(cjob: dict[str, Any], attempt: int, now: datetime) -> Decision:
    """The attempt's Job is gone though it never finished (someone deleted it): the job is Incomplete."""
    view = JobView(name="", attempt=attempt, failed=True, failure_reason="JobDeleted", finished_at=now)
    return _after_failure(cjob, view, INCOMPLETE, now)


def _start(cjob: dict[str, Any], attempt: int, now: datetime) -> Decision:
    status = status_of(cjob)
    first = attempt == 1
    message = "started" if first else f"retry: attempt {attempt} started"
    patch = state_patch(cjob, RUNNING, "Unknown", "Running", message, now)
    patch["attempts"] = attempt
    if first or not status.get("startTime"):
        patch["startTime"] = format_time(now)
    return Decision(create_attempt=attempt, status=patch)


def retry_status(
    cjob: dict[str, Any], attempt: JobView, result: AttemptResult, retry_at: datetime, now: datetime
) -> dict[str, Any]:
    """Status while a retry waits for its backoff: still Running, as in JMS."""
    attempts = int(status_of(cjob).get("attempts") or 0)
    why = failure(spec_of(cjob), attempt, result)
    message = f"attempt {attempts} failed ({why}); next attempt at {format_time(retry_at)}"
    patch = state_patch(cjob, RUNNING, "Unknown", "RetryBackoff", message, now)
    patch.update(
        exitCode=exit_code(attempt, result),
        output=result.output,
        outputTruncated=result.output_truncated,
        nextAttemptTime=format_time(retry_at),
    )
    return patch


FINAL_REASONS = {
    FINISHED: ("True", "Completed"),
    FAILED: ("False", "Failed"),
    TERMINATED: ("False", "MaxRuntimeExceeded"),
    INCOMPLETE: ("False", "JobDeleted"),
}


def final_status(
    cjob: dict[str, Any], final: str, attempt: JobView, result: AttemptResult, now: datetime
) -> dict[str, Any]:
    spec = spec_of(cjob)
    status = status_of(cjob)
    if final == FAILED and max_runtime_exceeded(attempt, result):
        final = TERMINATED  # the pod says what its Job does not (see decide)
    cond_status, reason = FINAL_REASONS[final]
    attempts = int(status.get("attempts") or 0)
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    if final == FINISHED:
        message = f"{spec.get('command', '')} succeeded{tries}"
    elif final == TERMINATED:
        message = f"exceeded its max runtime of {spec.get('maxRuntimeSeconds')}s and was stopped{tries}"
    elif final == INCOMPLETE:
        message = f"its Job {attempt.name or 'of attempt ' + str(attempts)} was deleted before it finished{tries}"
    elif attempt.stopped:
        message = f"{spec.get('command', '')} failed: {attempt.stopped}{tries}"
        reason = attempt.failure_reason  # e.g. CreateContainerConfigError: what kept it from running
    else:
        message = f"{spec.get('command', '')} failed with {failure(spec, attempt, result)}{tries}"
    patch = state_patch(cjob, final, cond_status, reason, message, now)
    end = attempt.finished_at or now
    patch.update(
        completionTime=format_time(end),
        duration=duration(parse_time(status.get("startTime")), end),
        exitCode=exit_code(attempt, result),
        output=result.output,
        outputTruncated=result.output_truncated,
    )
    return patch


TEMPLATE_WAIT = timedelta(minutes=5)


def template_not_found(cjob: dict[str, Any], template: str, now: datetime) -> dict[str, Any] | None:
    """Status of a job whose template does not exist (yet: GitOps may apply the job first). It waits Pending for
    TEMPLATE_WAIT after its creation, then fails. None when Pending for this reason is already recorded."""
    created = parse_time(cjob["metadata"].get("creationTimestamp")) or now
    message = f"CommerceJobTemplate {template!r} not found"
    if now - created >= TEMPLATE_WAIT:
        patch = state_patch(cjob, FAILED, "False", "TemplateNotFound", message, now)
        patch["completionTime"] = format_time(now)
        return patch
    if _unchanged(cjob, PENDING, "TemplateNotFound"):
        return None
    return state_patch(cjob, PENDING, "Unknown", "TemplateNotFound", f"{message}; waiting for it", now)


def template_fields(cjob: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """The fields that a job started from a template takes from it: all that the job does not set itself."""
    spec = spec_of(cjob)
    return {k: v for k, v in spec_of(template).items() if k not in spec}
