"""Lambda handlers deployed by infra/template.yaml (CodeUri: lib/) and run in-process locally."""
