"""Where the hash mask's key comes from: ``MESHGATE_MASK_KEY``, ``auth.mask_key_file``, or generated.

A bad key stops the gateway with the file and field (or the variable) named and the key
itself never quoted; a generated key is announced with a WARNING.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from tests.auth.test_cli_auth import DOMAIN, SQL, meshgate
from tests.support.gateway import GatewayProcess, auth_yaml, query

KEY = secrets.token_bytes(32)


def write_mesh(folder: Path, key_file_line: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kinds.csv").write_text("kind,label\n0,zero\n1,one\n")
    mesh = folder / "mesh.yaml"
    mesh.write_text(DOMAIN + auth_yaml() + key_file_line)
    return mesh


def test_a_mask_key_file_is_resolved_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "mask.key").write_text(base64.b64encode(KEY).decode() + "\n")
    config = load_config(write_mesh(tmp_path, "  mask_key_file: secrets/mask.key\n"))
    assert config.auth is not None
    assert config.auth.mask_key_file == (tmp_path / "secrets" / "mask.key").resolve()
    assert KEY.hex() not in repr(config) and base64.b64encode(KEY).decode() not in repr(config)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "'mask.key' does not exist (resolved to "),
        (b"", "the mask key is empty"),
        (secrets.token_hex(16).encode(), "the mask key must be at least 32 bytes, got 16"),
        (b"this is not a key, it is a sentence", "neither hex nor base64"),
    ],
    ids=["missing", "empty", "short", "not-a-key"],  # fixed ids: the short key is random in each xdist worker
)
def test_a_missing_or_bad_mask_key_file_names_the_file_and_field(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "mask.key").write_bytes(content)
    mesh = write_mesh(tmp_path, "  mask_key_file: mask.key\n")
    with pytest.raises(ConfigError) as raised:
        load_config(mesh)
    text = str(raised.value)
    assert text.startswith(f"{mesh}:5: auth.mask_key_file: ") and message in text, text
    if content:
        assert content.decode() not in text
        assert str((tmp_path / "mask.key").resolve()) in text


def test_mask_key_file_must_be_a_string(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mesh.yaml:5: auth.mask_key_file: must be a string, got 42"):
        load_config(write_mesh(tmp_path, "  mask_key_file: 42\n"))


def test_serve_refuses_a_short_mask_key_variable_without_showing_it(tmp_path: Path) -> None:
    mesh = write_mesh(tmp_path)
    short = secrets.token_hex(20)
    result = meshgate("serve", "--config", str(mesh), "--port", "0", env={"MESHGATE_MASK_KEY": short})
    assert result.returncode == 1
    assert "error: MESHGATE_MASK_KEY: the mask key must be at least 32 bytes, got 20" in result.stderr
    assert short not in result.stderr + result.stdout


def test_check_and_checks_run_refuse_a_bad_mask_key_file(tmp_path: Path) -> None:
    (tmp_path / "mask.key").write_text("0123")
    mesh = write_mesh(tmp_path, "  mask_key_file: mask.key\n")
    for command in (("check",), ("checks", "run")):
        result = meshgate(*command, "--config", str(mesh))
        assert result.returncode == 1
        assert f"{mesh}:5: auth.mask_key_file: 'mask.key'" in result.stderr and "got 2" in result.stderr


def test_checks_run_reads_the_mask_key_variable(tmp_path: Path) -> None:
    mesh = write_mesh(tmp_path)
    result = meshgate("checks", "run", "--config", str(mesh), env={"MESHGATE_MASK_KEY": "not a key!"})
    assert result.returncode == 1 and "MESHGATE_MASK_KEY: the mask key is neither hex nor base64" in result.stderr
    assert meshgate("checks", "run", "--config", str(mesh)).returncode == 0  # no key: generated, quietly


def test_a_generated_key_is_announced_and_a_configured_one_is_not(tmp_path: Path) -> None:
    generated = GatewayProcess(write_mesh(tmp_path / "generated"), env={"MESHGATE_MASK_KEY": ""})
    try:
        warnings = [line for line in generated.startup_log if " WARNING " in line]
        assert any(
            "the hash mask uses a key generated at start: hashed values change at every restart" in w for w in warnings
        )
        assert query(generated.uri, SQL, generated.credentials).column("n").to_pylist() == [2]
    finally:
        generated.stop()
    (tmp_path / "configured").mkdir()
    (tmp_path / "configured" / "mask.key").write_text(KEY.hex())
    configured = GatewayProcess(
        write_mesh(tmp_path / "configured", "  mask_key_file: mask.key\n"), env={"MESHGATE_MASK_KEY": ""}
    )
    try:
        assert not any("hash mask uses a key generated" in line for line in configured.startup_log)
        assert KEY.hex() not in "".join(configured.startup_log)
    finally:
        configured.stop()
