"""A discrete-event simulator of an LLM fleet under autoscaling: traces, replicas with continuous
batching, a least-outstanding router, Tessera's policy and the peers', and the figures they are judged by.
Pure apart from reading trace and profile files and drawing plots when asked."""
