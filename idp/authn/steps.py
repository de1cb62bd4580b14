"""Authentication context levels (acr) and the methods (amr, RFC 8176) that reach them."""

ACR_PASSWORD = "urn:idp:acr:pwd"
ACR_VALUES_SUPPORTED = [ACR_PASSWORD]
AMR_PASSWORD = "pwd"


def acr_for(amr: list[str]) -> str:
    """The level a set of proven methods reaches (only passwords exist so far)."""
    return ACR_PASSWORD
