"""hardway's built-in choices, each an ordinary plugin (see hardway.plugin.manager.DEFAULT_PLUGINS),
grouped by kind: auth, spawner, proxy, services."""
