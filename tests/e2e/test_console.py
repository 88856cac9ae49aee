"""The jobs console, driven in headless Chromium (Debian's /usr/bin/chromium, through Playwright) against the real
control plane and the operator under test, which serves it (the `operator` fixture passes --console).

Users are ServiceAccounts with Roles, signed in with `kubectl create token`: an editor (create and patch
commercejobs), a lister (list only) and a nobody. Screenshots of each page are kept in test-artifacts/console/.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from playwright import sync_api as playwright_sync  # a dependency of the package's [test] extra: never skipped

from commerce_jobs.devcluster.toolchain import Toolchain
from tests.cjobs import CommerceJobs, sim
from tests.conftest import Cluster
from tests.e2e.conftest import REPO, kubectl, kubectl_apply
from tests.e2e.test_security import apply_examples, as_user, wait_policy_enforced

expect = playwright_sync.expect

CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO / "test-artifacts" / "console"
TIMEOUT = 30_000  # ms: Playwright's auto-waiting assertions, never a sleep

pytestmark = pytest.mark.usefixtures("simulated_cluster")
expect.set_options(timeout=TIMEOUT)


@dataclass
class User:
    name: str  # the username Kubernetes gives the ServiceAccount
    token: str


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # A missing browser fails these tests (a skipped test is not a passed one); `make test` installs it first.
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `make system-deps` (or apt-get install chromium)"
    with playwright_sync.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def console(operator: subprocess.Popen[bytes], console_port: int) -> str:
    return f"http://127.0.0.1:{console_port}"


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT)
    yield opened
    context.close()


def user(cluster: Cluster, namespace: str, name: str, verbs: str | None) -> User:
    """A ServiceAccount with a Role of these verbs on commercejobs (none: no Role at all), and a token for it."""
    kubectl(cluster, "create", "serviceaccount", name, f"--namespace={namespace}")
    if verbs:
        kubectl(cluster, "create", "role", name, f"--verb={verbs}", "--resource=commercejobs.commercejobs.dev",
                f"--namespace={namespace}")  # fmt: skip
        kubectl(cluster, "create", "rolebinding", name, f"--role={name}", f"--serviceaccount={namespace}:{name}",
                f"--namespace={namespace}")  # fmt: skip
    token = kubectl(cluster, "create", "token", name, f"--namespace={namespace}", "--duration=1h").stdout.strip()
    return User(f"system:serviceaccount:{namespace}:{name}", token)


@pytest.fixture
def editor(cluster: Cluster, namespace: str) -> User:
    return user(cluster, namespace, "editor", "get,list,watch,create,patch")


@pytest.fixture
def lister(cluster: Cluster, namespace: str) -> User:
    return user(cluster, namespace, "lister", "get,list,watch")


def sign_in(page: Any, console: str, who: User) -> None:
    page.goto(f"{console}/login")
    page.fill("#token", who.token)
    page.click("form.login button[type=submit]")
    expect(page.locator("header .user")).to_contain_text(who.name)


def row(page: Any, namespace: str, name: str) -> Any:
    return page.locator(f'tr.job[data-key="{namespace}/{name}"]')


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def apply_template(cluster: Cluster, namespace: str, name: str, annotations: dict[str, str]) -> None:
    template = {
        "apiVersion": "commercejobs.dev/v1alpha1", "kind": "CommerceJobTemplate", "metadata": {"name": name},
        "spec": {"label": "Import from eZ", "description": "Starts import from a remote system",
                 "command": "silver:import", "params": ["tmp"], "podAnnotations": annotations,
                 "dependingJobs": [{"name": "index-solr", "label": "Index econtent tmp cores",
                                    "command": "ibexa:commerce:index-econtent-job", "podAnnotations": sim()}]},
    }  # fmt: skip
    applied = kubectl_apply(cluster, namespace, yaml.safe_dump(template))
    assert applied.returncode == 0, applied.stderr


def test_the_list_shows_a_job_live_and_its_output_when_expanded(
    page: Any, console: str, cjobs: CommerceJobs, namespace: str, editor: User
) -> None:
    sign_in(page, console, editor)
    shot(page, "empty-list")
    page.evaluate("window.__notReloaded = true")
    output = "Imported 1250 products\n<script>alert(1)</script>\n"
    cjobs.create("silver-import", command="silver:import", params=["tmp", "--<b>bold</b>"],
                 podAnnotations=sim(duration="3s", output=output))  # fmt: skip

    job = row(page, namespace, "silver-import")
    expect(job).to_be_visible()  # arrived through the event stream, not a reload
    expect(job.locator("td.command")).to_have_text("silver:import tmp --<b>bold</b>")  # escaped, shown as text
    job.locator("button.expand").click()
    detail = page.locator(f'tr.detail-row[data-key="{namespace}/silver-import"]')
    expect(detail.locator("pre.output")).to_contain_text("Imported 1250 products")
    expect(detail.locator("pre.output")).to_contain_text("<script>alert(1)</script>")
    expect(job.locator(".state")).to_have_text("Finished")
    expect(detail.locator("dl.fields")).to_contain_text("Exit code0")
    expect(detail.locator("dl.fields")).to_contain_text("Attempts1 of 1")
    expect(detail.locator(".dependents")).to_contain_text("(none)")
    assert page.evaluate("window.__notReloaded") is True
    shot(page, "expanded")


def test_start_runs_a_template_and_its_dependents_show_as_a_tree(
    page: Any, console: str, cjobs: CommerceJobs, cluster: Cluster, namespace: str, editor: User
) -> None:
    apply_template(cluster, namespace, "import-solr", sim(duration="1s", output="Imported\n"))
    sign_in(page, console, editor)
    template = page.locator(f'li.template[data-key="{namespace}/import-solr"]')
    expect(template).to_contain_text("Import from eZ")

    template.locator("button.start").click()

    expect(page.locator("#flash")).to_contain_text("from template import-solr")
    name = page.locator("#flash").inner_text().split()[1]
    job = row(page, namespace, name)
    expect(job.locator(".state")).to_have_text("Finished")
    job.locator("button.expand").click()
    tree = page.locator(f'tr.detail-row[data-key="{namespace}/{name}"] .dependents')
    expect(tree.locator(f'li[data-key="{namespace}/{name}-index-solr"] .state')).to_have_text("Finished")
    expect(row(page, namespace, f"{name}-index-solr").locator(".state")).to_have_text("Finished")
    shot(page, "started")
    created = cjobs.get(name)
    assert created["spec"]["templateRef"] == {"name": "import-solr"}
    assert created["metadata"]["annotations"]["commercejobs.dev/started-by"] == editor.name


def test_cancel_stops_a_running_job_and_retry_runs_a_failed_one_again(
    page: Any, console: str, cjobs: CommerceJobs, namespace: str, editor: User
) -> None:
    output = sim(duration="300s", output="Refreshing caches\n")
    cjobs.create("long", command="ibexa:commerce:refresh-cache", podAnnotations=output)
    cjobs.create("broken", command="silver:import", params=["tmp"], podAnnotations=sim(exit_code=3, output="no\n"))
    sign_in(page, console, editor)
    long, broken = row(page, namespace, "long"), row(page, namespace, "broken")
    expect(long.locator(".state")).to_have_text("Running")
    expect(broken.locator(".state")).to_have_text("Failed")
    expect(broken.locator("button.cancel")).to_have_count(0)
    # A running job's output is followed from its pod's log.
    long.locator("button.expand").click()
    followed = page.locator(f'tr.detail-row[data-key="{namespace}/long"] pre.output[data-following="true"]')
    expect(followed).to_have_text("Refreshing caches\n")
    shot(page, "following")

    long.locator("button.cancel").click()
    expect(long.locator(".state")).to_have_text("Canceled")
    expect(page.locator(f'tr.detail-row[data-key="{namespace}/long"] dl.fields')).to_contain_text("StateCanceled")
    broken.locator("button.retry").click()

    expect(page.locator("#flash")).to_contain_text("retrying broken as broken-retry-")
    retried = page.locator("#flash").inner_text().split()[-1]
    expect(row(page, namespace, retried).locator(".state")).to_have_text("Failed")
    copy = cjobs.get(retried)
    assert copy["spec"]["command"] == "silver:import"
    assert copy["spec"]["params"] == ["tmp"]
    assert copy["metadata"]["annotations"]["commercejobs.dev/retry-of"] == "broken"
    assert cjobs.get("long")["spec"]["cancel"] is True


def test_retry_is_the_users_own_request_so_an_admission_policy_applies_to_it(
    page: Any, console: str, cjobs: CommerceJobs, cluster: Cluster, namespace: str
) -> None:
    """A shop operator (manifests/examples/rbac/shop-operator.yaml: create CommerceJobs, but a ValidatingAdmissionPolicy
    lets the group create only `spec.templateRef`) retries through the console what kubectl would let them."""
    assert cluster.local is not None  # the local control plane's static token of a member of shop-operators
    apply_examples(cluster, namespace)
    wait_policy_enforced(client.CustomObjectsApi(as_user(cluster, "shop-operator", "shop-operators")), namespace)
    apply_template(cluster, namespace, "import-solr", sim(exit_code=3, output="no\n"))
    cjobs.create("import-solr-x7k2p", templateRef={"name": "import-solr"})
    cjobs.create("broken", command="silver:import", params=["tmp"], podAnnotations=sim(exit_code=3))
    cjobs.wait_state("import-solr-x7k2p", "Failed")
    cjobs.wait_state("broken", "Failed")
    # The template changes after the job ran: its retry takes the template as it is now.
    changed = kubectl(cluster, "patch", "commercejobtemplate", "import-solr", f"-n={namespace}", "--type=merge",
                      '--patch={"spec": {"params": ["tmp", "--force"]}}')  # fmt: skip
    assert changed.returncode == 0, changed.stderr

    operator = User("shop-operator", cluster.local.pki.token("shop-operator"))
    sign_in(page, console, operator)

    # A job that came from a template: started from the template again, which the policy lets them do.
    row(page, namespace, "import-solr-x7k2p").locator("button.retry").click()
    flash = page.locator("#flash")
    expect(flash).to_contain_text("retrying import-solr-x7k2p as import-solr-x7k2p-retry-")
    retried = flash.inner_text().split()[3]
    assert cjobs.get(retried)["metadata"]["annotations"]["commercejobs.dev/retry-of"] == "import-solr-x7k2p"
    filled = cjobs.wait(retried, lambda o: "command" in o["spec"])  # the operator copied the template's fields in
    assert filled["spec"]["params"] == ["tmp", "--force"]
    message = flash.inner_text()

    # A job with its own command: the policy refuses it for them, as it does with kubectl.
    row(page, namespace, "broken").locator("button.retry").click()
    expect(flash).to_contain_text("refused: ")
    expect(flash).to_contain_text("shop operators may only start a CommerceJobTemplate")
    shot(page, "retry-refused-by-policy")
    names = [j["metadata"]["name"] for j in cjobs.list()]
    assert not [n for n in names if n.startswith("broken-retry-")], names
    assert message.endswith(" from template import-solr")


def test_a_user_who_may_only_list_sees_jobs_but_is_refused_every_action(
    page: Any, console: str, cjobs: CommerceJobs, cluster: Cluster, namespace: str, lister: User
) -> None:
    apply_template(cluster, namespace, "import-solr", sim())
    cjobs.create("long", command="ibexa:commerce:refresh-cache", podAnnotations=sim(duration="300s"))
    sign_in(page, console, lister)
    long = row(page, namespace, "long")
    expect(long.locator(".state")).to_have_text("Running")
    expect(long.locator("button.cancel")).to_have_count(0)
    template = page.locator(f'li.template[data-key="{namespace}/import-solr"]')
    expect(template).to_contain_text("view only")
    expect(template.locator("button.start")).to_have_count(0)
    shot(page, "read-only")

    # The buttons are hidden, and the server refuses the requests too, even with the session's own CSRF token.
    for action, name in (("start", "import-solr"), ("cancel", "long")):
        answer = page.evaluate(
            """async ([action, namespace, name]) => {
                const csrf = document.querySelector('meta[name="csrf-token"]').content;
                const body = new URLSearchParams({csrf, namespace, name});
                const r = await fetch('/' + action, {method: 'POST', body, headers: {'X-Requested-With': 'console'}});
                return [r.status, await r.text()];
            }""",
            [action, namespace, name],
        )
        verb = "create" if action == "start" else "patch"
        assert answer == [403, f"{lister.name} may not {verb} CommerceJobs in {namespace}"]
    assert [j["metadata"]["name"] for j in cjobs.list()] == ["long"]
    assert not cjobs.get("long")["spec"].get("cancel")


def test_a_user_without_the_right_to_list_sees_no_job(
    page: Any, console: str, cjobs: CommerceJobs, cluster: Cluster, namespace: str
) -> None:
    cjobs.create("hello", command="list")
    nobody = user(cluster, namespace, "nobody", None)
    sign_in(page, console, nobody)
    refused = f"{nobody.name} may not list CommerceJobs in any namespace that has some."
    expect(page.locator(".refused")).to_have_text(refused)
    expect(page.locator("#rows")).to_have_text("No CommerceJobs match.")
    shot(page, "refused")


def test_an_invalid_token_is_refused_at_sign_in(page: Any, console: str) -> None:
    page.goto(f"{console}/")
    expect(page).to_have_url(f"{console}/login")
    page.fill("#token", "not-a-token")
    page.click("form.login button[type=submit]")
    expect(page.locator(".error")).to_have_text("This token is not valid.")
    shot(page, "login")


def http(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
    """A raw request that follows no redirect: (status, body, headers)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, data=data, headers=headers or {})  # noqa: S310  a local test URL
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers


def test_nothing_is_reachable_without_a_session_and_cross_origin_posts_are_refused(
    console: str, cjobs: CommerceJobs, namespace: str, editor: User
) -> None:
    cjobs.create("hello", command="list")
    for path in ("/rows", "/events", f"/jobs/{namespace}/hello", f"/jobs/{namespace}/hello/output"):
        status, body, _ = http(console + path)
        assert (status, body) == (401, "sign in again"), path
    status, _, headers = http(console + "/")
    assert (status, headers["Location"]) == (303, "/login")
    form = f"namespace={namespace}&name=hello".encode()
    status, _, _ = http(console + "/cancel", form, {"Origin": console})
    assert status == 401

    # Signed in, a form posted from another site is refused before anything else, and so is one without the token.
    login = f"token={editor.token}".encode()
    status, _, headers = http(console + "/login", login, {"Origin": "http://evil.example"})
    assert status == 403
    status, _, headers = http(console + "/login", login, {"Origin": console})
    assert status == 303
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    session = cookie.split(";")[0]
    status, body, _ = http(console + "/cancel", form, {"Origin": console, "Cookie": session})
    assert (status, body) == (403, "invalid CSRF token: reload the page")
    status, body, _ = http(console + "/cancel", form, {"Origin": "http://evil.example", "Cookie": session})
    assert (status, body) == (403, "cross-origin request refused")
    status, body, headers = http(console + "/", headers={"Cookie": session})
    assert status == 200
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert editor.token not in body
    assert not cjobs.get("hello")["spec"].get("cancel")


def test_the_chart_serves_the_console_behind_a_service_with_the_review_rights() -> None:
    helm = str(Toolchain.default().path("helm"))
    rendered = subprocess.run(
        [helm, "template", "shop-jobs", str(REPO / "charts/commerce-jobs"), "-n", "shop", "--set=console.enabled=true",
         "--set=watchNamespaces={shop-a}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    objects = [d for d in yaml.safe_load_all(rendered) if d]
    (service,) = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"].endswith("-console")]
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "console"}]
    # Reviews are cluster-scoped: a ClusterRole even when the operator only watches some namespaces.
    (cluster_role,) = [o for o in objects if o["kind"] == "ClusterRole"]
    assert json.dumps(cluster_role["rules"], sort_keys=True) == json.dumps([
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
    ], sort_keys=True)  # fmt: skip
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--console=0.0.0.0:8081" in container["args"]
    # Ready = working, the console included (it starts before the workers): the operator's own readiness probe.
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    anonymous = subprocess.run(
        [helm, "template", "x", str(REPO / "charts/commerce-jobs"), "--set=console.enabled=true",
         "--set=console.authentication=false"], capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "--console-authentication=off" in anonymous
    assert "tokenreviews" not in anonymous  # no review rights when nothing is reviewed
    default = subprocess.run([helm, "template", "x", str(REPO / "charts/commerce-jobs")], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    assert "--console" not in default
    assert "-console\n" not in default  # no console Service (the metrics Service is on by default)


def test_without_authentication_the_console_is_read_only_for_everyone(
    cluster: Cluster, crds: None, namespace: str
) -> None:
    """console.authentication: false (the chart's explicit choice): every job is visible, no action is possible.
    A Console of its own, in this process, over a controller cache that holds one job (not a second operator)."""
    from aiohttp.test_utils import TestClient, TestServer

    from commerce_jobs.config import OperatorConfig
    from commerce_jobs.console.app import Console, ConsoleSettings
    from commerce_jobs.controller import CommerceJobController
    from commerce_jobs.jobcalls import JobCalls
    from commerce_jobs.kubeapi import KubeApi

    async def no_apiserver() -> Any:
        raise AssertionError("a controller without workers makes no call")

    async def scenario() -> None:
        controller = CommerceJobController(KubeApi(cluster.api), JobCalls(no_apiserver), OperatorConfig())
        controller.observe_commercejob("ADDED", {
            "metadata": {"name": "hello", "namespace": namespace, "uid": "u", "resourceVersion": "1",
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"command": "list"}, "status": {"state": "Running"},
        })  # fmt: skip
        console = Console(controller, cluster.api, [], ConsoleSettings("127.0.0.1", 0, authentication=False))
        async with TestClient(TestServer(console.app())) as http_client:
            page = await http_client.get("/")
            text = await page.text()
            assert page.status == 200
            assert "anonymous (authentication disabled)" in text
            assert 'data-key="' + namespace + '/hello"' in text
            assert '<td class="actions"></td>' in text  # no Cancel, no Retry
            assert "<form" not in text.split('<tbody id="rows"')[1]
            origin = {"Origin": str(http_client.make_url(""))}
            refused = await http_client.post("/cancel", data={"namespace": namespace, "name": "hello"}, headers=origin)
            assert (refused.status, await refused.text()) == (403, "the console is read-only without authentication")
            login = await http_client.get("/login", allow_redirects=False)
            assert (login.status, login.headers["Location"]) == (303, "/")
        console.executor.shutdown()

    # In a thread of its own: Playwright's sync API keeps an event loop running on this one.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, scenario()).result()


def test_a_job_shows_its_dependencies_and_the_jobs_that_wait_for_it(
    page: Any, console: str, cjobs: CommerceJobs, namespace: str, editor: User
) -> None:
    """JMS's job page: "Dependencies" and "Incoming Dependencies", each with its state (spec.dependsOn)."""
    cjobs.create("import-products", command="silver:import", podAnnotations=sim(duration="2s"))
    cjobs.create("index-products", command="silver:index", dependsOn=["import-products"], podAnnotations=sim())
    sign_in(page, console, editor)

    waiting = row(page, namespace, "index-products")
    expect(waiting.locator(".state")).to_have_text("Finished")  # it ran once its dependency had Finished
    waiting.locator("button.expand").click()
    detail = page.locator(f'tr.detail-row[data-key="{namespace}/index-products"]')
    expect(detail.locator(f'.dependencies li[data-key="{namespace}/import-products"] .state')).to_have_text("Finished")
    expect(detail.locator(".incoming")).to_contain_text("(none)")

    dependency = row(page, namespace, "import-products")
    dependency.locator("button.expand").click()
    detail = page.locator(f'tr.detail-row[data-key="{namespace}/import-products"]')
    expect(detail.locator(f'.incoming li[data-key="{namespace}/index-products"] .state')).to_have_text("Finished")
    expect(detail.locator(".dependencies")).to_contain_text("(none)")
    shot(page, "dependencies")
