"""hardway's built-in choices, each an ordinary plugin (see hardway.plugins.DEFAULT_PLUGINS)."""
