"""crt: voc12."""
