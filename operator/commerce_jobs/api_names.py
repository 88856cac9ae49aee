"""The API's names, in one place: the group and version of the project's kinds, their plurals, the labels and
annotations that the operator and its tools set, the job container's name and the states of a CommerceJob.

Only constants (as kubebuilder's ``api/`` package or crate-operator's ``constants.py``): every other module takes
these names from here, so that a rename is one edit and a reader finds the vocabulary at a glance.
"""

from __future__ import annotations

# -- the project's kinds ---------------------------------------------------------------------------------------------
GROUP = "commercejobs.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

COMMERCEJOB, COMMERCEJOBTEMPLATE, COMMERCECRONJOB = "CommerceJob", "CommerceJobTemplate", "CommerceCronJob"
# Their plurals: the resource names in the API's paths (and the watch handlers' and the metrics' labels).
COMMERCEJOBS = "commercejobs"
COMMERCEJOBTEMPLATES = "commercejobtemplates"
COMMERCECRONJOBS = "commercecronjobs"

# -- what the operator's objects carry ---------------------------------------------------------------------------------
FIELD_MANAGER = "commerce-jobs"  # of its writes (server-side apply, patches), and the source of its Events
MANAGED_BY = {"app.kubernetes.io/managed-by": "commerce-jobs"}  # on the Jobs, pods and CronJobs it makes
CONTAINER = "console"  # the one container of a job's pod, which runs the console command
PREFIX = "commercejobs.dev/"  # of the operator's labels and annotations (the cache keeps those annotations)

# Labels (values are at most 63 characters).
OWNER_LABEL = PREFIX + "job-name"  # on a Job and its pods: the CommerceJob's name, shortened
ATTEMPT_LABEL = PREFIX + "attempt"  # on a Job and its pods: which attempt of its CommerceJob it runs
CRON_LABEL = PREFIX + "cronjob"  # on a CronJob, its Jobs and their runs: the CronJob's name
PARENT_LABEL = PREFIX + "parent-uid"  # on a dependent: its parent's uid
TEMPLATE_LABEL = PREFIX + "template"  # on a job started from a template (CLI, console)
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set by the Job controller on a Job's pods

# Annotations.
COMMERCEJOB_ANNOTATION = PREFIX + "commercejob"  # on a Job: its CommerceJob's full name
PARENT_ANNOTATION = PREFIX + "parent"  # on a dependent: its parent's name
ADOPTED_JOB_ANNOTATION = PREFIX + "adopted-job"  # on a scheduled run: the Job that its CronJob started
STARTED_BY_ANNOTATION = PREFIX + "started-by"  # who pressed Start (or Retry) in the console
RETRY_OF_ANNOTATION = PREFIX + "retry-of"  # on a retry: the job it runs again
CRONTAB_ANNOTATION = PREFIX + "crontab"  # on an imported crontab task: its crontab line
ADD_JOBS_ID_ANNOTATION = PREFIX + "add-jobs-id"  # on an imported template: its id in the platform's add_jobs

# -- the states of a CommerceJob (JMSJobQueueBundle's) -----------------------------------------------------------------
PENDING, RUNNING = "Pending", "Running"
FINISHED, FAILED, TERMINATED, CANCELED, INCOMPLETE = "Finished", "Failed", "Terminated", "Canceled", "Incomplete"
FINAL_STATES = frozenset({FINISHED, FAILED, TERMINATED, CANCELED, INCOMPLETE})
STATES = (PENDING, RUNNING, FINISHED, FAILED, TERMINATED, CANCELED, INCOMPLETE)  # in the CRD's order
