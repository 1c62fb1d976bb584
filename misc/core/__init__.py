"""Run machinery every layer uses: errors, logging, artefact paths, atomic writes, fingerprints, checkpoints, weights files."""
