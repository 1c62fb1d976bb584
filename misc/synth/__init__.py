"""Synthetic images for demos, tests and the stand-in pretraining set: shapes, styles and the renderer."""
