"""Analytical results the simulations are checked against (Gardner volume, replica-symmetric Hopfield)."""
