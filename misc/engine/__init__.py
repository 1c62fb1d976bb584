"""How work runs: processes and devices, the training driver, the per-image runner."""
