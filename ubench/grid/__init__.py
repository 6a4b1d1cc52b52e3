"""`ubench grid run`: the out-of-date stages of dvc.yaml, many at a time, on this machine or on Ray.

``plan`` turns DVC's stages and one ``dvc status`` into tasks (a model's chain train -> evaluate ->
zero-shot is one task); ``task`` runs one task in a workspace of its own with ``dvc repro``;
``executors`` run tasks in local worker processes or as Ray tasks; ``driver`` schedules them and
records what they computed in this repository's dvc.lock; ``progress`` shows it.
"""
