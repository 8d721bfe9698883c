"""Code that runs inside the hub process (the generated jupyterhub_config.py imports
``hardway.hubside.config``). It never imports the CLI or the operations."""
