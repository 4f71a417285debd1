"""An OpenAI Chat Completions request, rewritten as an Anthropic Messages request. Pure.

Every field is either translated, clamped, refused with a 400 naming it (`ClientError.field`
becomes OpenAI's `param`, see `REFUSED`), or ignored: the knobs that only tune OpenAI's own
sampling or billing (`seed`, `presence_penalty`, `frequency_penalty`, `logit_bias`,
`service_tier`, `store`, `metadata`, ...) cannot be honoured and cannot hurt, and unknown fields
are ignored as most OpenAI-compatible servers do, so clients sending vendor extensions work.

The messages themselves are translated by `openai_messages`.

Wire facts relied on (Anthropic Messages API):
- `max_tokens` is required; `temperature` is 0..1; Claude Opus 4.1 and later refuse
  `temperature` together with `top_p`;
- extended thinking comes in two forms: `{"type": "enabled", "budget_tokens": n}` (Claude 4.5
  and earlier; at least 1024 and below `max_tokens`) and `{"type": "adaptive"}` steered by
  `output_config.effort` (Claude 4.6 and later; 4.7 and later refuse the budget form). With
  thinking on, `temperature` / `top_p` may not be changed and a tool use may not be forced;
- structured outputs: `output_config.format = {"type": "json_schema", "schema": ...}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from kestrel.domain import ClientError
from kestrel.translate.openai_messages import expect_string, to_turns

# Claude 3 models stop at 4,096 output tokens and Claude 3.5 at 8,192; Claude 3.7 and every
# later model allow at least 32,000. 16,384 is a long answer that still finishes well inside
# the upstream read timeout when not streamed.
DEFAULT_MAX_TOKENS_CLAUDE_3 = 4096
DEFAULT_MAX_TOKENS_CLAUDE_3_5 = 8192
DEFAULT_MAX_TOKENS = 16384
# Thinking counts against max_tokens. 32,000 is the output limit of Claude Opus 4 and 4.1, the
# smallest among the models that think, so the default never exceeds a model's limit.
DEFAULT_MAX_TOKENS_REASONING = 32000

# `reasoning_effort` as a thinking budget for the models that take one (4.5 and earlier).
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384,
                    "xhigh": 24576}
MIN_THINKING_BUDGET = 1024  # Anthropic refuses a smaller budget
# ... and as `output_config.effort` for the models that think adaptively (4.6 and later).
ADAPTIVE_EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high",
                    "xhigh": "xhigh"}

# Features Claude cannot honour: a 400 naming the parameter rather than a silent difference.
REFUSED = {
    "logprobs": "Claude does not return log probabilities",
    "top_logprobs": "Claude does not return log probabilities",
    "audio": "Claude does not produce audio",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not available on this route",
    "functions": "the legacy functions API is not supported; send tools instead",
    "function_call": "the legacy functions API is not supported; send tool_choice instead",
}
_REFUSED_NAMES = frozenset(REFUSED)

_NEW_STYLE = re.compile(r"claude-(?:opus|sonnet|haiku)-(\d+)(?:-(\d{1,2}))?(?![0-9])")
_OLD_STYLE = re.compile(r"claude-(\d+)(?:-(\d{1,2}))?-(?:opus|sonnet|haiku)")


class Translation(NamedTuple):
    """A named tuple, made for every request (see `kestrel.domain.RequestLog` for why)."""

    body: dict[str, Any]
    """The Anthropic Messages request."""
    stream: bool
    include_usage: bool
    """`stream_options.include_usage`: end the stream with a usage chunk."""


def to_anthropic(request: Mapping[str, Any], aliases: Mapping[str, str]) -> Translation:
    """Translate a parsed Chat Completions body; raises `ClientError` naming the bad field."""
    if not _REFUSED_NAMES.isdisjoint(request):  # most requests name none of them
        for name, reason in REFUSED.items():
            if request.get(name) not in (None, False):
                raise ClientError(f"{name}: {reason}", field=name)
    if request.get("n") not in (None, 1):
        raise ClientError("n: only one choice per request is supported", field="n")
    modalities = request.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise ClientError("modalities: Claude answers in text only", field="modalities")

    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise ClientError("model: a model name is required", field="model")
    model = aliases.get(model, model)
    system, messages = to_turns(request.get("messages"))
    # max_tokens is decided below, once reasoning is known; the key keeps its usual place.
    body: dict[str, Any] = {"model": model, "max_tokens": 0, "messages": messages}
    if system:
        body["system"] = system

    stop = request.get("stop")
    stops = [stop] if isinstance(stop, str) else stop
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise ClientError("stop: must be a string or a list of strings", field="stop")
        if kept := [s for s in stops if s.strip()]:
            body["stop_sequences"] = kept
    user = request.get("user")
    if user is not None:
        body["metadata"] = {"user_id": expect_string(user, "user")}
    tools = _tools(request.get("tools"))
    if tools:
        body["tools"] = tools
    tool_choice = _tool_choice(request.get("tool_choice"), request.get("parallel_tool_calls"),
                               bool(tools))
    if tool_choice:
        body["tool_choice"] = tool_choice
    if (output_format := _output_format(request.get("response_format"))) is not None:
        body["output_config"] = {"format": output_format}

    max_tokens = _max_tokens(request)
    thinking = _thinking(request.get("reasoning_effort"), model, max_tokens, request, body)
    body["max_tokens"] = max_tokens or (
        DEFAULT_MAX_TOKENS_REASONING if thinking else default_max_tokens(model))
    sampling = _sampling(request)
    if not thinking:  # thinking runs at fixed sampling settings; Anthropic refuses others
        body.update(sampling)

    stream = request.get("stream")
    if stream not in (None, True, False):
        raise ClientError("stream: must be true or false", field="stream")
    if stream:
        body["stream"] = True
    options = request.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise ClientError("stream_options: must be an object", field="stream_options")
    include_usage = bool(stream) and options is not None and options.get("include_usage") is True
    return Translation(body, bool(stream), include_usage)


def model_version(model: str) -> tuple[int, int] | None:
    """(major, minor) of a Claude model id in either naming scheme, None when unrecognised.

    `claude-sonnet-4-20250514` is 4.0: an eight-digit date is not a minor version.
    """
    match = _NEW_STYLE.search(model) or _OLD_STYLE.search(model)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def default_max_tokens(model: str) -> int:
    """`max_tokens` when the client sent none: within the output limit of the model's family.
    Unrecognised names are taken for recent models."""
    version = model_version(model)
    if version is not None and version < (3, 5):
        return DEFAULT_MAX_TOKENS_CLAUDE_3
    if version is not None and version < (3, 7):
        return DEFAULT_MAX_TOKENS_CLAUDE_3_5
    return DEFAULT_MAX_TOKENS


# --- sampling and reasoning ---------------------------------------------------------------------


def _max_tokens(request: Mapping[str, Any]) -> int | None:
    # max_completion_tokens replaced max_tokens in OpenAI's API; the newer name wins.
    for name in ("max_completion_tokens", "max_tokens"):
        value = request.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ClientError(f"{name}: must be a whole number of at least 1", field=name)
        return value
    return None


def _sampling(request: Mapping[str, Any]) -> dict[str, float]:
    temperature = _number(request.get("temperature"), "temperature", 0.0, 2.0)
    top_p = _number(request.get("top_p"), "top_p", 0.0, 1.0)
    if temperature is not None:
        return {"temperature": min(temperature, 1.0)}  # OpenAI allows up to 2, Anthropic 1
    if top_p is not None:  # recent Claude models refuse both at once: temperature wins
        return {"top_p": top_p}
    return {}


def _thinking(effort: Any, model: str, max_tokens: int | None, request: Mapping[str, Any],
              body: dict[str, Any]) -> bool:
    """Set `thinking` (and the effort) on `body` for `reasoning_effort`; True if it is on."""
    if effort is None:
        return False
    if effort == "none":
        body["thinking"] = {"type": "disabled"}
        return False
    if not isinstance(effort, str) or effort not in THINKING_BUDGETS:
        raise ClientError("reasoning_effort: must be one of none, "
                          + ", ".join(THINKING_BUDGETS), field="reasoning_effort")
    if body.get("tool_choice", {}).get("type") in ("any", "tool"):
        raise ClientError("reasoning_effort: Claude cannot think before a forced tool call; "
                          "use tool_choice auto or leave reasoning_effort out",
                          field="reasoning_effort")
    messages = request.get("messages") or []
    last_assistant = next((m for m in reversed(messages) if m.get("role") == "assistant"), None)
    if last_assistant is not None and last_assistant.get("tool_calls"):
        # Continuing a tool loop with thinking needs the signed thinking blocks of the turn, which
        # OpenAI clients never send back: Anthropic would refuse the request, so think next turn.
        return False
    version = model_version(model)
    if version is None or version >= (4, 6):
        body["thinking"] = {"type": "adaptive", "display": "summarized"}
        body.setdefault("output_config", {})["effort"] = ADAPTIVE_EFFORTS[effort]
        return True
    budget = THINKING_BUDGETS[effort]
    if max_tokens is not None:
        budget = max(MIN_THINKING_BUDGET, min(budget, max_tokens // 2))
        if budget >= max_tokens:
            raise ClientError(f"max_tokens: reasoning needs more than {MIN_THINKING_BUDGET} "
                              "tokens", field="max_tokens")
    body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    return True


# --- tools and output format --------------------------------------------------------------------


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise ClientError("tools: must be a list", field="tools")
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or \
                not isinstance(function, dict):
            raise ClientError(f"{where}: only tools of type function are supported",
                              field=f"{where}.type")
        translated: dict[str, Any] = {
            "name": expect_string(function.get("name"), f"{where}.function.name"),
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            translated["description"] = expect_string(function["description"],
                                                f"{where}.function.description")
        if function.get("strict") is True:
            translated["strict"] = True
        out.append(translated)
    return out


def _tool_choice(choice: Any, parallel: Any, has_tools: bool) -> dict[str, Any] | None:
    if choice is None:
        translated: dict[str, Any] | None = {"type": "auto"} if has_tools else None
    elif choice in ("auto", "none", "required"):
        translated = {"type": {"required": "any"}.get(choice, choice)}
    elif isinstance(choice, dict) and choice.get("type") == "function" and \
            isinstance(choice.get("function"), dict):
        name = expect_string(choice["function"].get("name"), "tool_choice.function.name")
        translated = {"type": "tool", "name": name}
    else:
        raise ClientError("tool_choice: must be auto, none, required or a named function",
                          field="tool_choice")
    if translated is not None and not has_tools:
        if translated["type"] in ("auto", "none"):
            return None  # nothing to choose from: the same answer either way
        raise ClientError("tool_choice: forcing a tool needs tools", field="tool_choice")
    if parallel is False and translated is not None and translated["type"] != "none":
        translated["disable_parallel_tool_use"] = True
    elif translated == {"type": "auto"}:
        return None  # Anthropic's default: leave the request as the client meant it
    return translated


def _output_format(response_format: Any) -> dict[str, Any] | None:
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise ClientError("response_format: json_schema needs json_schema.schema",
                              field="response_format")
        return {"type": "json_schema", "schema": schema}
    if kind == "json_object":
        raise ClientError("response_format: json_object has no counterpart on Claude; send "
                          "type json_schema with a schema (Claude's structured outputs)",
                          field="response_format")
    raise ClientError("response_format: type must be text or json_schema",
                      field="response_format")


# --- scalars ------------------------------------------------------------------------------------


def _number(value: Any, where: str, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ClientError(f"{where}: must be a number from {low:g} to {high:g}", field=where)
    return float(value)
