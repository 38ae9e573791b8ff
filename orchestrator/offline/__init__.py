"""Offline multi-task RL: `mto collect` writes a Parquet transition dataset from behaviour
policies (Ray tasks); offline `mto train` fits discrete CQL with conservative data sharing on it
(a Ray Train worker). The `offline:` config section lives here too."""
