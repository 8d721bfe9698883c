"""Built-in proxies (``proxy.type``): each module is an ordinary plugin."""
