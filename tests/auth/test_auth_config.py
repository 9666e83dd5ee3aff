"""The ``auth:`` section of the mesh config: users inline or in a users file, precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.auth import DEFAULT_TOKEN_TTL_SECONDS, hash_password
from gateway.config import load_config
from gateway.errors import ConfigError

HASH = hash_password("secret")
DOMAIN = "domains:\n  - name: ref\n    connector: {type: csv, path: kinds.csv}\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "kinds.csv").write_text("kind,label\n0,zero\n")
    return tmp_path


def write(folder: Path, text: str, name: str = "mesh.yaml") -> Path:
    (folder / name).write_text(text)
    return folder / name


def test_no_auth_section_means_no_users(folder: Path) -> None:
    assert load_config(write(folder, DOMAIN)).auth is None


def test_inline_users_with_groups_and_attributes(folder: Path) -> None:
    config = load_config(
        write(
            folder,
            DOMAIN + "auth:\n  token_ttl_seconds: 900\n  users:\n"
            f"    - name: alice@example.com\n      password_hash: '{HASH}'\n"
            "      groups: [analysts, sales]\n      attributes: {region: eu, cost_center: '42'}\n"
            f"    - {{name: bob, password_hash: '{HASH}'}}\n",
        )
    )
    assert config.auth is not None
    alice, bob = config.auth.users
    assert (alice.name, alice.groups, dict(alice.attributes)) == (
        "alice@example.com",
        ("analysts", "sales"),
        {"region": "eu", "cost_center": "42"},
    )
    assert (bob.name, bob.groups, dict(bob.attributes)) == ("bob", (), {})
    assert config.auth.token_ttl_seconds == 900 and config.auth.token_key_file is None
    assert config.auth.file == folder / "mesh.yaml"


def test_users_file_and_token_key_file_are_relative_to_the_config(folder: Path) -> None:
    (folder / "secrets").mkdir()
    write(folder, f"users:\n  - name: carol\n    password_hash: '{HASH}'\n", "secrets/users.yaml")
    write(folder, "x" * 40, "secrets/token.key")
    config = load_config(
        write(folder, DOMAIN + "auth: {users_file: secrets/users.yaml, token_key_file: secrets/token.key}\n")
    )
    assert config.auth is not None
    assert [user.name for user in config.auth.users] == ["carol"]
    assert config.auth.token_key_file == (folder / "secrets/token.key").resolve()
    assert config.auth.token_ttl_seconds == DEFAULT_TOKEN_TTL_SECONDS


def test_a_directory_config_can_keep_users_in_a_file_of_their_own(folder: Path) -> None:
    mesh = folder / "mesh"
    mesh.mkdir()
    (mesh / "kinds.csv").write_text("kind,label\n0,zero\n")
    write(mesh, DOMAIN, "ref.yaml")
    write(mesh, f"auth:\n  users:\n    - {{name: dave, password_hash: '{HASH}'}}\n", "auth.yaml")
    config = load_config(mesh)
    assert [d.name for d in config.domains] == ["ref"]
    assert config.auth is not None and [u.name for u in config.auth.users] == ["dave"]


def test_auth_declared_twice_in_a_directory(folder: Path) -> None:
    mesh = folder / "mesh"
    mesh.mkdir()
    (mesh / "kinds.csv").write_text("kind,label\n0,zero\n")
    users = f"auth:\n  users:\n    - {{name: dave, password_hash: '{HASH}'}}\n"
    write(mesh, DOMAIN + users, "a.yaml")
    write(mesh, users, "b.yaml")
    with pytest.raises(ConfigError, match=r"b\.yaml: auth: already declared in .*a\.yaml"):
        load_config(mesh)


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        (
            "auth:\n  users:\n    - name: alice\n      password_hash: secret\n",
            "mesh.yaml:6: auth.users.alice.password_hash: is not an argon2id hash (make one with `meshgate user hash"
            " NAME`; plain-text passwords are refused)",
        ),
        (
            "auth:\n  users:\n    - name: alice\n      password: secret\n",
            "mesh.yaml:6: auth.users.alice.password: plain-text passwords are refused: replace it with the"
            " password_hash that `meshgate user hash alice` prints",
        ),
        (
            "auth:\n  users:\n    - name: alice\n",
            "mesh.yaml:6: auth.users.alice.password_hash: missing",
        ),
        (
            f"auth:\n  users:\n    - {{name: 'al:ice', password_hash: '{HASH}'}}\n",
            "mesh.yaml:6: auth.users[0].name: 'al:ice' is not a valid user name",
        ),
        (
            f"auth:\n  users:\n    - {{name: a, password_hash: '{HASH}'}}\n    - {{name: a, password_hash: '{HASH}'}}\n",
            "mesh.yaml:5: auth.users: user 'a' is declared twice",
        ),
        ("auth:\n  token_ttl_seconds: 60\n", "mesh.yaml:5: auth: declares no users"),
        ("auth: [alice]\n", "mesh.yaml:1: auth: must be a mapping"),
        (
            f"auth:\n  users: [{{name: a, password_hash: '{HASH}'}}]\n  token_ttl_seconds: 0\n",
            "mesh.yaml:5: auth.token_ttl_seconds: must be a positive whole number of seconds, got 0",
        ),
        (
            f"auth:\n  users: [{{name: a, password_hash: '{HASH}', role: admin}}]\n",
            "mesh.yaml:5: auth.users.a.role: unknown key; expected one of attributes, groups, name, password_hash",
        ),
        (
            f"auth:\n  users: [{{name: a, password_hash: '{HASH}'}}]\n  tokens: 60\n",
            "mesh.yaml:5: auth.tokens: unknown key; expected one of mask_key_file, token_key_file, token_ttl_seconds,"
            " users, users_file",
        ),
        (
            f"auth:\n  users: [{{name: a, password_hash: '{HASH}', groups: ['a,b']}}]\n",
            "auth.users.a.groups: group names must be non-empty strings without ','",
        ),
        (
            f"auth:\n  users: [{{name: a, password_hash: '{HASH}', attributes: {{groups: x}}}}]\n",
            "auth.users.a.attributes.groups: reserved: the gateway sets 'groups' itself",
        ),
        (
            f"auth:\n  users: [{{name: a, password_hash: '{HASH}', attributes: {{level: 3}}}}]\n",
            "auth.users.a.attributes.level: must be a string (quote numbers and booleans), got 3",
        ),
        ("auth: {users_file: nope.yaml}\n", "mesh.yaml:4: auth.users_file: 'nope.yaml' does not exist"),
        (
            f"auth:\n  users: [{{name: a, password_hash: '{HASH}'}}]\n  token_key_file: nope.key\n",
            "mesh.yaml:5: auth.token_key_file: 'nope.key' does not exist",
        ),
    ],
)
def test_errors_name_the_file_line_and_field(folder: Path, auth: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(write(folder, DOMAIN + auth))
    assert message in str(error.value)
    assert str(error.value).startswith(str(folder / "mesh.yaml"))


def test_errors_in_a_users_file_name_that_file(folder: Path) -> None:
    write(folder, "users:\n  - name: alice\n    password_hash: plain\n", "users.yaml")
    with pytest.raises(ConfigError) as error:
        load_config(write(folder, DOMAIN + "auth: {users_file: users.yaml}\n"))
    assert str(error.value).startswith(f"{folder / 'users.yaml'}:2: users.alice.password_hash: is not an argon2id hash")
    write(folder, "people: []\n", "users.yaml")
    with pytest.raises(ConfigError, match=r"users\.yaml:1: people: unknown key; expected one of users"):
        load_config(folder / "mesh.yaml")
