"""Certificates: signed, verifiable EU DCC vaccination certificates (port 8085)."""
