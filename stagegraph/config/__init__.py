"""Experiments as YAML/JSON config files: loading, schema, `_target_` checks, overrides."""
