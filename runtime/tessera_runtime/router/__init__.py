"""Tessera's router: one OpenAI endpoint for every Model.

Modules: `table` (Models, names, versions, endpoints), `weights` (exact canary split), `balancer`
(endpoint choice with prefix/session affinity), `hold` (scale from zero), `proxy` (forwarding and
streaming), `auth` (API keys), `metrics`, `scraper` (pods' load), `core` (the request path), `app`
(HTTP surface), `file_source` and `kube_source` (where routes come from), `run` (the process).
"""
