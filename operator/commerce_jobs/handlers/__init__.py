"""kopf handler registration: thin functions that feed the controllers (importing a module registers it)."""

from commerce_jobs.handlers import commercejob

__all__ = ["commercejob"]
