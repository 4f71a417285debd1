"""A small JSON Schema subset, used both to validate admin input and to document it.

One schema object serves `/openapi.json` and the handler's validation, so the two cannot drift.
Supported keywords: type (incl. lists with "null"; `number` is finite), properties, required,
additionalProperties (false only), minLength, maxLength, minimum, maximum, enum, pattern, items,
maxItems, format "uri" (http/https only, no user name or password), readOnly/writeOnly/description
(documentation only).
"""

from __future__ import annotations

import math
import re
from typing import Any

from kestrel.config import base_url_problem
from kestrel.domain import ValidationError

Schema = dict[str, Any]

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


def _is_type(value: Any, name: str) -> bool:
    # bool is a subclass of int in Python; JSON keeps them apart and so do we.
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":  # finite: 1e999 parses to infinity, which no limit can mean
        return isinstance(value, int | float) and not isinstance(value, bool) \
            and math.isfinite(value)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "string":
        return isinstance(value, str)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    return value is None


def validate(schema: Schema, value: Any, *, path: str = "") -> None:
    """Raise `ValidationError` naming the first offending field (dotted path)."""
    where = path or "body"
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(value, name) for name in names):
            wanted = " or ".join(_TYPE_NAMES[name] for name in names)
            raise ValidationError(f"{where} must be {wanted}", field=path or None)
    if value is None:
        return
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(str(choice) for choice in schema["enum"])
        raise ValidationError(f"{where} must be one of {choices}", field=path or None)
    if isinstance(value, str):
        _validate_string(schema, value, where, path)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise ValidationError(f"{where} must be at least {schema['minimum']}", field=path)
        if "maximum" in schema and value > schema["maximum"]:
            raise ValidationError(f"{where} must be at most {schema['maximum']}", field=path)
    elif isinstance(value, dict):
        _validate_object(schema, value, path)
    elif isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise ValidationError(f"{where} must have at most {schema['maxItems']} items",
                                  field=path or None)
        for index, item in enumerate(value):
            if "items" in schema:
                validate(schema["items"], item, path=f"{path}[{index}]")


def _validate_string(schema: Schema, value: str, where: str, path: str) -> None:
    field = path or None
    if len(value) < schema.get("minLength", 0):
        if schema.get("minLength") == 1:
            raise ValidationError(f"{where} must not be empty", field=field)
        raise ValidationError(f"{where} must be at least {schema['minLength']} characters",
                              field=field)
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise ValidationError(f"{where} must be at most {schema['maxLength']} characters",
                              field=field)
    if "pattern" in schema and not re.search(schema["pattern"], value):
        raise ValidationError(f"{where} has an invalid format", field=field)
    if schema.get("format") == "uri":
        # A URL is stored and shown in clear (admin answers, logs), unlike sealed credentials:
        # one with user:password@ is refused, and never quoted.
        problem = base_url_problem(value)
        if problem is not None:
            raise ValidationError(f"{where} {problem}", field=field)


def _validate_object(schema: Schema, value: dict[str, Any], path: str) -> None:
    properties: dict[str, Schema] = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            dotted = f"{path}.{name}" if path else name
            raise ValidationError(f"{dotted} is required", field=dotted)
    for name, item in value.items():
        dotted = f"{path}.{name}" if path else name
        if name not in properties:
            if schema.get("additionalProperties", True) is False:
                raise ValidationError(f"{dotted} is not a known field", field=dotted)
            continue
        if properties[name].get("readOnly"):
            raise ValidationError(f"{dotted} is read-only", field=dotted)
        validate(properties[name], item, path=dotted)
