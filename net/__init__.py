"""crt: net."""
