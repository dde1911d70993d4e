"""Experiment tracking with MLflow, through Composer's `MLFlowLogger`: the run's parameters, the loss,
throughput and every eval figure Composer's loggers receive, into a tracking URI (a server, or a
local `sqlite:///...` store). A resumed run continues the MLflow run of the same name."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mixc.errors import DataError


@dataclass(frozen=True)
class Tracking:
    uri: str
    experiment: str = "mixc"
    run_name: str | None = None
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, uri: str | None, experiment: str | None, run_name: str | None,
           params_file: Path | None) -> Tracking | None:
        """From `mixc train`'s options; None without a URI. The params file is a flat JSON object."""
        if uri is None:
            return None
        params: dict[str, str] = {}
        if params_file is not None:
            try:
                params = {str(k): str(v) for k, v in json.loads(params_file.read_text()).items()}
            except (OSError, ValueError, AttributeError) as err:
                raise DataError(f"{params_file} is not a JSON object of parameters ({err})",
                                'write {"name": "value", ...}') from None
        return cls(uri, experiment or "mixc", run_name, params)

    def logger(self):
        from composer.loggers import MLFlowLogger

        return MLFlowLogger(experiment_name=self.experiment, run_name=self.run_name, tracking_uri=self.uri,
                            synchronous=True, log_system_metrics=False, resume=self.run_name is not None)
