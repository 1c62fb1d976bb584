"""crt: step."""
