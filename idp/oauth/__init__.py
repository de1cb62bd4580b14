"""Blueprint "oauth": every OAuth 2.0 / OpenID Connect endpoint and every authlib hook."""
