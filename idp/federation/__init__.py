"""Blueprint "federation": sign-in through upstream OpenID Providers and OAuth 2.0 servers."""
