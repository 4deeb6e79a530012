"""``${...}`` references of a bundle, resolved as the Databricks CLI does: variables (with target values,
``BUNDLE_VAR_<name>`` and lookups), resources, the workspace user and the bundle itself."""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from movielens_als.errors import MovieLensAlsError

_BUNDLE_REF = re.compile(r"\$\{([A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\[\d+\])*)\}")
_PATH_PART = re.compile(r"[^.\[\]]+|\[\d+\]")


class BundleError(MovieLensAlsError):
    """The bundle configuration cannot be read, resolved or run locally."""


class Resolver:
    """Resolves ``${var.x}``, ``${bundle.*}``, ``${resources.*}``, ``${workspace.current_user.*}``
    lazily, only for the values asked for (a prod-only variable never has to have a value)."""

    def __init__(
        self,
        config: Mapping,
        variables: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        target: str | None = None,
    ):
        self.config = config
        self.target = target
        self.variables = dict(variables or {})  # highest precedence, like `--var`
        self.env = os.environ if env is None else env
        self.user = user or getpass.getuser()
        self._stack: list[str] = []

    def variable(self, name: str) -> Any:
        if name in self.variables:
            return self.resolve(self.variables[name])
        spec = (self.config.get("variables") or {}).get(name)
        if spec is None:
            raise BundleError(f"${{var.{name}}} is not declared in the bundle")
        if f"BUNDLE_VAR_{name}" in self.env:
            return self.env[f"BUNDLE_VAR_{name}"]
        if "default" in spec:
            return self.resolve(spec["default"])
        if "lookup" in spec:
            raise BundleError(f"variable {name!r} is a workspace lookup: set it with --param or BUNDLE_VAR_{name}")
        raise BundleError(f"variable {name!r} has no value: set BUNDLE_VAR_{name}")

    def reference(self, path: str) -> Any:
        if path in self._stack:
            raise BundleError(f"circular reference: {' -> '.join([*self._stack, path])}")
        self._stack.append(path)
        try:
            parts = _PATH_PART.findall(path)
            head = parts[0]
            if head == "var":
                value = self.variable(parts[1])
                return _walk(value, parts[2:], path)
            if parts[:2] == ["workspace", "current_user"] and len(parts) == 3:
                return self._current_user(parts[2])
            if parts == ["bundle", "target"] and self.target is not None:
                return self.target
            return self.resolve(_walk(self.config, parts, path))
        finally:
            self._stack.pop()

    def _current_user(self, attribute: str) -> str:
        short = re.sub(r"[^\w]", "_", self.user.split("@")[0]).lower()
        values = {"userName": self.user, "short_name": short, "domain_friendly_name": short}
        if attribute not in values:
            raise BundleError(f"${{workspace.current_user.{attribute}}} has no local value")
        return values[attribute]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, str):
            whole = _BUNDLE_REF.fullmatch(value)
            if whole:  # a whole-string reference keeps its type (complex variables stay mappings)
                return self.reference(whole.group(1))
            return _BUNDLE_REF.sub(lambda m: scalar(self.reference(m.group(1)), m.group(0)), value)
        if isinstance(value, Mapping):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value


def _walk(value: Any, parts: Sequence[str], path: str) -> Any:
    for part in parts:
        if part.startswith("[") and isinstance(value, list):
            i = int(part[1:-1])
            if i >= len(value):
                raise BundleError(f"${{{path}}}: index {i} out of range")
            value = value[i]
        elif isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            raise BundleError(f"${{{path}}} does not exist in the bundle")
    return value


def scalar(value: Any, ref: str) -> str:
    if isinstance(value, (Mapping, list)):
        raise BundleError(f"{ref} is a complex value and cannot be part of a string")
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)
