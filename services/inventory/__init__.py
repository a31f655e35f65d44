"""Inventory: every lot and every vial, from procurement to the arm (port 8083)."""
