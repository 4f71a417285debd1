"""Connecting an OAuth account: start a login, then finish it with the code that comes back.

Both flows share this: the redirect flow (the provider sends the browser to Kestrel's
`/api/oauth/callback`) and the paste flow (the provider's page shows `code#state`, the operator
pastes it into the dashboard or `kestrel accounts login`). They differ only in the redirect URI
the login was started with, which is stored with the `state` and sent again at the exchange.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from kestrel.domain import Account, AccountType, ClientError, Conflict
from kestrel.oauth.flow import LOGIN_TTL_SECONDS, OAuthConfig, authorize_url, new_secret
from kestrel.oauth.tokens import InvalidGrant, TokenClient
from kestrel.store.accounts import AccountStore
from kestrel.store.oauth import OAuthStateStore

log = logging.getLogger("kestrel.oauth")


class Connected(NamedTuple):
    """A finished login: the account, whether it is new, and the dashboard that started it."""

    account: Account
    created: bool
    return_to: str | None


class OAuthLogins:
    def __init__(self, config: OAuthConfig, states: OAuthStateStore, tokens: TokenClient,
                 accounts: AccountStore) -> None:
        self._config = config
        self._states = states
        self._tokens = tokens
        self._accounts = accounts

    async def start(self, name: str, *, paste: bool, now: float,
                    return_to: str | None = None) -> tuple[str, str, float]:
        """`(authorization URL, state, expiry)` of a new login for the account called `name`;
        `return_to`: the dashboard to send the operator back to from the callback page.

        A name held by an API-key account is refused now rather than after the operator has
        signed in at the provider.
        """
        if any(a.name == name and a.type is not AccountType.OAUTH
               for a in await self._accounts.list()):
            raise Conflict(f"an API-key account named {name!r} exists; choose another name",
                           field="name")
        state, verifier = new_secret(), new_secret()
        redirect_uri = self._config.manual_redirect_uri if paste else self._config.redirect_uri
        await self._states.create(state=state, verifier=verifier, account_name=name,
                                  redirect_uri=redirect_uri, now=now, ttl=LOGIN_TTL_SECONDS,
                                  return_to=return_to)
        url = authorize_url(self._config, state=state, verifier=verifier,
                            redirect_uri=redirect_uri, show_code=paste)
        return url, state, now + LOGIN_TTL_SECONDS

    async def finish_refused(self, state: str, *, now: float) -> None:
        """The provider came back with an error instead of a code: spend the login anyway."""
        await self._states.consume(state, now=now)

    async def finish(self, state: str, code: str, *, now: float) -> Connected:
        """Exchange the code and store the account: `(account, created)`.

        The `state` is spent first, whatever happens next: a code that fails to exchange cannot
        be tried again with the same login, which is what single use means.
        """
        pending = await self._states.consume(state, now=now)
        try:
            grant = await self._tokens.exchange(code=code, state=state,
                                                verifier=pending.verifier,
                                                redirect_uri=pending.redirect_uri, now=now)
        except InvalidGrant as exc:
            raise ClientError(f"the authorization code was refused: {exc.message}; start the "
                              f"login again", field="code") from None
        account, created = await self._accounts.save_oauth_login(
            name=pending.account_name, credential=grant.credential(), email=grant.email,
            organization=grant.organization, now=now)
        log.info("account %s %s through OAuth", account.name,
                 "connected" if created else "reconnected", extra={"account": {"id": account.id}})
        return Connected(account, created, pending.return_to)
