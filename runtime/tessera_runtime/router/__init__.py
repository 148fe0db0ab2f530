"""Tessera's router: one OpenAI endpoint for every Model.

Modules: `table` (Models, names, versions, endpoints), `weights` (exact canary split), `balancer`
(endpoint choice with prefix/session affinity), `hold` (scale from zero), `proxy` (forwarding and
streaming), `upstream` (the lean HTTP client to pods), `auth` (API keys), `metrics`, `scraper` (pods'
load), `core` (the request path), `exchange` (the request/response interface both front ends
implement), `endpoints` (which path does what), `server` and `http1` (the lean front end), `app` (the
aiohttp front end), `file_source` and `kube_source` (where routes come from), `run` (the process).
"""
