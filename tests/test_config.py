"""Configuration: strict validation that names the file, the key path and the reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from watcher.config import ApiConfig, ConfigError, load_config
from watcher.config.apikey import ApiKeyError, load_api_key


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document) if not isinstance(document, str) else document)
    return path


def problems(tmp_path: Path, document: object, **options: bool) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, document), **options)
    return [str(problem) for problem in caught.value.problems]


def test_defaults_and_inheritance(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    config = load_config(
        write(
            tmp_path,
            {
                "defaults": {"settle_seconds": 0.5, "max_bytes": {"video": "1 GiB"}},
                "folders": [{"path": "a"}, {"path": "b", "settle_seconds": 3, "recursive": False}],
            },
        )
    )
    first, second = config.folders
    assert first.path == tmp_path / "a"
    assert first.settle_seconds == 0.5
    assert first.max_bytes["video"] == 1024**3
    assert first.max_bytes["image"] == 50_000_000
    assert second.settle_seconds == 3.0 and second.recursive is False
    assert config.api.base_url == "https://api.heygen.com"
    assert config.api.upload_protocol == "v1-presigned"
    assert first.types == ("image/jpeg", "image/png", "video/mp4", "audio/mpeg", "audio/wav")


def test_every_problem_is_reported_with_file_and_key(tmp_path: Path):
    found = problems(
        tmp_path,
        {
            "api": {"upload_protocol": "ftp", "colour": "blue", "concurrency": "many"},
            "folders": [
                {"path": "missing"},
                {"path": str(tmp_path), "types": ["image/gif"], "settle_seconds": -1},
                {"path": str(tmp_path), "max_bytes": {"video": "lots"}, "on_reject": "delete"},
            ],
            "extra": 1,
        },
    )
    text = "\n".join(found)
    source = str(tmp_path / "config.yaml")
    assert all(line.startswith(source) for line in found)
    for expected in (
        "api.upload_protocol: must be one of v1-presigned, v1-upload, v3-direct, v3-multipart",
        "api.colour: unknown key",
        "api.concurrency: must be an integer",
        "folders[0].path: folder does not exist",
        "folders[1].types[0]: unsupported type 'image/gif'",
        "folders[1].settle_seconds: must be at least 0",
        "folders[2].max_bytes.video: must be a positive size",
        "folders[2].on_reject: must be one of sidecar, ignore",
        "extra: unknown key",
    ):
        assert expected in text, f"missing: {expected}\n{text}"


def test_plain_http_only_for_loopback(tmp_path: Path):
    assert "plain http:// is only allowed for loopback hosts" in "\n".join(
        problems(tmp_path, {"api": {"base_url": "http://api.example.com"}}, need_folders=False)
    )
    for url in ("http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"):
        config = load_config(write(tmp_path, {"api": {"base_url": url}}), need_folders=False)
        assert config.api.base_url == url


def test_the_key_cannot_be_put_in_the_config(tmp_path: Path):
    text = "\n".join(problems(tmp_path, {"api": {"api_key": "secret"}}, need_folders=False))
    assert "api.api_key: unknown key" in text


def test_overlapping_folders_are_refused(tmp_path: Path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    found = problems(tmp_path, {"folders": [{"path": "a"}, {"path": "a/b"}]})
    assert any("folders[1].path: overlaps folders[0]" in line for line in found)


def test_invalid_yaml_names_the_line(tmp_path: Path):
    found = problems(tmp_path, "api:\n  base_url: [unclosed\n")
    assert "line" in found[0] and "invalid YAML" in found[0]


def test_folders_required_except_for_upload(tmp_path: Path):
    assert any("folders: at least one folder is required" in p for p in problems(tmp_path, {}))
    assert load_config(write(tmp_path, {}), need_folders=False).folders == ()


def test_state_dir_follows_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    config = load_config(write(tmp_path, {}), need_folders=False)
    assert config.state_dir == tmp_path / "state"


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MY_KEY", "k-123")
    key = load_api_key(ApiConfig(api_key_env="MY_KEY"))
    assert key.value == "k-123"
    assert "MY_KEY" in key.origin
    assert "k-123" not in repr(key) + str(key)


def test_missing_key_names_the_variable():
    with pytest.raises(ApiKeyError, match="HEYGEN_API_KEY"):
        load_api_key(ApiConfig())


def test_key_file_must_be_private(tmp_path: Path):
    key_file = tmp_path / "key"
    key_file.write_text("k-secret\n")
    os.chmod(key_file, 0o644)
    with pytest.raises(ApiKeyError, match="too open") as caught:
        load_api_key(ApiConfig(api_key_file=key_file))
    assert "k-secret" not in str(caught.value)
    os.chmod(key_file, 0o600)
    assert load_api_key(ApiConfig(api_key_file=key_file)).value == "k-secret"


def test_systemd_credential_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "heygen_api_key").write_text("from-credential")
    os.chmod(tmp_path / "heygen_api_key", 0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("HEYGEN_API_KEY", "from-env")
    key = load_api_key(ApiConfig())
    assert key.value == "from-credential"
    assert "credential" in key.origin


def test_example_config_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    example = Path(__file__).parent.parent / "config.example.yaml"
    document = yaml.safe_load(example.read_text())
    for index, folder in enumerate(document["folders"]):
        # The example's folders are realistic server paths; point them at temp folders.
        folder["path"] = str(tmp_path / f"drop{index}")
        Path(folder["path"]).mkdir()
        if "sidecar_dir" in folder:
            folder["sidecar_dir"] = str(tmp_path / f"sidecars{index}")
        if isinstance(folder.get("after_upload"), dict):
            folder["after_upload"] = {"move": str(tmp_path / f"done{index}")}
    config = load_config(write(tmp_path, document))
    assert len(config.folders) == len(document["folders"])


# -- types per upload protocol ------------------------------------------------------------------
def test_every_upload_protocol_has_its_types():
    from watcher.config.mediatypes import PROTOCOL_TYPES, SUPPORTED_TYPES
    from watcher.config.model import UPLOAD_PROTOCOLS

    assert set(UPLOAD_PROTOCOLS) <= set(PROTOCOL_TYPES)
    assert "audio/wav" not in PROTOCOL_TYPES["v1-upload"]
    assert "video/webm" in PROTOCOL_TYPES["v1-upload"]
    assert set(SUPPORTED_TYPES) == {t for types in PROTOCOL_TYPES.values() for t in types}


def test_a_type_the_protocol_cannot_take_is_a_warning_not_an_error(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    document = {
        "defaults": {"types": ["image/png", "application/pdf"]},
        "folders": [{"path": "a"}, {"path": "b", "types": ["video/mp4", "video/webm"]}],
    }
    config = load_config(write(tmp_path, document))
    source = str(tmp_path / "config.yaml")
    assert config.warnings == (
        f"{source}: defaults.types: application/pdf cannot be uploaded with "
        "api.upload_protocol v1-presigned (it takes image/jpeg, image/png, video/mp4, "
        "audio/mpeg, audio/wav); such files will be refused",
        f"{source}: folders[1].types: video/webm cannot be uploaded with "
        "api.upload_protocol v1-presigned (it takes image/jpeg, image/png, video/mp4, "
        "audio/mpeg, audio/wav); such files will be refused",
    )
    document["api"] = {"upload_protocol": "v3-direct"}
    assert load_config(write(tmp_path, document)).warnings == ()


def test_the_default_types_warn_about_nothing(tmp_path: Path):
    config = load_config(write(tmp_path, {"folders": [{"path": str(tmp_path)}]}))
    assert config.warnings == ()


def test_the_journal_is_sqlite_by_default_or_a_postgresql_url(tmp_path: Path):
    (tmp_path / "d").mkdir()
    folders = [{"path": str(tmp_path / "d")}]
    default = load_config(write(tmp_path, {"folders": folders}))
    assert default.journal_url is None and default.lease_seconds == 30
    url = "postgresql://heygen@db.internal:5433/heygen_watcher?sslmode=require"
    shared = load_config(write(tmp_path, {"folders": folders, "journal": url, "lease_seconds": 5}))
    assert (shared.journal_url, shared.lease_seconds) == (url, 5)


def test_a_journal_url_with_a_password_is_refused_without_echoing_it(tmp_path: Path):
    (tmp_path / "d").mkdir()
    folders = [{"path": str(tmp_path / "d")}]
    for url in (
        "postgresql://heygen:s3cr3t-pw@db/heygen",
        "postgresql://heygen@db/heygen?password=s3cr3t-pw",
    ):
        (found,) = problems(tmp_path, {"folders": folders, "journal": url})
        assert "journal" in found and "password" in found and "PGPASSFILE" in found
        assert "s3cr3t-pw" not in found
    (found,) = problems(tmp_path, {"folders": folders, "journal": "mysql://db/x"})
    assert "postgresql://" in found
    (found,) = problems(tmp_path, {"folders": folders, "lease_seconds": 0})
    assert "lease_seconds" in found
