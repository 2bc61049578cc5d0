"""The package version, in one place (imported by the model file, the CLI and the server)."""

__version__ = "0.1.0"
