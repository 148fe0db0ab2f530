"""Evaluation gates: run an EvaluationSuite against a candidate and a baseline OpenAI endpoint on the same
items, judge the paired differences statistically, and produce a ModelEvaluation.

Modules: `stats` (pure statistics), `data` (items, built-in sets, digests), `client` (HTTP), `tasks`
(one module per task kind), `scoring` and `verdicts` (figures, Holm correction, verdicts), `runner`
(the whole evaluation), `report` (table and PNG), `cluster` (the Kubernetes API side), `testing` (a fake
OpenAI server). Nothing here imports torch.
"""
