"""Where weights come from: parsing source URIs and listing/opening their files (local, S3, GCS)."""

from __future__ import annotations

import base64
import configparser
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlparse

# Where the pod mounts PersistentVolumeClaims named in `pvc://CLAIM/PATH` sources (the operator mounts
# claim CLAIM at PVC_MOUNT_ROOT/CLAIM). Overridable with TESSERA_PVC_ROOT or --pvc-root.
PVC_MOUNT_ROOT = "/mnt/pvc"
SCHEMES = ("file", "pvc", "pkg", "hf", "s3", "gs")


class FetchError(Exception):
    """The source cannot be fetched (bad URI, missing files, failed verification, ...)."""


@dataclass(frozen=True)
class SourceFile:
    """One file of a source: its path relative to the source root, size, and MD5 when the store knows it."""

    relpath: str
    size: int
    md5: str | None = None


class Source(Protocol):
    """A listable, seekable set of files."""

    def list_files(self) -> list[SourceFile]: ...

    def open_at(self, relpath: str, offset: int) -> Any: ...


@dataclass(frozen=True)
class ParsedUri:
    """A source URI split into scheme, bucket/host (or HF repo owner) and path."""

    scheme: str
    netloc: str
    path: str
    raw: str


def parse_uri(uri: str) -> ParsedUri:
    """Parse and check a source URI."""
    parsed = urlparse(uri)
    if parsed.scheme not in SCHEMES:
        raise FetchError(
            f"unsupported source {uri!r}: the scheme must be one of {', '.join(s + '://' for s in SCHEMES)}"
        )
    if parsed.scheme != "file" and not parsed.netloc:
        raise FetchError(f"source {uri!r} has no bucket, claim or repository")
    path = parsed.path if parsed.scheme == "file" else parsed.path.lstrip("/")
    return ParsedUri(parsed.scheme, parsed.netloc, path, uri)


class LocalSource:
    """A file or directory on a mounted filesystem (file:// and pvc://)."""

    def __init__(self, root: Path) -> None:
        if not root.exists():
            raise FetchError(f"source path {root} does not exist")
        self.root = root

    def list_files(self) -> list[SourceFile]:
        if self.root.is_file():
            return [SourceFile(self.root.name, self.root.stat().st_size)]
        files = [
            SourceFile(path.relative_to(self.root).as_posix(), path.stat().st_size)
            for path in sorted(self.root.rglob("*"))
            if path.is_file()
        ]
        if not files:
            raise FetchError(f"source directory {self.root} is empty")
        return files

    @contextmanager
    def open_at(self, relpath: str, offset: int) -> Iterator[IO[bytes]]:
        path = self.root if self.root.is_file() else self.root / relpath
        with path.open("rb") as handle:
            handle.seek(offset)
            yield handle


def package_path(uri: ParsedUri) -> Path:
    """The file of a pkg://python_package/relative/path source: weights shipped inside an installed
    Python package (tests, offline demos, edge images), found where the package is installed."""
    import importlib.util

    spec = importlib.util.find_spec(uri.netloc)
    if spec is None or not spec.submodule_search_locations:
        raise FetchError(f"source {uri.raw!r}: no installed Python package named {uri.netloc!r}")
    return Path(next(iter(spec.submodule_search_locations))) / uri.path


def local_path(uri: ParsedUri, pvc_root: str | None = None) -> Path:
    """The filesystem path of a file://, pvc:// or pkg:// source."""
    if uri.scheme == "pkg":
        return package_path(uri)
    if uri.scheme == "file":
        # file:///abs/path is absolute; file://rel/path (a netloc) is relative to the working directory.
        return Path(uri.netloc + uri.path) if uri.netloc else Path(uri.path)
    root = pvc_root or os.environ.get("TESSERA_PVC_ROOT") or PVC_MOUNT_ROOT
    return Path(root) / uri.netloc / uri.path


def _etag_md5(info: dict[str, Any]) -> str | None:
    """The MD5 of an object when the store exposes it: a plain S3 ETag (not multipart) or GCS md5Hash."""
    etag = info.get("ETag") or info.get("etag")
    if isinstance(etag, str):
        etag = etag.strip('"')
        if len(etag) == 32 and "-" not in etag:
            return etag.lower()
    md5_b64 = info.get("md5Hash")
    if isinstance(md5_b64, str):
        return base64.b64decode(md5_b64).hex()
    return None


def _s3_credentials(path: Path) -> dict[str, str]:
    """Keys from a JSON file ({accessKeyId, secretAccessKey, sessionToken}) or an AWS credentials INI file."""
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        parser = configparser.ConfigParser()
        try:
            parser.read_string(text)
            section = parser["default"] if parser.has_section("default") else parser[parser.sections()[0]]
        except (configparser.Error, IndexError):
            # The parser's errors quote the offending line, which is the secret itself: never repeat it.
            raise FetchError(f"the credentials file {path} is neither JSON ({{accessKeyId, secretAccessKey, "
                             "sessionToken}) nor an AWS credentials file with a section") from None
        data = {
            "accessKeyId": section.get("aws_access_key_id"),
            "secretAccessKey": section.get("aws_secret_access_key"),
            "sessionToken": section.get("aws_session_token"),
        }
    if not isinstance(data, dict):
        raise FetchError(f"the credentials file {path} holds JSON that is not an object")
    creds = {
        "key": data.get("accessKeyId"),
        "secret": data.get("secretAccessKey"),
        "token": data.get("sessionToken"),
    }
    return {k: v for k, v in creds.items() if v}


class S3Source:
    """An S3 prefix or object (boto3); the endpoint comes from AWS_ENDPOINT_URL(_S3) for S3-compatible stores."""

    def __init__(self, uri: ParsedUri, credentials_file: Path | None) -> None:
        import boto3

        options: dict[str, Any] = {}
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            options["endpoint_url"] = endpoint
        if credentials_file is not None:
            creds = _s3_credentials(credentials_file)
            options.update(
                aws_access_key_id=creds.get("key"),
                aws_secret_access_key=creds.get("secret"),
                aws_session_token=creds.get("token"),
            )
        self.client = boto3.client("s3", **options)
        self.bucket = uri.netloc
        self.key = uri.path
        self._single = False

    def list_files(self) -> list[SourceFile]:
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]

        if self.key and not self.key.endswith("/"):
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=self.key)
            except ClientError:
                head = None
            if head is not None:
                self._single = True
                name = self.key.rsplit("/", 1)[-1]
                return [SourceFile(name, int(head["ContentLength"]), _etag_md5({"ETag": head.get("ETag")}))]
        prefix = self.key.rstrip("/") + "/" if self.key else ""
        files: list[SourceFile] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = str(item["Key"])
                if key.endswith("/"):
                    continue
                files.append(
                    SourceFile(key[len(prefix) :], int(item["Size"]), _etag_md5({"ETag": item.get("ETag")}))
                )
        if not files:
            raise FetchError(f"nothing found at s3://{self.bucket}/{prefix}")
        return sorted(files, key=lambda f: f.relpath)

    @contextmanager
    def open_at(self, relpath: str, offset: int) -> Iterator[Any]:
        key = self.key if self._single else (self.key.rstrip("/") + "/" if self.key else "") + relpath
        response = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={offset}-")
        body = response["Body"]
        try:
            yield body
        finally:
            body.close()


class GcsSource:
    """A gs:// prefix or object through fsspec (needs the `gcsfs` driver in the image)."""

    def __init__(self, uri: ParsedUri, credentials_file: Path | None) -> None:
        try:
            import fsspec

            options: dict[str, Any] = {"token": str(credentials_file)} if credentials_file is not None else {}
            self.fs = fsspec.filesystem("gs", **options)
        except ImportError as exc:
            raise FetchError(f"gs:// needs the `gcsfs` package, which this image lacks: {exc}") from exc
        self.root = f"{uri.netloc}/{uri.path}".rstrip("/")
        self._single = False

    def list_files(self) -> list[SourceFile]:
        found = self.fs.find(self.root, detail=True)
        if not found:
            try:
                info = self.fs.info(self.root)
            except FileNotFoundError as exc:
                raise FetchError(f"nothing found at gs://{self.root}") from exc
            self._single = True
            return [SourceFile(self.root.rsplit("/", 1)[-1], int(info["size"]), _etag_md5(info))]
        return [
            SourceFile(key[len(self.root) :].lstrip("/"), int(info["size"]), _etag_md5(info))
            for key, info in sorted(found.items())
            if info.get("type", "file") == "file"
        ]

    def open_at(self, relpath: str, offset: int) -> Any:
        path = self.root if self._single else f"{self.root}/{relpath}"
        handle = self.fs.open(path, "rb", block_size=8 * 1024 * 1024)
        handle.seek(offset)
        return handle
