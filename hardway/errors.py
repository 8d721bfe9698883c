"""The one error hierarchy. Only the CLI entry point prints these and exits."""

from __future__ import annotations


class HardwayError(Exception):
    """Base of every error hardway reports to a person.

    The message is complete on its own: it names what was wrong and how to fix it.
    ``exit_code`` is what the CLI exits with.
    """

    exit_code = 1


class UsageError(HardwayError):
    """Bad input from the person at the keyboard: a flag, a key, a value, a file.

    Raised before anything is written, so every file stays as it was.
    """

    exit_code = 2


class ConfigError(UsageError):
    """A setting (in a file or on the command line) that does not validate."""


class SystemError_(HardwayError):
    """A command on the system failed (systemctl, useradd, apt, uv...)."""


class FileWriteError(HardwayError):
    """A file hardway must write could not be (a full disk, a read-only file system).

    Not bad input, so exit status 1. Writes are atomic: the file is as it was before.
    """


class ServiceFailed(HardwayError):
    """A service did not come up in time; the message carries its last journal lines."""


class PluginError(HardwayError):
    """A plugin failed: it did not import, a hook raised, or a hook returned something
    malformed. The message names the plugin (and the hook) on one line."""
