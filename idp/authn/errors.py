class AuthnError(Exception):
    """Base for sign-in failures; the view turns each into words."""


class LoginFailed(AuthnError):
    """Wrong login or password, or a disabled account: one message for all (reason is for audit)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Throttled(AuthnError):
    def __init__(self, retry_after: int):
        super().__init__(f"retry after {retry_after}s")
        self.retry_after = retry_after


class PasskeyFailed(AuthnError):
    """A WebAuthn ceremony did not verify: one message for people, the reason is for audit."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
