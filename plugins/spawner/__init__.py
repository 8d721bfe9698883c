"""Built-in spawners (``spawner.type``): each module is an ordinary plugin."""
