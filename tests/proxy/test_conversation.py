"""Conversation keys from Claude Code's session ids, or from a conversation's opening."""

from __future__ import annotations

import json

import pytest

from kestrel.proxy.conversation import conversation_key

SESSION = "0b9c1c5e-6c1f-4f7e-9a43-3c2d8f0e8a11"


@pytest.mark.parametrize(
    ("header", "body", "expected"),
    [
        (SESSION, None, f"session:{SESSION}"),
        (None, {"metadata": {"user_id": json.dumps({"device_id": "d", "account_uuid": "",
                                                     "session_id": SESSION})}},
         f"session:{SESSION}"),
        (None, {"metadata": {"user_id": f"user_abc123_account__session_{SESSION}"}},
         f"session:{SESSION}"),
        # the header wins over the body
        ("other-session", {"metadata": {"user_id": f"user_x_account__session_{SESSION}"}},
         "session:other-session"),
        (None, {}, None),
        (None, None, None),
    ],
)
def test_session_ids(header: str | None, body: dict[str, object] | None,
                     expected: str | None) -> None:
    assert conversation_key(header, body, client_key_id=1) == expected


def test_opening_hash_is_stable_as_the_conversation_grows() -> None:
    opening = {"system": "be brief", "messages": [{"role": "user", "content": "hi"}]}
    grown = {**opening, "messages": [*opening["messages"],  # type: ignore[list-item]
                                     {"role": "assistant", "content": "hello"},
                                     {"role": "user", "content": "more"}]}
    key = conversation_key(None, opening, client_key_id=7)
    assert key is not None and key.startswith("opening:")
    assert conversation_key(None, grown, client_key_id=7) == key
    # another client with the same words is another conversation, and so is another opening
    assert conversation_key(None, opening, client_key_id=8) != key
    other = {**opening, "system": "be verbose"}
    assert conversation_key(None, other, client_key_id=7) != key


def test_malformed_metadata_falls_back_to_the_opening() -> None:
    body = {"metadata": {"user_id": "{not json"}, "messages": [{"role": "user",
                                                                "content": "x"}]}
    assert str(conversation_key(None, body, client_key_id=None)).startswith("opening:")
    assert conversation_key("x" * 500, None, client_key_id=None) is None
