"""The package version, kept apart from the package root so that core reads it without importing ``nvresearch``."""

__version__ = "0.1.0"
