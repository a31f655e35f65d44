"""Administration: dose records, corrections, adverse events, FHIR export (port 8084)."""
