"""The error for a dataset that is not where its loader expects it."""


class DatasetLayoutError(FileNotFoundError):
    """A dataset root or file is missing; the message names the path and the expected layout."""
