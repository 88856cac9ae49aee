"""Keys, certificates and tokens of a local control plane, made with the openssl command line."""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Users of the static token file. The controller manager and the scheduler get the identities that the
# apiserver's bootstrap RBAC policy grants their rights to, so RBAC is exercised as in a real cluster.
TOKEN_USERS = {
    "admin": ("admin", "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", ""),
    "kube-scheduler": ("system:kube-scheduler", ""),
    # A member of the group of the example roles (manifests/examples/rbac/shop-operator.yaml), with a bearer token:
    # the jobs console signs people in by token, so this is how a test (or you) uses it as a shop operator.
    "shop-operator": ("shop-operator", "shop-operators"),
}
APISERVER_DNS_NAMES = (
    "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
)  # fmt: skip
# The apiserver's client identity towards kubelets (pods/log, exec): bound to the bootstrap role
# system:kubelet-api-admin by the cluster, not a member of system:masters.
KUBELET_CLIENT = "apiserver-kubelet-client"
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"


def certificate_extensions(usage: str, ips: tuple[str, ...] = (), dns_names: tuple[str, ...] = ()) -> str:
    """The openssl extension file of a leaf certificate: ``usage`` is serverAuth or clientAuth."""
    lines = []
    names = [f"IP:{ip}" for ip in ips] + [f"DNS:{name}" for name in dns_names]
    if names:
        lines.append("subjectAltName=" + ",".join(names))
    lines += ["keyUsage=critical,digitalSignature,keyEncipherment", f"extendedKeyUsage={usage}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Pki:
    directory: Path
    # The addresses that the apiserver's serving certificate names: loopback, and for the real node's pods the
    # `kubernetes` Service's cluster IP and the address the apiserver then binds.
    apiserver_ips: tuple[str, ...] = ("127.0.0.1",)

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def kubelet_client_cert(self) -> Path:
        return self.directory / f"{KUBELET_CLIENT}.crt"

    @property
    def kubelet_client_key(self) -> Path:
        return self.directory / f"{KUBELET_CLIENT}.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"

    @property
    def token_file(self) -> Path:
        return self.directory / "tokens.csv"

    def token(self, user: str) -> str:
        for line in self.token_file.read_text().splitlines():
            token, _, uid, *_ = line.split(",")
            if uid == user:
                return token
        raise KeyError(user)

    def create(self) -> None:
        """Creates what is missing; what exists is reused, so a restarted cluster keeps its CA and tokens. A
        certificate whose names changed (an older cluster directory) is issued again with its key and the same CA;
        a running apiserver reloads it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        if not self.ca_cert.exists():
            _openssl("genrsa", "-out", self.ca_key, "2048")
            _openssl(
                "req", "-x509", "-new", "-key", self.ca_key, "-out", self.ca_cert, "-days", "3650",
                "-subj", "/CN=commerce-jobs-dev-ca",
            )  # fmt: skip
        self.issue("apiserver", "/CN=kube-apiserver", "serverAuth", ips=self.apiserver_ips, dns=APISERVER_DNS_NAMES)
        self.issue(KUBELET_CLIENT, f"/CN={KUBELET_CLIENT_USER}", "clientAuth")
        if not self.sa_pub.exists():
            _openssl("genrsa", "-out", self.sa_key, "2048")
            _openssl("rsa", "-in", self.sa_key, "-pubout", "-out", self.sa_pub)
        if not self.token_file.exists():
            lines = []
            for uid, (name, group) in TOKEN_USERS.items():
                line = f"{secrets.token_hex(24)},{name},{uid}"
                lines.append(f'{line},"{group}"' if group else line)
            self.token_file.write_text("\n".join(lines) + "\n")
            self.token_file.chmod(0o600)

    def issue(
        self, name: str, subject: str, usage: str, ips: tuple[str, ...] = (), dns: tuple[str, ...] = ()
    ) -> tuple[Path, Path]:
        """``name``.crt and ``name``.key, signed by the CA; issued once, and again only when its extensions change.

        ``subject`` is openssl's form, e.g. ``/O=system:nodes/CN=system:node:real-node-0`` (the group and the user
        of a client certificate)."""
        cert, key, ext = (self.directory / f"{name}.{suffix}" for suffix in ("crt", "key", "ext"))
        wanted = f"# subject {subject}\n" + certificate_extensions(usage, ips, dns)
        if cert.exists() and ext.exists() and ext.read_text() == wanted:
            return cert, key
        if not key.exists():
            # ECDSA P-256: as strong as RSA 3072, and made in milliseconds where an RSA key takes a second on a busy
            # machine (a cluster with a real node has six of them).
            _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
        ext.write_text(wanted)
        csr = self.directory / f"{name}.csr"
        _openssl("req", "-new", "-key", key, "-out", csr, "-subj", subject)
        tmp = cert.with_suffix(".crt.tmp")
        _openssl(
            "x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key, "-CAcreateserial",
            "-out", tmp, "-days", "3650", "-extfile", ext,
        )  # fmt: skip
        tmp.replace(cert)  # atomically: the apiserver reloads its serving certificate when the file changes
        return cert, key


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
