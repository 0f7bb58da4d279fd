"""A minimal agency-side API client used by the demo: fetches a token with the client
credentials grant and calls the gateway with it."""

from __future__ import annotations

from typing import Any

import httpx


class AgencyClient:
    def __init__(self, base_url: str, client_id: str, client_secret: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=10)
        self._token: str | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def token(self) -> str:
        if self._token is None:
            r = await self._http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(self.client_id, self._secret),
            )
            r.raise_for_status()
            self._token = str(r.json()["access_token"])
        return self._token

    async def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        extra = kw.pop("headers", {})
        headers = {"Authorization": f"Bearer {await self.token()}", **extra}
        r = await self._http.request(method, path, headers=headers, **kw)
        if r.status_code == 401:  # the token expired (the demo moves the clock): fetch another
            self._token = None
            headers = {"Authorization": f"Bearer {await self.token()}", **extra}
            r = await self._http.request(method, path, headers=headers, **kw)
        return r

    async def subscribe(self, message_types: list[str], url: str, **extra: Any) -> dict[str, Any]:
        r = await self.request(
            "POST",
            "/v1/subscriptions",
            json={"message_types": message_types, "webhook": {"url": url}, **extra},
        )
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    async def publish(
        self, message_type: str, payload: dict[str, Any], **params: Any
    ) -> httpx.Response:
        return await self.request(
            "POST", f"/v1/messages/{message_type}", json=payload, params=params
        )
