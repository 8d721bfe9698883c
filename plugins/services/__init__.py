"""Built-in plugins that are no choice (hub services, drivers): the idle culler and the
database driver, on the same hooks a third-party plugin uses."""
