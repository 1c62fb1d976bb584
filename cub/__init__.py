"""crt: cub."""
