"""Column helpers shared by the tables."""
from sqlalchemy import DateTime, TypeDecorator

from idp.clock import aware


class UtcDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value, dialect):
        return aware(value)
