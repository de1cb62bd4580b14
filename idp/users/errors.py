class UsersError(Exception):
    """Base for directory errors."""


class RegistrationRejected(UsersError):
    """Form errors by field name; the view renders them beside the fields."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("registration rejected")
        self.errors = errors


class LinkInvalid(UsersError):
    """An emailed link that is unknown, expired or already used. `spent`: the link was used up
    and the failure recorded in this unit of work, which the caller then commits, not rolls back."""

    def __init__(self, *, spent: bool = False):
        super().__init__("link invalid")
        self.spent = spent


class LinkThrottled(UsersError):
    """Another link was sent too recently; retry_after says when the next may go."""

    def __init__(self, retry_after: int):
        super().__init__("link throttled")
        self.retry_after = retry_after
