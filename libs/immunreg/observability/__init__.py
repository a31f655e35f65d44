"""Metrics and structured logs shared by every service."""
