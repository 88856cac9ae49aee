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


@dataclass(frozen=True)
class Pki:
    directory: Path

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
        """Creates everything once; an existing directory is reused, so a restarted cluster keeps its tokens."""
        if self.token_file.exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        _openssl("genrsa", "-out", self.ca_key, "2048")
        _openssl(
            "req", "-x509", "-new", "-key", self.ca_key, "-out", self.ca_cert, "-days", "3650",
            "-subj", "/CN=commerce-jobs-dev-ca",
        )  # fmt: skip
        _openssl("genrsa", "-out", self.serving_key, "2048")
        csr = self.directory / "apiserver.csr"
        _openssl("req", "-new", "-key", self.serving_key, "-out", csr, "-subj", "/CN=kube-apiserver")
        ext = self.directory / "apiserver.ext"
        ext.write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
            "extendedKeyUsage=serverAuth\n"
        )
        _openssl(
            "x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key, "-CAcreateserial",
            "-out", self.serving_cert, "-days", "3650", "-extfile", ext,
        )  # fmt: skip
        _openssl("genrsa", "-out", self.sa_key, "2048")
        _openssl("rsa", "-in", self.sa_key, "-pubout", "-out", self.sa_pub)
        lines = []
        for uid, (name, group) in TOKEN_USERS.items():
            line = f"{secrets.token_hex(24)},{name},{uid}"
            lines.append(f'{line},"{group}"' if group else line)
        self.token_file.write_text("\n".join(lines) + "\n")
        self.token_file.chmod(0o600)


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
