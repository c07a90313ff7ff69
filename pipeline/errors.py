"""The two kinds of user error every stage raises; both carry a message naming the input and the
fix. Orchestrators treat them as final (retrying cannot fix a file or a setting); the CLI turns
them into one line and exit status 2."""


class ConfigError(ValueError):
    """An invalid configuration value or file; the message says which key and how to fix it."""


class DataError(ValueError):
    """Bad input data: the message names the file and how to fix it."""
