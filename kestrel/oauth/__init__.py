"""OAuth accounts (Claude subscriptions): login with PKCE, token exchange and refresh, and the
subscription usage windows read from upstream answers. See the README."""
