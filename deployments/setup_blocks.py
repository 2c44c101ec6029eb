"""Register the WMTP infrastructure block types and save the default blocks.

    uv run python deployments/setup_blocks.py --image IMAGE --cluster C --preset P [--gpus N]
        [--env-file .env.vessl] [--vessl-name vessl-a100] [--local-name local]

Equivalent to `prefect block register -f deployments/blocks.py` followed by saving `LocalProcess` as
"wmtp-local-process/local" and `VesslJob` as "wmtp-vessl-job/vessl-a100". The VESSL token stays in the env
file (the block stores only the file path), so nothing secret is written to the Prefect database.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root, for `deployments.blocks`

from deployments.blocks import LocalProcess, VesslJob  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-file", default=str(Path(__file__).resolve().parents[1] / ".env.vessl"))
    p.add_argument("--image", required=True, help="image built from ./Dockerfile, e.g. ghcr.io/<you>/wmtp:<tag>")
    p.add_argument("--cluster", required=True, help="VESSL cluster name")
    p.add_argument("--preset", required=True, help="VESSL resource preset with --gpus A100s")
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--export-volume", default=VesslJob.model_fields["export_volume"].default)
    p.add_argument("--local-name", default="local")
    p.add_argument("--vessl-name", default="vessl-a100")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    LocalProcess.register_type_and_schema()
    VesslJob.register_type_and_schema()
    LocalProcess().save(args.local_name, overwrite=True)
    VesslJob(env_file=args.env_file, image=args.image, cluster=args.cluster, preset=args.preset,
             gpu_count=args.gpus, export_volume=args.export_volume).save(args.vessl_name, overwrite=True)
    print(f"saved blocks: wmtp-local-process/{args.local_name}, wmtp-vessl-job/{args.vessl_name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
