"""Run provenance tags: config hash, git commit + dirty flag, dataset manifest SHA256, model weight SHA256s."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from wmtp_core import paths
from wmtp_core.io import sha256_file


def git_state(repo: Path = paths.REPO_ROOT) -> dict[str, str]:
    """Commit and dirty flag, or 'unknown' outside a git checkout."""
    def run(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"git.commit": commit or "unknown",
            "git.dirty": "unknown" if status is None else str(bool(status)).lower()}


def model_weights_sha256(model_dir: Path) -> str:
    """One SHA256 over the model's weight files, taken from its metadata.json (no re-hashing of the weights)."""
    meta_path = Path(model_dir) / "metadata.json"
    if not meta_path.is_file():
        return "unknown"
    files = json.loads(meta_path.read_text(encoding="utf-8")).get("files", {})
    weights = sorted((k, v["sha256"]) for k, v in files.items() if k.startswith("safetensors/"))
    if not weights:
        return "unknown"
    if len(weights) == 1:
        return weights[0][1]
    return hashlib.sha256("".join(f"{k}:{h}\n" for k, h in weights).encode()).hexdigest()


def dataset_manifest_sha256(datasets_root: Path) -> str:
    manifest = Path(datasets_root) / "manifest.json"
    return sha256_file(manifest) if manifest.is_file() else "missing"


def provenance_tags(config_hash: str, experiment: str, datasets_root: Path, model_dir: Path,
                    reference_dir: Path | None) -> dict[str, str]:
    tags = {"wmtp.config_hash": config_hash, "wmtp.experiment": experiment,
            "wmtp.dataset_manifest_sha256": dataset_manifest_sha256(datasets_root),
            "wmtp.model_dir": str(model_dir), "wmtp.model_sha256": model_weights_sha256(model_dir),
            **{f"wmtp.{k}": v for k, v in git_state().items()}}
    if reference_dir is not None:
        tags["wmtp.reference_model_sha256"] = model_weights_sha256(reference_dir)
    return tags
