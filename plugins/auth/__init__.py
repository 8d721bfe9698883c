"""Built-in authenticators (``auth.type``): each module is an ordinary plugin."""
