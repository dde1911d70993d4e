"""Experiments: ablations and grids run end to end (`mixc ablate`). Points are specs (a base, its
ablation files, or a grid's points); each is compiled into one shared cache, trained once per seed
by `mixc train` (a subprocess per run, tracked with MLflow), and the runs' evaluations become one
results table with intervals over seeds and paired differences to the base."""
