"""hardway: one command from a fresh systemd server to a multi-user JupyterHub."""

__version__ = "0.1.0"
