"""Extra traces for checking the autoscaling policies away from the shared one (seeded, reproducible).

    python benchmarks/autoscaling_traces.py --out out/traces [--seed 1]

Writes, in the Azure CSV format (`TIMESTAMP,ContextTokens,GeneratedTokens`):
* `azure-llm-2023-conv-reversed.csv`: the shared trace played backwards (same levels and bursts, every
  ramp up becomes a ramp down), when the shared trace is present;
* `synthetic-diurnal-SEED.csv`: a day's swing squeezed into an hour (the load doubles and halves);
* `synthetic-flat-SEED.csv`: a level load with Poisson noise only;
* `synthetic-spiky-SEED.csv`: sharp 2-3x spikes of 15-60 s, shorter than a cold start.

Each then goes through the benchmark like the shared trace:
`python benchmarks/autoscaling.py --trace out/traces/synthetic-spiky-1.csv --json ... --plot ...`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tessera_operator.simulator.trace import format_trace, read_trace, synthetic_trace, time_reversed

REPO = Path(__file__).resolve().parent.parent
SHARED_TRACE = REPO / ".." / "shared" / "traces" / "azure-llm-2023-conv.csv"
SHAPES = ("diurnal", "flat", "spiky")


def write_traces(out: Path, seed: int, shared: Path = SHARED_TRACE) -> list[Path]:
    """Write the extra traces into `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if shared.is_file():
        path = out / "azure-llm-2023-conv-reversed.csv"
        path.write_text(format_trace(time_reversed(read_trace(shared))), encoding="utf-8")
        written.append(path)
    for shape in SHAPES:
        path = out / f"synthetic-{shape}-{seed}.csv"
        path.write_text(format_trace(synthetic_trace(shape, seed=seed)), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Write the traces and list them."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out/traces"), help="folder to write the CSVs into")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic traces")
    parser.add_argument("--shared", type=Path, default=SHARED_TRACE, help="the trace to play backwards")
    args = parser.parse_args(argv)
    for path in write_traces(args.out, args.seed, args.shared):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
