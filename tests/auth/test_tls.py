"""TLS and mutual TLS through the ADBC Flight SQL driver, with certificates made for the test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from adbc_driver_flightsql import DatabaseOptions
from adbc_driver_manager import Error as AdbcError

from gateway.auth import Authenticator, User, hash_password
from gateway.config import load_config
from gateway.engine import Engine
from gateway.flightsql.server import FlightSqlServer
from tests.support.gateway import Credentials, connect, query
from tests.support.tls import CertificateAuthority, Pem

ALICE = Credentials("alice", "wonderland")
SQL = "SELECT count(*) AS n FROM ref.kinds"
TRUST = DatabaseOptions.TLS_ROOT_CERTS.value
CLIENT_CERT, CLIENT_KEY = DatabaseOptions.MTLS_CERT_CHAIN.value, DatabaseOptions.MTLS_PRIVATE_KEY.value


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority()


@pytest.fixture(scope="module")
def other_ca() -> CertificateAuthority:
    return CertificateAuthority("Someone else's CA")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    folder = tmp_path_factory.mktemp("tls-mesh")
    (folder / "kinds.csv").write_text("kind,label\n0,zero\n1,one\n")
    (folder / "mesh.yaml").write_text("domains:\n  - name: ref\n    connector: {type: csv, path: kinds.csv}\n")
    engine = Engine.from_config(load_config(folder / "mesh.yaml"))
    yield engine
    engine.catalog.close()


@pytest.fixture(scope="module")
def authenticator() -> Authenticator:
    return Authenticator([User(ALICE.user, hash_password(ALICE.password))])


def serve(engine: Engine, authenticator: Authenticator, server: Pem, **options: Any) -> Iterator[str]:
    flight_server = FlightSqlServer(
        engine,
        "grpc+tls://127.0.0.1:0",
        authenticator=authenticator,
        tls_certificates=[(server.cert, server.key)],
        **options,
    )
    thread = threading.Thread(target=flight_server.serve, daemon=True)
    thread.start()
    yield f"grpc+tls://127.0.0.1:{flight_server.port}"
    flight_server.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def tls_uri(engine: Engine, authenticator: Authenticator, ca: CertificateAuthority) -> Iterator[str]:
    yield from serve(engine, authenticator, ca.server())


@pytest.fixture(scope="module")
def mtls_uri(engine: Engine, authenticator: Authenticator, ca: CertificateAuthority) -> Iterator[str]:
    yield from serve(engine, authenticator, ca.server(), verify_client=True, root_certificates=ca.cert_pem)


def run(uri: str, **options: str) -> list[dict[str, Any]]:
    with connect(uri, ALICE, **options) as connection, connection.cursor() as cursor:
        cursor.execute(SQL)
        rows: list[dict[str, Any]] = cursor.fetch_arrow_table().to_pylist()
        return rows


def test_a_client_that_trusts_the_ca_connects_and_logs_in(tls_uri: str, ca: CertificateAuthority) -> None:
    assert run(tls_uri, **{TRUST: ca.cert_pem.decode()}) == [{"n": 2}]


def test_a_client_that_does_not_trust_the_server_fails(tls_uri: str, other_ca: CertificateAuthority) -> None:
    with pytest.raises(AdbcError, match="certificate signed by unknown authority") as system_roots:
        run(tls_uri)  # the system's trust store knows nothing of the test CA
    assert "(Unavailable; " in str(system_roots.value)
    with pytest.raises(AdbcError, match="certificate signed by unknown authority"):
        run(tls_uri, **{TRUST: other_ca.cert_pem.decode()})


def test_a_plain_text_client_cannot_talk_to_a_tls_server(tls_uri: str) -> None:
    with pytest.raises(AdbcError, match=r"\(Unavailable; "):
        query(tls_uri.replace("grpc+tls://", "grpc://"), SQL, ALICE)


def test_the_server_certificate_must_name_the_host(
    engine: Engine, authenticator: Authenticator, ca: CertificateAuthority
) -> None:
    for uri in serve(engine, authenticator, ca.server(hosts=("gateway.example.com",))):
        with pytest.raises(AdbcError, match=r"cannot validate certificate for 127\.0\.0\.1"):
            run(uri, **{TRUST: ca.cert_pem.decode()})


def test_mutual_tls_accepts_a_client_certificate_from_the_client_ca(mtls_uri: str, ca: CertificateAuthority) -> None:
    client = ca.client("alice-laptop")
    options = {TRUST: ca.cert_pem.decode(), CLIENT_CERT: client.cert.decode(), CLIENT_KEY: client.key.decode()}
    assert run(mtls_uri, **options) == [{"n": 2}]


def test_mutual_tls_rejects_a_client_without_a_certificate(mtls_uri: str, ca: CertificateAuthority) -> None:
    with pytest.raises(AdbcError, match=r"\(Unavailable; "):
        run(mtls_uri, **{TRUST: ca.cert_pem.decode()})


def test_mutual_tls_rejects_a_client_certificate_from_another_ca(
    mtls_uri: str, ca: CertificateAuthority, other_ca: CertificateAuthority
) -> None:
    stranger = other_ca.client("stranger")
    options = {TRUST: ca.cert_pem.decode(), CLIENT_CERT: stranger.cert.decode(), CLIENT_KEY: stranger.key.decode()}
    with pytest.raises(AdbcError, match=r"\(Unavailable; "):
        run(mtls_uri, **options)


def test_tls_does_not_replace_the_password(tls_uri: str, ca: CertificateAuthority) -> None:
    connection = connect(tls_uri, None, **{TRUST: ca.cert_pem.decode()})
    try:
        with pytest.raises(AdbcError, match="UNAUTHENTICATED"), connection.cursor() as cursor:
            cursor.execute(SQL)
    finally:
        connection.close()


def test_the_certificates_are_what_they_claim(ca: CertificateAuthority, tmp_path: Path) -> None:
    import ssl

    cert, key = ca.server().write(tmp_path, "server")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)  # a matching pair
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    context.load_verify_locations(tmp_path / "ca.crt")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
