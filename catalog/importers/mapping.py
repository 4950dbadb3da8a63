"""Column mappings: which CSV columns (or templates of them) fill which import target; presets."""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .targets import INTERACTION_TARGETS, PRESETS, PRODUCT_TARGETS, TARGETS, ImportConfigError


@dataclass(frozen=True)
class Source:
    """One place a value is read from: a column, or a ``{column}`` template."""

    text: str

    @property
    def is_template(self) -> bool:
        """Whether the source is a template such as ``"{colour} {type}"``."""
        return "{" in self.text

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns this source reads."""
        if not self.is_template:
            return (self.text,)
        return tuple(name for _, name, _, _ in string.Formatter().parse(self.text) if name)

    def read(self, row: Mapping[str, str | None]) -> str:
        """The value for ``row``; empty when every column it reads is empty."""
        if not self.is_template:
            return (row.get(self.text) or "").strip()
        values = {name: (row.get(name) or "").strip() for name in self.columns}
        if not any(values.values()):
            return ""
        return " ".join(self.text.format_map(values).split())


def _sources(value: str | Sequence[str]) -> tuple[Source, ...]:
    items = [value] if isinstance(value, str) else list(value)
    if not items or not all(isinstance(item, str) and item for item in items):
        raise ImportConfigError(f"a mapping source must be a column name or a list of them, not {value!r}")
    sources = tuple(Source(item) for item in items)
    for source in sources:
        try:
            valid = not source.is_template or (source.columns and "{}" not in source.text)
        except ValueError:
            valid = False
        if not valid or any(name.isdigit() for name in source.columns):
            raise ImportConfigError(f"bad template {source.text!r}: use column names in braces, e.g. '{{title}}'")
    return sources


@dataclass(frozen=True)
class ColumnMapping:
    """Where each canonical field is read from, per file, plus defaults for products.

    Parameters
    ----------
    products, interactions
        Canonical field -> sources tried in order (first non-empty value wins). A
        field that is not mapped is read from the column of its own name.
    defaults
        Product field -> value used when a cell is empty, and for new products when
        the file has no column for the field.
    """

    products: Mapping[str, tuple[Source, ...]] = field(default_factory=dict)
    interactions: Mapping[str, tuple[Source, ...]] = field(default_factory=dict)
    defaults: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnMapping:
        """Build from ``{"products": {...}, "interactions": {...}, "defaults": {...}}``.

        Top-level ``target: source`` entries apply to every file that has the target
        (``{"sku": "item_id"}`` maps the SKU column of both files).
        """
        if not isinstance(data, Mapping):
            raise ImportConfigError("a column mapping must be a JSON object")
        sections: dict[str, dict[str, tuple[Source, ...]]] = {"products": {}, "interactions": {}}
        for key, value in data.items():
            if key not in (*sections, "defaults"):
                _check_target(key)
                for kind, targets in TARGETS.items():
                    if key in targets:
                        sections[kind][key] = _sources(value)
        for kind in sections:
            sections[kind].update(_section(kind, data.get(kind, {})))
        defaults = data.get("defaults", {})
        if not isinstance(defaults, Mapping) or any(k not in PRODUCT_TARGETS for k in defaults):
            raise ImportConfigError(f"'defaults' must map product fields ({', '.join(PRODUCT_TARGETS)}) to values")
        return cls(sections["products"], sections["interactions"], {k: str(v) for k, v in defaults.items()})

    @classmethod
    def from_options(cls, options: Iterable[str]) -> ColumnMapping:
        """Build from ``--column`` options: ``target=source`` or ``products.target=source``.

        Repeating a target adds fallbacks: ``--column title=name --column title=label``.
        """
        data: dict[str, dict[str, list[str]]] = {}
        for option in options:
            target, sep, source = option.partition("=")
            if not sep or not target.strip() or not source.strip():
                raise ImportConfigError(f"--column expects target=source, got {option!r}")
            kind, dot, name = target.strip().rpartition(".")
            if dot and kind not in TARGETS:
                raise ImportConfigError(f"--column {option!r}: the file kind must be 'products' or 'interactions'")
            data.setdefault(kind if dot else "", {}).setdefault(name, []).append(source.strip())
        flat = data.pop("", {})
        return cls.from_dict({**flat, **data})

    def merged(self, other: ColumnMapping) -> ColumnMapping:
        """Combine with ``other``, whose entries take precedence."""
        return ColumnMapping(
            {**self.products, **other.products},
            {**self.interactions, **other.interactions},
            {**self.defaults, **other.defaults},
        )

    def bind(self, kind: str, header: Sequence[str]) -> BoundMapping:
        """Resolve the mapping against a file's header (raises on a missing column)."""
        configured = self.products if kind == "products" else self.interactions
        available = set(header)
        sources: dict[str, tuple[Source, ...]] = {}
        for target in TARGETS[kind]:
            wanted = configured.get(target, (Source(target),))
            usable = tuple(s for s in wanted if any(c in available for c in s.columns))
            if usable:
                sources[target] = usable
            elif target in configured:
                names = ", ".join(repr(s.text) for s in wanted)
                raise ImportConfigError(f"the {kind} file has no column {names} (mapped to {target!r})")
        if "sku" not in sources or (kind == "interactions" and "user" not in sources):
            required = "sku" if "sku" not in sources else "user"
            raise ImportConfigError(
                f"the {kind} file has no {required!r} column; map one with --column {required}=COLUMN "
                f"(its columns: {', '.join(header)})"
            )
        used = {s.text for group in sources.values() for s in group if not s.is_template}
        extras = tuple(c for c in header if c and c not in used)
        defaults = self.defaults if kind == "products" else {}
        return BoundMapping(kind, sources, extras, dict(defaults))


def _check_target(target: str) -> None:
    if target not in PRODUCT_TARGETS and target not in INTERACTION_TARGETS:
        known = sorted(set(PRODUCT_TARGETS) | set(INTERACTION_TARGETS))
        raise ImportConfigError(f"unknown field {target!r} in the column mapping (known: {', '.join(known)})")


def _section(kind: str, value: Any) -> dict[str, tuple[Source, ...]]:
    if not isinstance(value, Mapping):
        raise ImportConfigError(f"'{kind}' must map fields to columns")
    for target in value:
        if target not in TARGETS[kind]:
            raise ImportConfigError(f"unknown {kind} field {target!r} (known: {', '.join(TARGETS[kind])})")
    return {target: _sources(source) for target, source in value.items()}


def build_mapping(
    preset: str | None = None, mapping_file: Path | None = None, columns: Iterable[str] = ()
) -> ColumnMapping:
    """Combine a preset, a JSON mapping file and ``--column`` options (later ones win)."""
    mapping = ColumnMapping()
    if preset:
        if preset not in PRESETS:
            raise ImportConfigError(f"unknown preset {preset!r} (known: {', '.join(sorted(PRESETS))})")
        mapping = mapping.merged(ColumnMapping.from_dict(PRESETS[preset]))
    if mapping_file:
        try:
            data = json.loads(Path(mapping_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ImportConfigError(f"cannot read the mapping file {mapping_file}: {e}") from e
        mapping = mapping.merged(ColumnMapping.from_dict(data))
    return mapping.merged(ColumnMapping.from_options(columns))


@dataclass(frozen=True)
class BoundMapping:
    """A mapping resolved against one file's header."""

    kind: str
    sources: Mapping[str, tuple[Source, ...]]
    extras: tuple[str, ...]
    defaults: Mapping[str, str]

    def has(self, target: str) -> bool:
        """Whether the file has a column for ``target``."""
        return target in self.sources

    def value(self, row: Mapping[str, str | None], target: str) -> str:
        """The first non-empty source value, else the default, else ``""``."""
        for source in self.sources.get(target, ()):
            value = source.read(row)
            if value:
                return value
        return self.defaults.get(target, "")

    def attributes(self, row: Mapping[str, str | None]) -> dict[str, str]:
        """The non-empty values of the columns no field is read from."""
        return {name: value.strip() for name in self.extras if (value := row.get(name) or "").strip()}
