"""The default security context (runAsNonRoot, no runAsUser) against common shop images, on a real kubelet: an image
that runs as root and one whose USER is a name are refused, at once and with the kubelet's words; the documented
remedy, jobDefaults.podSecurityContext.runAsUser, makes both run."""

from __future__ import annotations

from datetime import datetime

import pytest

from commerce_jobs.devcluster.images import SHOP_UID, image_ref
from tests.cjobs import CommerceJobs, state
from tests.e2e.realnode import REAL_OPERATOR_CONFIG, OperatorFactory
from tests.e2e.test_realnode_jobs import IMPORT_OUTPUT

pytestmark = [pytest.mark.realnode, pytest.mark.timeout(1200)]

AS_ROOT = "container has runAsNonRoot and image will run as root"
NAMED_USER = "container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root"


def seconds(status: dict[str, str], start: str, end: str) -> float:
    parse = datetime.fromisoformat
    return (parse(status[end].replace("Z", "+00:00")) - parse(status[start].replace("Z", "+00:00"))).total_seconds()


@pytest.mark.parametrize(("image", "kubelet_says"), [("shop-root", AS_ROOT), ("shop-named-user", NAMED_USER)])
def test_an_image_the_kubelet_refuses_fails_at_once_with_its_message_and_the_remedy(
    real_cjobs: CommerceJobs, image: str, kubelet_says: str
) -> None:
    real_cjobs.create("refused", command="silver:import", params=["tmp"], image=image_ref(image))

    final = real_cjobs.wait_final("refused", timeout=REAL_OPERATOR_CONFIG["podStartTimeoutSeconds"])

    status = final["status"]
    assert (status["state"], status["reason"]) == ("Failed", "CreateContainerConfigError")
    assert kubelet_says in status["message"]
    assert "jobDefaults.podSecurityContext.runAsUser" in status["message"]
    assert status.get("exitCode") is None  # not the 137 that the deleted pod reports
    # At once, not after podStartTimeoutSeconds (120 s in this tier).
    assert seconds(status, "startTime", "completionTime") < 30


@pytest.mark.parametrize("image", ["shop-root", "shop-named-user"])
def test_jobdefaults_runasuser_makes_those_images_run(
    start_real_operator: OperatorFactory, real_namespace: str, image: str
) -> None:
    """The README's remedy, in the operator's configuration: a numeric non-root uid for every job's pod."""
    defaults = {**REAL_OPERATOR_CONFIG["jobDefaults"], "podSecurityContext": {"runAsUser": SHOP_UID}}
    cjobs = start_real_operator(real_namespace, jobDefaults=defaults)
    cjobs.create("import", command="silver:import", params=["tmp"], image=image_ref(image))

    final = cjobs.wait_final("import", timeout=120)

    assert (state(final), final["status"]["exitCode"], final["status"]["output"]) == ("Finished", 0, IMPORT_OUTPUT)
