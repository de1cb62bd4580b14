"""Blueprint "authn": the SSO session and the ways a person proves who they are."""
