class UsersError(Exception):
    """Base for directory errors."""


class RegistrationRejected(UsersError):
    """Form errors by field name; the view renders them beside the fields."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("registration rejected")
        self.errors = errors
