"""Projections: coverage statistics and operational read models from every topic (port 8086)."""
