"""Router overhead: added latency at a fixed rate, and the most requests per second, on loopback.

Targets in front of one minimal upstream (the fake OpenAI server of the router's tests, one
process): the upstream straight, Tessera's router (`tessera-runtime router --routes ...`) once per
HTTP front end (`--front-ends lean,aiohttp`: both in the same run, so their ratio is fair under the
machine's load), and vLLM's router (PyPI `vllm-router`, Rust) when it is installed in the virtual environment named by
--vllm-router-venv (default: a throwaway one under the system's temp directory; `--install-vllm-router`
creates it with pip). Everything shares the machine's cores with the load generator.

Latency: an open-loop generator (aiohttp, keep-alive, uvloop) sends `--rate` requests/s for
`--seconds` per round; the targets alternate over `--rounds` rounds so background noise hits them
alike. "Added" latency is a router's percentile minus the upstream's own, both from this run.
Throughput: `wrk` (closed loop, keep-alive connections) when it is on PATH, else a closed-loop aiohttp
generator; both say which they used.

    .venv/bin/python benchmarks/router.py                 # ~1 minute
    .venv/bin/python benchmarks/router.py --rounds 1 --seconds 1 --no-vllm-router   # quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
BODY = json.dumps({"model": "bench", "prompt": "hello", "max_tokens": 8}).encode()
HEADERS = {"Content-Type": "application/json"}


@dataclass
class Target:
    name: str
    url: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    sent: int = 0
    elapsed: float = 0.0
    max_rps: float = 0.0
    max_rps_errors: int = 0
    pid: int = 0
    cpu_us_per_request: float = float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status < 500:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


@contextmanager
def process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants so far (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue  # the process ended
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def fixed_rate(session: aiohttp.ClientSession, target: Target, rate: float, seconds: float) -> None:
    """Open loop: request i leaves at start + i/rate, whether or not earlier ones have returned."""
    loop = asyncio.get_running_loop()
    url = target.url + "/v1/completions"

    async def one() -> None:
        started = time.perf_counter()
        try:
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                await response.read()
                ok = response.status == 200
        except aiohttp.ClientError:
            ok = False
        if ok:
            target.latencies.append(time.perf_counter() - started)
        else:
            target.errors += 1

    count = int(rate * seconds)
    tasks = []
    begin = loop.time()
    for index in range(count):
        delay = begin + index / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(one()))
    await asyncio.gather(*tasks)
    target.sent += count
    target.elapsed += loop.time() - begin


def hey_fixed_rate(target: Target, rate: float, seconds: float, workers: int = 10) -> None:
    """`hey` at `rate` in total: `workers` keep-alive workers at rate/workers each; per-request CSV."""
    result = subprocess.run(
        ["hey", "-z", f"{seconds:g}s", "-c", str(workers), "-q", f"{rate / workers:g}", "-m", "POST",
         "-T", "application/json", "-d", BODY.decode(), "-o", "csv", target.url + "/v1/completions"],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    )
    rows = [line.split(",") for line in result.stdout.splitlines()[1:] if line.strip()]
    for row in rows:
        if row[6] == "200":
            target.latencies.append(float(row[0]))
        else:
            target.errors += 1
    target.sent += len(rows)
    target.elapsed += seconds


async def closed_loop(target: Target, connections: int, seconds: float) -> tuple[float, int, int]:
    """Fallback throughput probe: `connections` workers send back to back for `seconds`."""
    done = 0
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done, errors
            while time.perf_counter() < stop:
                async with session.post(target.url + "/v1/completions", data=BODY, headers=HEADERS) as response:
                    await response.read()
                    if response.status == 200:
                        done += 1
                    else:
                        errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return done / (time.perf_counter() - started), done, errors


def wrk_throughput(target: Target, connections: int, seconds: float, workdir: Path) -> tuple[float, int, int]:
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{BODY.decode()}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), target.url + "/v1/completions"],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    )
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))  # type: ignore[union-attr]
    count = int(re.search(r"(\d+) requests in", result.stdout).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", result.stdout)
    errors = re.search(r"Socket errors:.*timeout (\d+)", result.stdout)
    return rps, count, (int(bad.group(1)) if bad else 0) + (int(errors.group(1)) if errors else 0)


def vllm_router_binary(venv: Path, install: bool) -> tuple[Path | None, str]:
    binary = venv / "bin" / "vllm-router"
    if binary.exists():
        return binary, f"vllm-router from {venv}"
    if not install:
        return None, f"vllm-router not found in {venv} (pass --install-vllm-router to create it)"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "vllm-router"], check=True,
                       capture_output=True, text=True, timeout=600)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or exc.stdout or "").strip().splitlines()[-3:]
        return None, "pip install vllm-router failed: " + " | ".join(tail)
    except subprocess.TimeoutExpired:
        return None, "pip install vllm-router timed out"
    return (binary, f"vllm-router installed into {venv}") if binary.exists() else (None, "no vllm-router binary")


def plot(targets: list[Target], direct: Target, path: Path, rate: float, load_tool: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right, cpu) = plt.subplots(1, 3, figsize=(15, 4.2))
    names = [t.name for t in targets]
    p50 = [percentile(t.latencies, 50) * 1e3 for t in targets]
    p99 = [percentile(t.latencies, 99) * 1e3 for t in targets]
    xs = range(len(targets))
    left.bar([x - 0.2 for x in xs], p50, width=0.4, label="p50")
    left.bar([x + 0.2 for x in xs], p99, width=0.4, label="p99")
    left.set_xticks(list(xs), names)
    left.set_ylabel("latency (ms)")
    left.set_title(f"Latency at {rate:.0f} req/s (upstream p50 {percentile(direct.latencies, 50) * 1e3:.2f} ms)")
    left.legend()
    right.bar(names, [t.max_rps for t in targets], color="tab:green")
    right.set_ylabel("requests/s")
    right.set_title(f"Max sustained throughput ({load_tool})")
    cpu.bar(names, [t.cpu_us_per_request for t in targets], color="tab:purple")
    cpu.set_ylabel("CPU microseconds per request")
    cpu.set_title("CPU of the target process per request")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s of the latency phase")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per latency round and target")
    parser.add_argument("--rounds", type=int, default=3, help="latency rounds (targets alternate)")
    parser.add_argument("--throughput-seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32, help="connections of the throughput phase")
    parser.add_argument("--latency-tool", choices=("auto", "hey", "python"), default="auto",
                        help="fixed-rate load: hey (Go, low overhead; auto when on PATH) or Python aiohttp open loop")
    parser.add_argument("--front-ends", default="lean,aiohttp",
                        help="the router's HTTP front ends to measure, comma-separated (lean, aiohttp)")
    parser.add_argument("--no-vllm-router", action="store_true")
    parser.add_argument("--install-vllm-router", action="store_true")
    parser.add_argument("--vllm-router-venv", type=Path, default=Path(tempfile.gettempdir()) / "vllm-router-venv")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "benchmarks" / "router.png")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    workdir = Path(tempfile.mkdtemp(prefix="router-bench-"))
    front_ends = [f.strip() for f in args.front_ends.split(",") if f.strip()]
    if not front_ends or any(f not in ("lean", "aiohttp") for f in front_ends):
        parser.error("--front-ends takes lean and/or aiohttp")
    upstream_port, vllm_port = free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    routes = workdir / "routes.yaml"
    routes.write_text(json.dumps([{"name": "bench", "versions": [{"version": "v1", "endpoints": [upstream_url]}]}]))
    bin_dir = Path(sys.executable).parent
    vllm_binary, vllm_note = (None, "skipped (--no-vllm-router)") if args.no_vllm_router else \
        vllm_router_binary(args.vllm_router_venv, args.install_vllm_router)
    load_tool = "wrk" if shutil.which("wrk") else "aiohttp closed loop"
    latency_tool = args.latency_tool if args.latency_tool != "auto" else ("hey" if shutil.which("hey") else "python")
    load_before = os.getloadavg()[0]

    with process([sys.executable, "-m", "tessera_runtime.router.testing", "--port", str(upstream_port)],
                 workdir / "upstream.log") as upstream_proc:
        wait_http(upstream_url + "/health")
        with ExitStack() as router_processes:
            targets = [Target("upstream (direct)", upstream_url, pid=upstream_proc.pid)]
            for front_end in front_ends:
                router_port = free_port()
                router_args = [str(bin_dir / "tessera-runtime"), "router", "--host", "127.0.0.1", "--port",
                               str(router_port), "--routes", str(routes), "--log-level", "WARNING", "--server", front_end]
                router_proc = router_processes.enter_context(process(router_args, workdir / f"router-{front_end}.log"))
                wait_http(f"http://127.0.0.1:{router_port}/ready")
                targets.append(Target(f"tessera ({front_end})", f"http://127.0.0.1:{router_port}", pid=router_proc.pid))
            vllm_ctx = None
            if vllm_binary is not None:
                vllm_ctx = process([str(vllm_binary), "--host", "127.0.0.1", "--port", str(vllm_port), "--worker-urls",
                                    upstream_url, "--policy", "round_robin", "--log-level", "warning",
                                    "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port())],
                                   workdir / "vllm-router.log")
                vllm_proc = vllm_ctx.__enter__()
                try:
                    wait_http(f"http://127.0.0.1:{vllm_port}/health", timeout=60)
                    targets.append(Target("vllm-router", f"http://127.0.0.1:{vllm_port}", pid=vllm_proc.pid))
                except TimeoutError as exc:
                    vllm_note = f"vllm-router did not start: {exc}"
            try:
                run_phases(args, targets, workdir, load_tool, latency_tool)
            finally:
                if vllm_ctx is not None:
                    vllm_ctx.__exit__(None, None, None)

    direct, tessera = targets[0], targets[1]
    routers = [t for t in targets if t.name.startswith("tessera")]
    vllm = next((t for t in targets if t.name == "vllm-router"), None)
    table = Table(title=f"Router overhead on loopback, {os.cpu_count()} cores shared with the load generator")
    for column in ("target", "req/s sent", "p50 ms", "p99 ms", "added p50 ms", "added p99 ms", "errors",
                   "max req/s", "vs tessera", "CPU us/req"):
        table.add_column(column, justify="right" if column != "target" else "left")
    base50, base99 = percentile(direct.latencies, 50), percentile(direct.latencies, 99)
    for t in targets:
        p50, p99 = percentile(t.latencies, 50), percentile(t.latencies, 99)
        table.add_row(
            t.name, f"{t.sent / t.elapsed:.0f}" if t.elapsed else "-", f"{p50 * 1e3:.3f}", f"{p99 * 1e3:.3f}",
            "-" if t is direct else f"{(p50 - base50) * 1e3:+.3f}", "-" if t is direct else f"{(p99 - base99) * 1e3:+.3f}",
            str(t.errors + t.max_rps_errors), f"{t.max_rps:.0f}", f"{t.max_rps / tessera.max_rps:.2f}x",
            f"{t.cpu_us_per_request:.0f}",
        )
    console.print(table)
    latency_how = ("hey, 10 keep-alive workers rate-limited" if latency_tool == "hey"
                   else "open loop, aiohttp + keep-alive")
    console.print(f"latency load: {latency_how}, {args.rate:.0f} req/s, {args.rounds} x {args.seconds:g} s per "
                  f"target, targets alternating; throughput load: {load_tool}, {args.connections} connections, "
                  f"{args.throughput_seconds:g} s")
    console.print(f"machine load average (1 min) before the run: {load_before:.1f} on {os.cpu_count()} cores "
                  "(other work on the machine competes for the same cores)")
    for t in routers:
        added50 = (percentile(t.latencies, 50) - base50) * 1e3
        added99 = (percentile(t.latencies, 99) - base99) * 1e3
        console.print(f"{t.name} added latency at {args.rate:.0f} req/s: p50 {added50:+.3f} ms (target < 1), "
                      f"p99 {added99:+.3f} ms (target < 5); CPU per request "
                      f"{t.cpu_us_per_request / direct.cpu_us_per_request:.2f}x the upstream's")
    console.print("CPU us/req: CPU time of the target's own process (the upstream for the direct row, the "
                  "router alone otherwise) per request during the throughput phase; the fairest figure on a "
                  "shared machine, where a multi-threaded process also wins more CPU slices")
    console.print(f"vllm-router: {vllm_note}")
    if vllm is not None:
        console.print(f"throughput ratio {tessera.name} / vllm-router: {tessera.max_rps / vllm.max_rps:.2f}")
    plot(targets, direct, args.out, args.rate, load_tool)
    summary = write_json(args, targets, load_before, latency_how, load_tool, vllm_note)
    console.print(f"{tessera.name} / direct upstream: max req/s {summary['throughputRatioToDirect']:.2f}, "
                  f"CPU per request {summary['cpuRatioToDirect']:.2f}")
    if summary.get("cpuRatioLeanToAiohttp") is not None:
        console.print(f"CPU per request, lean / aiohttp front end: {summary['cpuRatioLeanToAiohttp']:.2f}")
    console.print(f"plot: {args.out}; figures: {args.out.with_suffix('.json')}")


def write_json(args: argparse.Namespace, targets: list[Target], load_before: float, latency_how: str,
               load_tool: str, vllm_note: str) -> dict[str, object]:
    """The run's figures as JSON (camelCase keys) next to the plot; returns the summary."""
    direct, tessera = targets[0], targets[1]
    base50, base99 = percentile(direct.latencies, 50), percentile(direct.latencies, 99)
    rows = []
    for t in targets:
        p50, p99 = percentile(t.latencies, 50), percentile(t.latencies, 99)
        rows.append({
            "name": t.name, "requestsPerSecondSent": t.sent / t.elapsed if t.elapsed else None,
            "p50Ms": p50 * 1e3, "p99Ms": p99 * 1e3,
            "addedP50Ms": None if t is direct else (p50 - base50) * 1e3,
            "addedP99Ms": None if t is direct else (p99 - base99) * 1e3,
            "errors": t.errors + t.max_rps_errors, "maxRequestsPerSecond": t.max_rps,
            "cpuMicrosecondsPerRequest": t.cpu_us_per_request,
        })
    vllm = next((t for t in targets if t.name == "vllm-router"), None)
    by_name = {t.name: t for t in targets}
    lean, aio = by_name.get("tessera (lean)"), by_name.get("tessera (aiohttp)")
    summary: dict[str, object] = {
        "router": tessera.name, "addedP50Ms": rows[1]["addedP50Ms"], "addedP99Ms": rows[1]["addedP99Ms"],
        "throughputRatioToDirect": tessera.max_rps / direct.max_rps if direct.max_rps else None,
        "cpuRatioToDirect": tessera.cpu_us_per_request / direct.cpu_us_per_request,
        "throughputRatioToVllmRouter": tessera.max_rps / vllm.max_rps if vllm is not None else None,
        "cpuRatioLeanToAiohttp": lean.cpu_us_per_request / aio.cpu_us_per_request if lean and aio else None,
        "throughputRatioLeanToAiohttp": lean.max_rps / aio.max_rps if lean and aio and aio.max_rps else None,
    }
    document = {
        "rate": args.rate, "rounds": args.rounds, "secondsPerRound": args.seconds,
        "throughputSeconds": args.throughput_seconds, "connections": args.connections,
        "latencyLoad": latency_how, "throughputLoad": load_tool, "cpuCount": os.cpu_count(),
        "loadAverageBefore": load_before, "vllmRouter": vllm_note, "targets": rows, "summary": summary,
    }
    path = args.out.with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return summary


def run_phases(args: argparse.Namespace, targets: list[Target], workdir: Path, load_tool: str,
               latency_tool: str) -> None:
    async def latency_rounds() -> None:
        connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=60)
        async with aiohttp.ClientSession(connector=connector) as session:
            for t in targets:  # warm connections and code paths, not measured
                await fixed_rate(session, Target(t.name, t.url), args.rate, 0.5)
            for _ in range(args.rounds):
                for t in targets:
                    await fixed_rate(session, t, args.rate, args.seconds)

    if latency_tool == "hey":
        for t in targets:
            hey_fixed_rate(Target(t.name, t.url), args.rate, 0.5)  # warm-up, not measured
        for _ in range(args.rounds):
            for t in targets:
                hey_fixed_rate(t, args.rate, args.seconds)
    else:
        try:
            import uvloop
        except ImportError:
            asyncio.run(latency_rounds())
        else:
            uvloop.run(latency_rounds())
    for t in targets:
        before = cpu_seconds(t.pid)
        if load_tool == "wrk":
            t.max_rps, count, t.max_rps_errors = wrk_throughput(t, args.connections, args.throughput_seconds, workdir)
        else:
            t.max_rps, count, t.max_rps_errors = asyncio.run(closed_loop(t, args.connections, args.throughput_seconds))
        t.cpu_us_per_request = (cpu_seconds(t.pid) - before) / max(count, 1) * 1e6


if __name__ == "__main__":
    main()
