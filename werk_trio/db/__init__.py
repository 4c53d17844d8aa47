"""Trio-native Postgres: a psycopg connection driven by Trio, a pool, a listener."""

from .connection import Connection, connect
from .listener import RECONNECTED, Listener
from .pool import Pool

__all__ = ["RECONNECTED", "Connection", "Listener", "Pool", "connect"]
