"""Column helpers shared by the tables."""
from datetime import timezone

from sqlalchemy import DateTime, TypeDecorator

from idp.clock import aware


class UtcDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        """Store UTC: an aware value in another zone is converted, a naive one is taken as UTC."""
        if value is not None and value.tzinfo is not None:
            return value.astimezone(timezone.utc)
        return aware(value)

    def process_result_value(self, value, dialect):
        return aware(value)
