class UsersError(Exception):
    """Base for directory errors."""


class RegistrationRejected(UsersError):
    """Form errors by field name; the view renders them beside the fields."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("registration rejected")
        self.errors = errors


class LinkInvalid(UsersError):
    """An emailed link that is unknown, expired or already used."""


class LinkThrottled(UsersError):
    """Another link was sent too recently; retry_after says when the next may go."""

    def __init__(self, retry_after: int):
        super().__init__("link throttled")
        self.retry_after = retry_after
