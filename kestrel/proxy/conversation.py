"""What identifies a conversation, so its requests can stay on one account (prompt-cache hits).

Pure: works on the header value and the parsed body. Claude Code names its session in the
`x-claude-code-session-id` header, and inside `metadata.user_id` (recent versions send a JSON
string with `session_id`; older ones `user_<hash>_account_<uuid>_session_<uuid>`). Other
clients get a hash of their key and the conversation's opening (system prompt and first user
turn), which stays the same as the conversation grows.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from kestrel.jsontext import encoder

_LEGACY_SESSION = re.compile(r"_session_([0-9A-Za-z-]{8,64})\Z")
_canonical = encoder(compact=True, sort_keys=True, ensure_ascii=False, default=str)
# Longer ids are not sessions we know; refusing them bounds the affinity table's key size.
_MAX_SESSION_ID = 128


def _session_from_user_id(user_id: Any) -> str | None:
    if not isinstance(user_id, str):
        return None
    if user_id.startswith("{"):
        try:
            parsed = json.loads(user_id)
        except (ValueError, RecursionError):  # a client's string, nested as deep as it likes
            return None
        session = parsed.get("session_id") if isinstance(parsed, dict) else None
        return session if isinstance(session, str) and session else None
    legacy = _LEGACY_SESSION.search(user_id)
    return legacy.group(1) if legacy else None


def _opening(body: dict[str, Any]) -> Any:
    messages = body.get("messages")
    first_user = None
    if isinstance(messages, list):
        for message in messages:  # a loop, not next() over a generator: a third the cost
            if isinstance(message, dict) and message.get("role") == "user":
                first_user = message.get("content")
                break
    return [body.get("system"), first_user]


def conversation_key(session_header: str | None, body: dict[str, Any] | None,
                     client_key_id: int | None) -> str | None:
    """A stable key for the conversation this request belongs to, or None if there is none."""
    if session_header and len(session_header) <= _MAX_SESSION_ID:
        return f"session:{session_header}"
    if body is None:
        return None
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        session = _session_from_user_id(metadata.get("user_id"))
        if session and len(session) <= _MAX_SESSION_ID:
            return f"session:{session}"
    opening = _opening(body)
    if opening == [None, None]:
        return None
    canonical = _canonical([client_key_id, opening])
    return "opening:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]
