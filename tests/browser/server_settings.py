"""Settings of the daphne server that the browser tests (and the screenshot script) start.

The project's settings, unchanged, except that the embedded SQLite database lives where
QT_BROWSER_SQLITE says, so a browser run never touches the developer's db.sqlite3.
PostgreSQL runs point DATABASE_URL at a database of their own instead.
"""

import os

from quantumtrades.settings import *  # noqa: F403
from quantumtrades.settings import DATABASES

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["NAME"] = os.environ["QT_BROWSER_SQLITE"]
