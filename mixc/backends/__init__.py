"""Model backends behind the web-audio stages: one small interface per task, offline defaults first.

Each module exposes `load(cfg, threads)` (the model, from the spec's IR block), `model_revision(cfg)`
(names the exact weights it loads, by their bytes; it enters the stage's cache key) and
`locate(cfg)` (finds the weights without reading them; raises `mixc.errors.MissingWeights` naming
what is missing, where mixc looked and how to provide it).
"""
