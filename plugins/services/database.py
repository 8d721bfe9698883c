"""The hub database driver: what ``hub.db_url`` needs in the hub environment."""

from __future__ import annotations

from hardway.plugin import Settings, hookimpl, resolve_secret

#: SQLAlchemy 2.1's default PostgreSQL driver is psycopg (version 3)
DRIVERS = {"postgresql": "psycopg[binary]"}


@hookimpl
def hardway_hub_packages(settings: Settings) -> list[str]:
    url = resolve_secret(settings["hub.db_url"]) or ""
    scheme = url.split("://", 1)[0].split("+", 1)[0]
    return [DRIVERS[scheme]] if scheme in DRIVERS else []
