"""amsweep compute: datasets, learning rules, dynamics, metrics, the cell runner and the CLI."""
