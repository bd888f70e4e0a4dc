"""The on-disk contract of a run: manifests, atomic stage folders, checkpoints, releases, and the stage lifecycle."""
