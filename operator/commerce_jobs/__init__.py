"""commerce-jobs: a Kubernetes operator that runs a Symfony shop's console commands as CommerceJobs."""

__version__ = "0.1.0"
