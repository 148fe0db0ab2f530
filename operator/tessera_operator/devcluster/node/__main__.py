"""`python -m tessera_operator.devcluster.node --cluster-dir DIR`: the local node agent."""

from __future__ import annotations

import argparse
from pathlib import Path

from tessera_operator.devcluster.node.agent import run_agent


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the local node agent of a Tessera dev cluster.")
    parser.add_argument("--cluster-dir", type=Path, required=True)
    run_agent(parser.parse_args().cluster_dir)


if __name__ == "__main__":
    main()
