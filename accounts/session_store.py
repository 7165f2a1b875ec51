"""The session engine (SESSION_ENGINE): Django's database sessions, in accounts.Session.

Django's own engine, extended the documented way (a model of our own and
`create_model_instance`), so everything Django's sessions promise still holds: in
particular a session deleted while one of its requests is in flight is not written back
(the save is an UPDATE that finds no row, and Django answers SessionInterrupted), which is
what makes "sign out" from another device stick even though every request saves its
session (SESSION_SAVE_EVERY_REQUEST).

Each save also writes whose session it is, the client's address and browser, and when it
was last used. The address and browser come from the request (SessionClientMiddleware sets
`client`); a session saved without a request (a WebSocket consumer) keeps what it had.
"""

from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.utils import timezone


class SessionStore(DatabaseSessionStore):
    def __init__(self, session_key=None):
        super().__init__(session_key)
        # (ip, user agent) of the request at hand, when there is one.
        self.client = None
        self._row = None

    @classmethod
    def get_model_class(cls):
        from .models import Session

        return Session

    def _get_session_from_db(self):
        self._row = super()._get_session_from_db()
        return self._row

    async def _aget_session_from_db(self):
        self._row = await super()._aget_session_from_db()
        return self._row

    def cycle_key(self):
        # A new sign-in (login cycles the key): a new session as far as the trader can tell.
        self._row = None
        super().cycle_key()

    async def acycle_key(self):
        self._row = None
        await super().acycle_key()

    def create_model_instance(self, data):
        return self._with_client(super().create_model_instance(data), data)

    async def acreate_model_instance(self, data):
        return self._with_client(await super().acreate_model_instance(data), data)

    def _with_client(self, session, data):
        now = timezone.now()
        row = self._row
        user_id = data.get(SESSION_KEY)
        session.user_id = int(user_id) if user_id is not None else None
        if self.client is not None:
            session.ip, session.user_agent = self.client
        elif row is not None:
            session.ip, session.user_agent = row.ip, row.user_agent
        session.created_at = row.created_at if row is not None and row.user_id == session.user_id else now
        session.last_seen = now
        return session
