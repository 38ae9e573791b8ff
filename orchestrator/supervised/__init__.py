"""Supervised multi-task training on Ray Train: the `TorchTrainer` loop over Parquet datasets
(`training`) and `mto train` for the supervised families on top of it (`run`)."""
