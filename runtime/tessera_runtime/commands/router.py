"""`tessera-runtime router`: one OpenAI endpoint for every Model (canaries, scale from zero, streams)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import typer


def router_command(
    host: str = typer.Option("0.0.0.0", help="Address to bind."),
    port: int = typer.Option(8080, help="Port to listen on."),
    routes: Path | None = typer.Option(
        None, "--routes", help="YAML routes file (run outside Kubernetes); reloaded when it changes."
    ),
    kubeconfig: Path | None = typer.Option(None, help="Kubeconfig to watch the cluster with (default: ~/.kube/config)."),
    in_cluster: bool = typer.Option(False, "--in-cluster", help="Use the pod's service account."),
    namespace: str | None = typer.Option(None, help="Watch one namespace (default: all)."),
    endpoints_from: str = typer.Option(
        "endpointslices", help="Where pod addresses come from: endpointslices, or pods (clusters whose pod IPs "
        "EndpointSlices refuse, like the local development cluster's loopback ones)."
    ),
    hold_timeout: float = typer.Option(120.0, min=0, help="Seconds a request waits for a Model to get a ready pod."),
    hold_queue: int = typer.Option(256, min=0, help="Requests held per Model at most; more get 429."),
    retry_after: float = typer.Option(5.0, min=1, help="Retry-After seconds on 429/503 from the hold queue."),
    api_keys: bool = typer.Option(False, "--api-keys", help="Require API keys (Secrets labelled tessera.dev/api-key=true)."),
    api_key_namespace: str | None = typer.Option(
        None, help="Namespace holding the API-key Secrets (default: the watched namespace, or all)."),
    prefix_chars: int = typer.Option(256, min=0, help="Prompt characters for prefix affinity (0: off)."),
    scrape_interval: float = typer.Option(2.0, min=0, help="Seconds between scrapes of pods' /metrics (0: off)."),
    connect_attempts: int = typer.Option(3, min=1, help="Pods tried when connections are refused."),
    shutdown_timeout: float = typer.Option(60.0, min=0, help="Seconds in-flight streams get after SIGTERM."),
    max_body_bytes: int = typer.Option(32 * 1024 * 1024, min=1, help="Largest request body; larger ones get 413."),
    header_timeout: float = typer.Option(
        15.0, min=0.1, help="Seconds a client has to send a request head (and an idle keep-alive connection stays)."),
    body_timeout: float = typer.Option(60.0, min=0.1, help="Seconds a client has to send a request body; then 408."),
    server: str = typer.Option(
        "lean", help="HTTP front end: lean (an asyncio.Protocol server, least CPU per request) or aiohttp."),
    log_level: str = typer.Option("INFO", help="Logging level."),
) -> None:
    """Route OpenAI requests to every Model's pods: weighted versions, held while scaling from zero."""
    from ..request_limits import RequestLimits
    from ..router.balancer import BalancerSettings
    from ..router.core import RouterSettings
    from ..router.hold import HoldSettings
    from ..router.proxy import ProxySettings
    from ..router.run import RouterOptions, serve

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if endpoints_from not in ("endpointslices", "pods"):
        raise typer.BadParameter("endpointslices or pods", param_hint="--endpoints-from")
    if server not in ("lean", "aiohttp"):
        raise typer.BadParameter("lean or aiohttp", param_hint="--server")
    if routes is not None and not routes.is_file():
        raise typer.BadParameter(f"{routes} is not a file", param_hint="--routes")
    settings = RouterSettings(
        hold=HoldSettings(timeout=hold_timeout, queue_limit=hold_queue, retry_after=retry_after),
        balancer=BalancerSettings(prefix_chars=prefix_chars),
        proxy=ProxySettings(connect_attempts=connect_attempts, strip_authorization=api_keys),
        api_keys=api_keys,
        limits=RequestLimits(max_body_bytes=max_body_bytes, header_timeout=header_timeout, body_timeout=body_timeout),
    )
    options = RouterOptions(
        host=host, port=port, routes=routes, kubeconfig=kubeconfig, in_cluster=in_cluster, namespace=namespace,
        endpoints_from="pods" if endpoints_from == "pods" else "endpointslices", api_key_namespace=api_key_namespace,
        settings=settings, scrape_interval=scrape_interval, shutdown_timeout=shutdown_timeout,
        server="lean" if server == "lean" else "aiohttp",
    )
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(options))
    else:
        uvloop.run(serve(options))


def register(app: typer.Typer) -> None:
    """Add `router`."""
    app.command("router")(router_command)
