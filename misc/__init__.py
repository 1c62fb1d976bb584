"""crt: misc."""
