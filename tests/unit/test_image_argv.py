"""The command line that the image runs, as a user gets it: the Dockerfile's ENTRYPOINT, then the chart's args (or
the image's CMD where nothing replaces it), parsed by the program's real argument parser.

Kubernetes' ``args`` replace the image's CMD and ``command`` its ENTRYPOINT; a container of the operator's image that
the chart renders must make a command line that parses, or the pod crash-loops (issue 12, defect 1)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import re
import subprocess
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from commerce_jobs import cli, probes, smoketest
from commerce_jobs.devcluster.toolchain import Toolchain

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "commerce-jobs"
REPOSITORY = "registry.example.com/commerce-jobs/operator"  # the chart's default image.repository


def image_config() -> dict[str, list[str]]:
    """ENTRYPOINT and CMD of the Dockerfile's final stage, in their exec (JSON) form: the shell form would run the
    operator under /bin/sh, which does not pass SIGTERM on."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    final_stage = re.split(r"^FROM ", text, flags=re.M)[-1]
    found = {}
    for instruction in ("ENTRYPOINT", "CMD"):
        lines = re.findall(rf"^{instruction}\s+(.*)$", final_stage, re.M)
        assert len(lines) == 1, f"the final stage needs exactly one {instruction}"
        value = json.loads(lines[0])
        assert isinstance(value, list), f"{instruction} must be in exec form (a JSON list)"
        found[instruction] = value
    return found


def parse(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """Parses a container's whole command line with the parser of the program it starts; fails with argparse's own
    message (what the container would print before it exits 2)."""
    if argv[0] == "commerce-jobs":
        scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
        assert scripts["commerce-jobs"] == "commerce_jobs.cli:main"  # the command that the image installs
        parser, args = cli.build_parser(), argv[1:]
    elif argv[:2] == ["python", "-m"]:
        module = importlib.import_module(argv[2])
        parser, args = module.build_parser(), argv[3:]
    else:
        raise AssertionError(f"an unknown program: {argv}")
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            return parser, parser.parse_args(args)
        except SystemExit:
            pytest.fail(f"{argv} exits at once: {stderr.getvalue()}")


def command_line(container: dict[str, Any], image: dict[str, list[str]]) -> list[str]:
    if "command" in container:
        return [*container["command"], *container.get("args", [])]
    return [*image["ENTRYPOINT"], *container.get("args", image["CMD"])]


def operator_containers(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every container of the operator's image, by kind/name of what holds it."""
    found = {}
    for doc in docs:
        pod = doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else doc.get("spec", {})
        for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
            if container["image"].startswith((REPOSITORY + ":", REPOSITORY + "@")):
                found[f"{doc['kind']}/{doc['metadata']['name']}"] = container
    return found


@pytest.fixture(scope="module")
def helm() -> Path:
    path = Toolchain.default().path("helm")
    assert path.exists(), f"{path} is missing: run `make tools`"
    return path


def render(helm: Path, *values: str) -> list[dict[str, Any]]:
    result = subprocess.run([str(helm), "template", "shop-jobs", str(CHART), "-n", "shop", *values],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_docker_run_of_the_image_runs_the_operator() -> None:
    image = image_config()
    assert image["ENTRYPOINT"] == ["commerce-jobs"]  # any subcommand: docker run IMAGE start import-solr --wait
    _, args = parse([*image["ENTRYPOINT"], *image["CMD"]])
    assert args.func is cli.cmd_run
    assert (args.standalone, args.all_namespaces) == (True, True)
    assert probes.parse_endpoint(args.liveness)[1:] == (8080, "/healthz")
    assert re.search(r"^EXPOSE 8080$", (REPO / "Dockerfile").read_text(), re.M)


def check_operator(container: dict[str, Any], args: argparse.Namespace) -> None:
    """The parsed command line runs the operator, and its probes are where the kubelet asks."""
    assert args.func is cli.cmd_run
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    _, port, path = probes.parse_endpoint(args.liveness)
    assert ports["health"] == port
    assert container["livenessProbe"]["httpGet"] == {"path": path, "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": probes.READINESS_PATH, "port": "health"}
    if args.console:
        assert urllib.parse.urlsplit(f"//{args.console}").port == ports["console"]


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["--set=console.enabled=true", "--set=console.authentication=false", "--set=console.secureCookie=true"],
        ["--set=leaderElection.enabled=false"],
        ["--set=replicaCount=3", "--set=watchNamespaces={shop-a,shop-b}", "--set=logFormat=plain"],
        ["--set=tests.params={--env=prod,two words}", "--set=tests.image=registry.example.com/shop:1"],
        ["-f", str(CHART / "values-production.yaml")],
        [
            f"--set=image.digest=sha256:{'0' * 64}",
            "--set=networkPolicy.enabled=true",
            "--set=networkPolicy.apiServer.cidrs={10.0.0.1/32}",
        ],
    ],
    ids=["defaults", "console", "no-leader-election", "namespaces", "test-params", "production", "digest"],
)
def test_every_container_of_the_operator_image_that_the_chart_renders_parses(helm: Path, values: list[str]) -> None:
    image = image_config()
    containers = operator_containers(render(helm, *values))
    assert set(containers) == {"Deployment/shop-jobs-commerce-jobs", "Pod/shop-jobs-commerce-jobs-test"}
    operator = containers["Deployment/shop-jobs-commerce-jobs"]
    check_operator(operator, parse(command_line(operator, image))[1])

    hook = containers["Pod/shop-jobs-commerce-jobs-test"]
    parser, args = parse(command_line(hook, image))
    assert parser.prog == smoketest.build_parser().prog
    assert args.name == "shop-jobs-commerce-jobs-helm-test"
    assert args.namespace == ("shop-a" if "--set=watchNamespaces={shop-a,shop-b}" in values else "shop")
    if any(v.startswith("--set=tests.image") for v in values):
        assert (args.param, args.image) == (["--env=prod", "two words"], "registry.example.com/shop:1")


def test_the_kustomize_install_runs_a_command_line_that_parses() -> None:
    """manifests/install.yaml is rendered from the chart (no helm needed here): the same check."""
    docs = [doc for doc in yaml.safe_load_all((REPO / "manifests" / "install.yaml").read_text()) if doc]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    check_operator(container, parse(command_line(container, image_config()))[1])
    assert not [d for d in docs if d["kind"] == "Pod"]  # no test hook: kubectl would run it at install
