"""VESSL Storage volumes through the SDK's volume-v2 federation (the SDK moves the bytes; we never import boto3).

`VolumeRef.parse("volume://<storage>/<volume>[/prefix]")`. `VolumeStore` lists, uploads and downloads single
files under a ref's prefix; each operation asks VESSL for fresh federation credentials
(`POST .../storages/{s}/volumes/{v}/federate`) when the cached ones fail, and retries transient errors.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wmtp_core.vessl_client.retry import call_with_retry
from wmtp_core.vessl_client.sdk import get_sdk
from wmtp_core.vessl_client.settings import VesslSettings
from wmtp_core.vessl_client.spec import VOLUME_URL


@dataclass(frozen=True)
class VolumeRef:
    storage: str
    volume: str
    prefix: str = ""  # no leading/trailing slash

    @classmethod
    def parse(cls, url: str) -> VolumeRef:
        if not VOLUME_URL.match(url):
            raise ValueError(f"{url!r}: expected volume://<storage>/<volume>[/path]")
        storage, _, rest = url[len("volume://") :].partition("/")
        volume, _, prefix = rest.partition("/")
        return cls(storage, volume, prefix.strip("/"))

    def child(self, rel: str) -> VolumeRef:
        return VolumeRef(self.storage, self.volume, "/".join(p for p in (self.prefix, rel.strip("/")) if p))

    def key(self, rel: str) -> str:
        """Path inside the volume of `rel` (relative to this ref's prefix)."""
        return "/".join(p for p in (self.prefix, rel.strip("/")) if p)

    @property
    def url(self) -> str:
        return f"volume://{self.storage}/{self.volume}" + (f"/{self.prefix}" if self.prefix else "")


class VolumeStore:
    """File-level access to VESSL Storage volumes."""

    def __init__(self, settings: VesslSettings, sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self._sleep = sleep
        self._volumes: dict[tuple[str, str, str], Any] = {}

    def _volume(self, ref: VolumeRef, mode: str) -> Any:
        key = (ref.storage, ref.volume, mode)
        if key not in self._volumes:
            get_sdk(self.settings)
            from vessl.storage import volume_v2  # the SDK's own federation -> S3/GCS volume helper

            self._volumes[key] = volume_v2._get_volume_with_federate(ref.storage, ref.volume, federation_type=mode)
        return self._volumes[key]

    def _retry(self, what: str, ref: VolumeRef, mode: str, fn: Callable[[Any], Any]) -> Any:
        def attempt() -> Any:
            try:
                return fn(self._volume(ref, mode))
            except Exception:
                self._volumes.pop((ref.storage, ref.volume, mode), None)  # re-federate next time
                raise

        s = self.settings
        return call_with_retry(attempt, what=what, attempts=s.max_attempts, base_delay=s.backoff_base_s,
                               max_delay=s.backoff_max_s, sleep=self._sleep)

    def list(self, ref: VolumeRef) -> dict[str, int]:
        """{path relative to ref.prefix: size} for every file under the ref."""
        path = f"{ref.prefix}/" if ref.prefix else ""
        files = self._retry(f"list {ref.url}", ref, "read", lambda vol: vol.list(path))
        return {f.path: int(f.size) for f in files}

    def upload_file(self, local: Path, ref: VolumeRef, rel: str) -> None:
        self._retry(f"upload {rel} to {ref.url}", ref, "write",
                    lambda vol: vol.upload_file(str(local), destination=ref.key(rel)))

    def download_file(self, ref: VolumeRef, rel: str, dest: Path, size: int = 0) -> None:
        """Download to a temp file next to `dest`, then rename (atomic)."""
        from vessl.storage import VolumeFile

        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        os.close(fd)
        try:
            self._retry(f"download {rel} from {ref.url}", ref, "read",
                        lambda vol: vol.download_file(VolumeFile(path=ref.key(rel), size=size), tmp))
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def read_bytes(self, ref: VolumeRef, rel: str) -> bytes:
        with tempfile.TemporaryDirectory(prefix="wmtp-vessl-") as tmp:
            dest = Path(tmp) / "blob"
            self.download_file(ref, rel, dest)
            return dest.read_bytes()

    def write_bytes(self, ref: VolumeRef, rel: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory(prefix="wmtp-vessl-") as tmp:
            src = Path(tmp) / "blob"
            src.write_bytes(data)
            self.upload_file(src, ref, rel)
