"""Model backends behind the web-audio stages: one small interface per task, offline defaults first.

Each module exposes a loader (`load_*`) that takes the spec's IR block and a `model_revision` that
names the exact weights it loads; the revision enters the stage's cache key.
"""


class MissingWeights(Exception):
    """A backend's model is not on this machine. The message names the model, where it looked and
    how to provide it; the compiler reports it at the spec field that chose the model."""
