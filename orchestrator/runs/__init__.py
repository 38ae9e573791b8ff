"""What every kind of run shares: the run folder and its driver state, the Ray connection and
the MLflow run around a training job, MLflow tracking helpers, plots, `mto report`, and the
progress display. Imports nothing from the kinds of run (rl, supervised, offline, tune)."""
