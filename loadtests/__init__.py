"""Load tests: national-scale traffic mixes driven with Locust against 127.0.0.1."""
