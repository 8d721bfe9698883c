"""The operations, each an idempotent sequence of steps over settings, plugins, render and
apply: ``install``, ``reload``, and the checks of rendered files they run first
(``checks``; ``hubcheck`` runs in the hub environment)."""
