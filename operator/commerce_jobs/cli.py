"""The ``commerce-jobs`` command (also ``kubectl commercejob``).

    run                 the operator, against the cluster of the current kubeconfig
    start TEMPLATE      start a CommerceJob from a CommerceJobTemplate (--wait, --follow, --after)
    import-config FILE  the platform's add_jobs YAML -> CommerceJobTemplate manifests
    crontab convert     a crontab file -> CommerceCronJob manifests
    clean-up            delete finished CommerceJobs by retention, once
    dev-cluster ACTION  the local control plane: build, up, down, status, images
    dev                 local cluster + CRDs + samples + the operator, in one command

The development cluster's code (devcluster/) is imported only by the two dev commands: the operator never loads it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from commerce_jobs.devcluster.cluster import LocalCluster

DEV_CONFIG = "manifests/dev/operator-config.yaml"
DEV_SAMPLES = ["crds", "manifests/samples"]
# With the real node: the demo shop's image and commands, on the real node.
DEV_CONFIG_REAL_NODE = "manifests/dev/real-node/operator-config.yaml"
DEV_SAMPLES_REAL_NODE = ["crds", "manifests/dev/real-node/samples"]


def _cluster(args: argparse.Namespace) -> LocalCluster:
    from commerce_jobs.devcluster.cluster import LocalCluster

    return LocalCluster(Path(args.directory) if args.directory else None, real_node=getattr(args, "real_node", False))


def cmd_run(args: argparse.Namespace) -> int:
    from commerce_jobs.config import CONFIG_ENV
    from commerce_jobs.runner import run_operator

    if args.config:
        os.environ[CONFIG_ENV] = args.config
    if args.liveness:
        from commerce_jobs.probes import parse_endpoint

        try:
            parse_endpoint(args.liveness)
        except ValueError as e:
            print(f"commerce-jobs run: --liveness: {e}", file=sys.stderr)
            return 2
    console = None
    if args.console:
        from commerce_jobs.console.app import ConsoleSettings

        try:
            console = ConsoleSettings.parse(
                args.console, args.console_authentication == "on", secure_cookie=args.console_secure_cookie
            )
        except ValueError as e:
            print(f"commerce-jobs run: {e}", file=sys.stderr)
            return 2

    leader = None
    if args.leader_election:
        from commerce_jobs.leader import LeaderSettings, LeaseTimings

        if args.standalone:
            print("commerce-jobs run: --standalone and --leader-election exclude each other", file=sys.stderr)
            return 2
        try:
            timings = LeaseTimings(args.lease_duration, args.lease_renew_deadline, args.lease_retry_period)
        except ValueError as e:
            print(f"commerce-jobs run: {e}", file=sys.stderr)
            return 2
        leader = LeaderSettings(args.lease_namespace or _current_namespace(), args.lease_name, timings)

    metrics = None
    if args.metrics:
        from commerce_jobs.metrics_server import MetricsSettings

        try:
            metrics = MetricsSettings.parse(args.metrics)
        except ValueError as e:
            print(f"commerce-jobs run: {e}", file=sys.stderr)
            return 2

    return run_operator(
        metrics=metrics,
        leader=leader,
        watch_grace=args.watch_failure_grace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
        standalone=args.standalone,
        verbose=args.verbose,
        log_format=args.log_format,
        console=console,
    )


def cmd_dev_cluster(args: argparse.Namespace) -> int:
    if args.action == "images":
        from commerce_jobs.devcluster import images

        return images.main(["--no-build"] if args.no_build else [])
    cluster = _cluster(args)
    if args.action == "build":
        # Everything that the tiers of `make test` need: the control plane's tools, the real node's, its images.
        from commerce_jobs.devcluster import images
        from commerce_jobs.devcluster.toolchain import Toolchain

        Toolchain.default().build()
        images.ensure_images(build=True)
        return 0
    if args.action == "up":
        cluster.up(build=not args.no_build)
        node = " with the real node" if cluster.real_node else ""
        print(f"control plane ready{node}; export KUBECONFIG={cluster.kubeconfig}")
        return 0
    if args.action == "down":
        cluster.down()
        print("control plane stopped")
        return 0
    status = cluster.status()
    print(json.dumps(status, indent=2))
    return 0 if status["running"] else 1


def _has_manifests(path: Path) -> bool:
    return any(path.glob("*.yaml")) if path.is_dir() else path.is_file()


def cmd_dev(args: argparse.Namespace) -> int:
    """Brings up (or reuses) the local cluster, applies the CRDs and samples, and runs the operator against it."""
    cluster = _cluster(args)
    cluster.up(build=True)
    manifests = args.apply or (DEV_SAMPLES_REAL_NODE if args.real_node else DEV_SAMPLES)
    config = args.config or (DEV_CONFIG_REAL_NODE if args.real_node else DEV_CONFIG)
    for path in (Path(p) for p in manifests):
        if _has_manifests(path):
            print(f"applying {path}")
            result = cluster.kubectl("apply", "--server-side", f"--filename={path}", check=False)
            sys.stdout.write(result.stdout)
            if result.returncode != 0:
                sys.stderr.write(result.stderr)
                return result.returncode
    print(f"export KUBECONFIG={cluster.kubeconfig}   # then: kubectl get commercejobs")
    argv = [sys.executable, "-m", "commerce_jobs", "run", "--standalone", "--all-namespaces", f"--config={config}"]
    return subprocess.call(argv, env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)})


def cmd_clean_up(args: argparse.Namespace) -> int:
    """The one-shot equivalent of the operator's retention loop (and of jms-job-queue:clean-up)."""
    from datetime import UTC, datetime

    from commerce_jobs import retention
    from commerce_jobs.kubeapi import KubeApi
    from commerce_jobs.kubeclient import api_client

    try:
        policy = retention.RetentionPolicy(
            retention.parse_duration(args.max_retention),
            retention.parse_duration(args.max_retention_succeeded),
            args.per_call,
        )
    except retention.DurationError as e:
        print(f"commerce-jobs clean-up: {e}", file=sys.stderr)
        return 2
    api = KubeApi(api_client())
    due, _ = retention.plan(api.list_commercejobs(args.namespace), policy, datetime.now(UTC))
    verb = "would delete" if args.dry_run else "deleted"
    count = 0
    for expired in due[: policy.per_call]:
        meta = expired.root["metadata"]
        if args.dry_run or api.delete_commercejob(meta["namespace"], meta["name"], meta["uid"]):
            count += 1
            print(f"{verb} {meta['namespace']}/{meta['name']} ({expired.tree_size} job(s) in its tree)")
    print(f"{verb} {count} of {len(due)} expired job tree(s)")
    return 0


def _current_namespace() -> str:
    from kubernetes import config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        return path.read_text().strip() if path.exists() else "default"
    try:
        _, context = config.list_kube_config_contexts()
    except config.ConfigException:
        return "default"
    return str((context or {}).get("context", {}).get("namespace") or "default")


def cmd_start(args: argparse.Namespace) -> int:
    from kubernetes.client.exceptions import ApiException

    from commerce_jobs.kubeclient import api_client
    from commerce_jobs.start import NoSuchDependency, Starter

    starter = Starter(api_client(), args.namespace or _current_namespace())
    try:
        name = starter.create(args.template, after=args.after)
    except NoSuchDependency as e:
        print(f"commerce-jobs start: {e}", file=sys.stderr)
        return 1
    except ApiException as e:
        if e.status == 404:
            print(f"commerce-jobs start: no CommerceJobTemplate {args.template!r}", file=sys.stderr)
            return 1
        raise
    if not (args.wait or args.follow):
        return 0
    return 0 if starter.follow(name, show_output=args.follow) else 1


def cmd_import_config(args: argparse.Namespace) -> int:
    import yaml

    from commerce_jobs.templates import ConfigImportError, templates_from_config

    try:
        with open(args.file) as f:
            templates = templates_from_config(yaml.safe_load(f), args.namespace)
    except (OSError, yaml.YAMLError, ConfigImportError) as e:
        print(f"commerce-jobs import-config: {args.file}: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(yaml.safe_dump_all(templates, sort_keys=False, allow_unicode=True))
    return 0


def cmd_crontab_convert(args: argparse.Namespace) -> int:
    import yaml

    from commerce_jobs.crontab import convert

    try:
        with open(args.file) as f:
            text = f.read()
    except OSError as e:
        print(f"commerce-jobs crontab convert: {e}", file=sys.stderr)
        return 1
    result = convert(text, args.namespace, source=args.file)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for error in result.errors:
        print(f"error: {error}", file=sys.stderr)
    if result.manifests:
        sys.stdout.write(yaml.safe_dump_all(result.manifests, sort_keys=False, allow_unicode=True))
    return 1 if result.errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="commerce-jobs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against the cluster of the current kubeconfig")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    run.add_argument(
        "--liveness", default=None, metavar="URL",
        help="serve the probes: liveness at this URL, e.g. http://0.0.0.0:8080/healthz, and readiness at /readyz "
        "on the same address",
    )  # fmt: skip
    run.add_argument("--standalone", action="store_true", help="do not coordinate with other operator replicas")
    run.add_argument(
        "--leader-election", action="store_true",
        help="of several replicas, only the holder of a coordination.k8s.io Lease acts (the others stand by)",
    )  # fmt: skip
    run.add_argument("--lease-name", default="commerce-jobs", help="the Lease's name (default: commerce-jobs)")
    run.add_argument("--lease-namespace", help="the Lease's namespace (default: the pod's or the context's)")
    run.add_argument("--lease-duration", type=float, default=15.0, help="seconds before a standby takes over")
    run.add_argument("--lease-renew-deadline", type=float, default=10.0, help="seconds the holder keeps acting "
                     "without a renewal (then it exits)")  # fmt: skip
    run.add_argument("--lease-retry-period", type=float, default=2.0, help="seconds between renewals/reads")
    run.add_argument(
        "--watch-failure-grace", type=float, default=30.0,
        help="seconds a watch may fail before the liveness probe does (default: 30)",
    )  # fmt: skip
    run.add_argument("--config", help="the operator's configuration file (YAML; default: $COMMERCE_JOBS_CONFIG)")
    run.add_argument("--verbose", action="store_true")
    run.add_argument("--log-format", choices=["plain", "full", "json"], default="full", help="json: one record a line")
    run.add_argument("--console", metavar="HOST:PORT", help="serve the jobs console, e.g. 0.0.0.0:8081")
    run.add_argument(
        "--console-authentication", choices=["on", "off"], default="on",
        help="off: anyone who reaches the port sees every job, read-only (default: on, a Kubernetes bearer token)",
    )  # fmt: skip
    run.add_argument("--console-secure-cookie", action="store_true", help="the session cookie only over HTTPS")
    run.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics at /metrics, e.g. 0.0.0.0:8082")
    run.set_defaults(func=cmd_run)

    start = sub.add_parser("start", help="start a CommerceJob from a CommerceJobTemplate")
    start.add_argument("template")
    start.add_argument("-n", "--namespace", help="default: the current context's namespace")
    start.add_argument("--wait", action="store_true", help="wait until it and its dependents are final")
    start.add_argument("--follow", action="store_true", help="wait, and print the output as it is written")
    start.add_argument("--after", action="append", default=[], metavar="NAME",
                       help="start only once this CommerceJob Finished (repeatable; spec.dependsOn)")  # fmt: skip
    start.set_defaults(func=cmd_start)

    convert = sub.add_parser("import-config", help="the platform's add_jobs YAML -> CommerceJobTemplate manifests")
    convert.add_argument("file")
    convert.add_argument("-n", "--namespace", help="set this namespace on the manifests")
    convert.set_defaults(func=cmd_import_config)

    crontab = sub.add_parser("crontab", help="crontab tasks as CommerceCronJobs")
    crontab_sub = crontab.add_subparsers(dest="crontab_command", required=True)
    crontab_convert = crontab_sub.add_parser("convert", help="a crontab file -> CommerceCronJob manifests")
    crontab_convert.add_argument("file")
    crontab_convert.add_argument("-n", "--namespace", help="set this namespace on the manifests")
    crontab_convert.set_defaults(func=cmd_crontab_convert)

    clean = sub.add_parser("clean-up", help="delete finished CommerceJobs by retention, once")
    clean.add_argument("--max-retention", default="7 days", help="any final state (default: 7 days)")
    clean.add_argument("--max-retention-succeeded", default="1 hour", help="Finished jobs (default: 1 hour)")
    clean.add_argument("--per-call", type=int, default=1000, help="at most this many job trees (default: 1000)")
    clean.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    clean.add_argument("-n", "--namespace", help="only this namespace (default: all)")
    clean.set_defaults(func=cmd_clean_up)

    dev_cluster = sub.add_parser("dev-cluster", help="the local control plane: build, up, down, status, images")
    # images: the OCI archives of the real node's images (pause, the demo shop and its variants, the operator).
    dev_cluster.add_argument("action", choices=["build", "up", "down", "status", "images"])
    dev_cluster.add_argument("--directory", help="where the cluster keeps its state (default: ~/.cache/...)")
    dev_cluster.add_argument(
        "--no-build", action="store_true", help="fail instead of building missing binaries (or images)"
    )
    dev_cluster.add_argument(
        "--real-node",
        action="store_true",
        help="up: also a real node (containerd, kubelet, kube-proxy; needs root) beside kwok's simulated one",
    )
    dev_cluster.set_defaults(func=cmd_dev_cluster)

    dev = sub.add_parser("dev", help="local cluster + CRDs + samples + the operator, in one command")
    dev.add_argument("--directory", help="where the cluster keeps its state (default: ~/.cache/...)")
    dev.add_argument(
        "--apply",
        action="append",
        help=f"manifests to apply before the start (default: {' '.join(DEV_SAMPLES)}; with --real-node: "
        f"{' '.join(DEV_SAMPLES_REAL_NODE)})",
    )
    dev.add_argument(
        "--config",
        help=f"the operator's configuration (default: {DEV_CONFIG}; with --real-node: {DEV_CONFIG_REAL_NODE})",
    )
    dev.add_argument(
        "--real-node",
        action="store_true",
        help="run the jobs in real containers: the cluster gets a real node, and the demo shop's image",
    )
    dev.set_defaults(func=cmd_dev)
    return parser


def _dev_cluster_errors() -> tuple[type[Exception], ...]:
    """The development cluster's errors, which a dev command reports in one line; none unless it was loaded."""
    if "commerce_jobs.devcluster" not in sys.modules:
        return ()
    from commerce_jobs.devcluster.cluster import ClusterError
    from commerce_jobs.devcluster.images import ImageBuildError
    from commerce_jobs.devcluster.realnode import RealNodeError
    from commerce_jobs.devcluster.toolchain import ToolchainError

    return (ClusterError, ToolchainError, RealNodeError, ImageBuildError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except _dev_cluster_errors() as e:
        print(f"commerce-jobs: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
