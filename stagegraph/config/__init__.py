"""Experiments as config files (YAML or JSON): read with positions, validated, built into an
`Experiment`. No torch here, and no user module is imported while validating."""
