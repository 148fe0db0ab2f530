"""The whole Tessera system on one machine (`tessera dev up | down | status`).

The local control plane (`tessera_operator.devcluster`) plus the Helm chart from this checkout
(operator and router on the local node), the SmolLM2 example Model served on CPU, and a first
chat completion through the router. Steps report their time, so a slow start shows where it went.
"""
