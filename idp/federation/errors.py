"""Why a sign-in through an upstream failed; the view turns each into one sentence and an audit
event with `reason` (never a token, code or the upstream's free text)."""


class FederationError(Exception):
    reason = "failed"


class StateInvalid(FederationError):
    """No live round trip for this state in this browser: tampered, replayed, expired or foreign."""
    reason = "state_invalid"


class UpstreamDenied(FederationError):
    """The person declined, or the upstream refused (an `error` in the authorization response)."""
    reason = "denied"

    def __init__(self, error: str):
        super().__init__(error)
        self.error = error


class UpstreamUnavailable(FederationError):
    """The upstream did not answer in time, could not be reached, or answered with a 5xx."""
    reason = "unavailable"

    def __init__(self, why: str):
        super().__init__(why)
        self.reason = why  # "timeout", "unreachable" or "address_not_public"


class UpstreamInvalid(FederationError):
    """The upstream answered, but not with something we may trust."""
    reason = "invalid_response"

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


class IssuerMismatch(UpstreamInvalid):
    """The response, its ID token or the discovery document names another issuer (mix-up)."""
    reason = "issuer_mismatch"


class RegistrationClosed(FederationError):
    """Nobody is linked to this upstream identity and this provider may not create accounts."""
    reason = "registration_closed"


class EmailMissing(FederationError):
    """An account would be created, but the upstream shared no email address."""
    reason = "email_missing"


class AccountDisabled(FederationError):
    reason = "account_disabled"


class LastWayToSignIn(FederationError):
    """Unlinking would leave the account with no way to sign in."""
    reason = "last_way_to_sign_in"
