"""The application layer: flags and presets, models built from flags, the checks before the first step, the per-image tasks and the dataset a run reads."""
