"""immunreg: a national immunization registry built as event-sourced services."""

__version__ = "0.1.0"
