"""crt: tests."""
