"""The security policy of the `meshgate` command, as a user meets it.

``serve --config`` needs users, ``--no-auth`` only goes with ``--demo`` (and says so),
``user hash`` makes the config line, and ``query`` logs in and speaks TLS.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gateway.auth import Authenticator
from gateway.config import load_config
from tests.support.gateway import TEST_CREDENTIALS, Credentials, GatewayProcess, auth_yaml, query
from tests.support.tls import CertificateAuthority

SQL = "SELECT count(*) AS n FROM ref.kinds"
DOMAIN = "domains:\n  - name: ref\n    connector: {type: csv, path: kinds.csv}\n"


def meshgate(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MESHGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        input=stdin if stdin is not None else "",
        env={**clean, **(env or {})},
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-auth")
    (folder / "kinds.csv").write_text("kind,label\n0,zero\n1,one\n2,two\n")
    (folder / "open.yaml").write_text(DOMAIN)
    (folder / "mesh.yaml").write_text(DOMAIN + auth_yaml())
    return folder


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority()


@pytest.fixture(scope="module")
def certs(folder: Path, ca: CertificateAuthority) -> dict[str, str]:
    server_cert, server_key = ca.server().write(folder, "server")
    client_cert, client_key = ca.client("analyst").write(folder, "client")
    (folder / "ca.crt").write_bytes(ca.cert_pem)
    return {
        "ca": str(folder / "ca.crt"),
        "server_cert": str(server_cert),
        "server_key": str(server_key),
        "client_cert": str(client_cert),
        "client_key": str(client_key),
    }


# -- serve refuses to run unprotected --------------------------------------------------------


def test_serve_refuses_a_config_without_users(folder: Path) -> None:
    result = meshgate("serve", "--config", str(folder / "open.yaml"), "--port", "0")
    assert result.returncode == 1
    assert f"error: {folder / 'open.yaml'}: no users configured, and authentication is required" in result.stderr
    assert "meshgate user hash NAME" in result.stderr


def test_no_auth_is_only_for_the_demo(folder: Path) -> None:
    result = meshgate("serve", "--config", str(folder / "open.yaml"), "--no-auth", "--port", "0")
    assert result.returncode == 1
    assert "--no-auth is only allowed with --demo" in result.stderr


def test_the_demo_without_auth_says_so_loudly(tmp_path: Path) -> None:
    process = GatewayProcess.demo(tmp_path, extra=("--no-auth",))
    try:
        warnings = [line for line in process.startup_log if " WARNING " in line]
        assert any("AUTHENTICATION IS OFF (--no-auth)" in line for line in warnings), process.startup_log
        assert any("only for the demo" in line for line in warnings)
        assert process.credentials is None
        assert query(process.uri, "SELECT count(*) AS n FROM sales.customers").column("n").to_pylist() == [300]
    finally:
        process.stop()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--tls-cert", "server.crt"), "--tls-cert and --tls-key go together"),
        (("--tls-client-ca", "ca.crt"), "--tls-client-ca needs --tls-cert and --tls-key"),
        (("--tls-cert", "kinds.csv", "--tls-key", "server.key"), "kinds.csv is not a PEM file"),
        (("--tls-cert", "client.crt", "--tls-key", "server.key"), "not a certificate and its key"),
        (("--tls-cert", "server.crt", "--tls-key", "server.key", "--tls-client-ca", "server.key"), "holds no CA"),
        (("--tls-cert", "nope.crt", "--tls-key", "server.key"), "--tls-cert: cannot read"),
    ],
)
def test_tls_files_are_checked_before_serving(
    folder: Path, certs: dict[str, str], flags: tuple[str, ...], message: str
) -> None:
    paths = [str(folder / flag) if not flag.startswith("--") else flag for flag in flags]
    result = meshgate("serve", "--config", str(folder / "mesh.yaml"), *paths, "--port", "0")
    assert result.returncode == 1 and message in result.stderr, result.stderr


def test_a_short_token_key_is_refused(folder: Path) -> None:
    result = meshgate("serve", "--config", str(folder / "mesh.yaml"), env={"MESHGATE_TOKEN_KEY": "too short"})
    assert result.returncode == 1
    assert "MESHGATE_TOKEN_KEY: the token signing key must be at least 32 bytes, got 9" in result.stderr


# -- user hash ---------------------------------------------------------------------------------


def test_user_hash_prints_an_entry_that_logs_in(tmp_path: Path) -> None:
    result = meshgate("user", "hash", "erin", stdin="s3cret with spaces\n")
    assert result.returncode == 0, result.stderr
    assert "s3cret" not in result.stdout
    entries = yaml.safe_load(result.stdout)
    assert [entry["name"] for entry in entries] == ["erin"]
    assert entries[0]["password_hash"].startswith("$argon2id$")
    (tmp_path / "kinds.csv").write_text("kind\n0\n")
    indented = "".join(f"    {line}\n" for line in result.stdout.splitlines())
    (tmp_path / "mesh.yaml").write_text(DOMAIN + "auth:\n  users:\n" + indented)
    config = load_config(tmp_path / "mesh.yaml")
    assert config.auth is not None
    _, identity = Authenticator(config.auth.users).login("erin", "s3cret with spaces")
    assert identity.user == "erin"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [(("erin",), "\n", "the password is empty"), (("er:in",), "x\n", "'er:in' is not a valid user name")],
)
def test_user_hash_refuses(args: tuple[str, ...], stdin: str, message: str) -> None:
    result = meshgate("user", "hash", *args, stdin=stdin)
    assert result.returncode == 1 and message in result.stderr


# -- serve and query over TLS, with users -----------------------------------------------------


@pytest.fixture(scope="module")
def tls_gateway(folder: Path, certs: dict[str, str]) -> Iterator[GatewayProcess]:
    process = GatewayProcess(
        folder / "mesh.yaml", extra=("--tls-cert", certs["server_cert"], "--tls-key", certs["server_key"])
    )
    yield process
    process.stop()


def tls_query(
    gateway: GatewayProcess, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return meshgate("query", "--server", gateway.uri, *args, SQL, env=env)


def test_serve_with_tls_logs_a_grpc_tls_uri(tls_gateway: GatewayProcess) -> None:
    assert tls_gateway.uri.startswith("grpc+tls://127.0.0.1:")
    assert any("authentication required: 1 user;" in line for line in tls_gateway.startup_log)


def test_query_logs_in_over_tls(tls_gateway: GatewayProcess, certs: dict[str, str]) -> None:
    by_env = tls_query(tls_gateway, "--tls-ca", certs["ca"], "--format", "csv", env=TEST_CREDENTIALS.env())
    assert by_env.returncode == 0, by_env.stderr
    assert by_env.stdout.splitlines() == ['"n"', "3"]
    by_flags = tls_query(
        tls_gateway, "--tls-ca", certs["ca"], "--user", TEST_CREDENTIALS.user, "--password", TEST_CREDENTIALS.password
    )
    assert by_flags.returncode == 0, by_flags.stderr


def test_query_negative_cases(tls_gateway: GatewayProcess, certs: dict[str, str]) -> None:
    untrusted = tls_query(tls_gateway, env=TEST_CREDENTIALS.env())
    assert untrusted.returncode == 1 and "certificate signed by unknown authority" in untrusted.stderr
    wrong = tls_query(tls_gateway, "--tls-ca", certs["ca"], env=Credentials(TEST_CREDENTIALS.user, "nope").env())
    assert wrong.returncode == 1
    assert wrong.stderr.startswith("error: [Meshgate] invalid user name or password"), wrong.stderr
    anonymous = tls_query(tls_gateway, "--tls-ca", certs["ca"])
    assert anonymous.returncode == 1
    assert "[Meshgate] authentication required: connect with a user name and password" in anonymous.stderr
    no_password = tls_query(tls_gateway, "--tls-ca", certs["ca"], "--user", "tester")
    assert no_password.returncode == 2 and "--user needs a password" in no_password.stderr
    plain_uri = meshgate("query", "--server", "grpc://127.0.0.1:1", "--tls-ca", certs["ca"], SQL)
    assert plain_uri.returncode == 2 and "TLS options need a grpc+tls:// server" in plain_uri.stderr


def test_mutual_tls_through_the_cli(folder: Path, certs: dict[str, str]) -> None:
    process = GatewayProcess(
        folder / "mesh.yaml",
        extra=(
            "--tls-cert",
            certs["server_cert"],
            "--tls-key",
            certs["server_key"],
            "--tls-client-ca",
            certs["ca"],
        ),
    )
    try:
        env = TEST_CREDENTIALS.env()
        with_cert = tls_query(
            process,
            "--tls-ca",
            certs["ca"],
            "--tls-cert",
            certs["client_cert"],
            "--tls-key",
            certs["client_key"],
            env=env,
        )
        assert with_cert.returncode == 0, with_cert.stderr
        without = tls_query(process, "--tls-ca", certs["ca"], env=env)
        # The server ends the TLS handshake; the client sees a dropped connection.
        assert without.returncode == 1 and without.stderr.startswith("error: "), without.stderr
        assert "(Unavailable; " in without.stderr and "Traceback" not in without.stderr
    finally:
        process.stop()
