"""Ray Tune searches over multi-task runs: task groupings by task affinity (`mto tune-groups`) and
Pareto preference vectors (`mto pareto`), their RL trials on RLlib, and the `tune:` config section."""
