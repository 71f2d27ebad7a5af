"""Base class of every configuration model: strict, validated, YAML round-trippable."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from decrappify.errors import InputError

M = TypeVar("M", bound="StrictModel")


class StrictModel(BaseModel):
    """Pydantic model that forbids unknown fields and validates on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    @classmethod
    def from_yaml(cls: type[M], path: str | Path) -> M:
        """Read and validate a YAML file.

        Parameters
        ----------
        path : str or Path
            The YAML file.

        Returns
        -------
        StrictModel
            The validated configuration.

        Raises
        ------
        InputError
            If the file is missing, empty, not YAML or not a mapping, or fails
            validation; the message names the file and the offending fields.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"{path}: cannot read the config file ({err})") from err
        except yaml.YAMLError as err:
            text = " ".join(str(err).split())
            raise InputError(f"{path}: not valid YAML ({text})") from err
        if raw is None:
            raise InputError(
                f"{path}: the config file is empty; write the settings in it, or leave the "
                "option out to use the defaults"
            )
        if not isinstance(raw, dict):
            raise InputError(
                f"{path}: expected a mapping of settings (key: value lines), got "
                f"{type(raw).__name__}"
            )
        return cls.validate_dict(raw, source=str(path))

    @classmethod
    def validate_dict(cls: type[M], raw: Any, *, source: str | None = "config") -> M:
        """Validate a plain dict, turning pydantic errors into one readable line.

        Parameters
        ----------
        raw : dict
            The values.
        source : str or None
            What to call the values in the error message (None: nothing, for values
            whose messages name them, such as keyword arguments).

        Returns
        -------
        StrictModel
            The validated configuration.
        """
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            message = format_validation_error(err)
            raise InputError(f"{source}: {message}" if source else message) from err

    def to_yaml(self) -> str:
        """Serialise to YAML text (round-trips through :meth:`from_yaml`).

        Returns
        -------
        str
            YAML text.
        """
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def format_validation_error(err: ValidationError) -> str:
    """Summarise a pydantic error as ``field: message (got value)``, joined by ``; ``.

    Parameters
    ----------
    err : pydantic.ValidationError
        The error.

    Returns
    -------
    str
        One line.
    """
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        if e["type"] == "extra_forbidden":
            parts.append(f"{loc}: unknown parameter")
        elif not loc or msg.startswith(f"{loc} "):
            parts.append(msg)  # a message that names its field says it all
        elif isinstance(got, dict | list) or got is None:
            parts.append(f"{loc}: {msg}")
        else:
            parts.append(f"{loc}: {msg} (got {got!r})")
    return "; ".join(parts)


def parse_overrides(
    items: str | Iterable[str] | None, *, name: str = "overrides"
) -> dict[str, Any]:
    """Read ``KEY=VALUE`` settings (values as YAML: numbers, lists, ``null``).

    Parameters
    ----------
    items : str, iterable of str or None
        ``["gan.max_steps=0", "data.patch_size=96"]`` (``--set`` options), or one text
        with the items separated by ``;`` or new lines (napari's overrides field).
    name : str
        What to call the items in messages (``"--set"``, ``"overrides"``).

    Returns
    -------
    dict
        Dotted key to value.

    Raises
    ------
    InputError
        ``--set: expected KEY=VALUE, e.g. gan.max_steps=0 (got 'x')`` for an item without
        ``=``, or ``--set: key: cannot read the value '[1'`` for a value YAML cannot read.
    """
    if isinstance(items, str):
        items = re.split(r"[;\n]+", items)
    out: dict[str, Any] = {}
    for raw in items or []:
        item = raw.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{name}: expected KEY=VALUE, e.g. gan.max_steps=0 (got {item!r})")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise InputError(f"{name}: {key.strip()}: cannot read the value {value!r}") from None
    return out


def override_value(model: type[BaseModel], path: Iterable[str], current: Any, value: Any) -> Any:
    """Return what an override of the setting at ``path`` of ``model`` puts there.

    A mapping given for a settings section (a nested model, e.g. ``generator`` or
    ``data.validation``) updates that section key by key, recursively, so that
    ``{"generator": {"encoder": "resnet34"}}`` keeps the generator's other settings; any
    other value (a number, a list, a plain mapping such as ``loss.weights``, a whole
    crappify config) replaces the setting.

    Parameters
    ----------
    model : type of BaseModel
        The model the path starts from.
    path : iterable of str
        Field names from ``model`` down to the setting.
    current : Any
        The setting's current value, as ``model_dump(mode="json")`` gives it.
    value : Any
        The override.

    Returns
    -------
    Any
        The merged section, or ``value``.
    """
    section: type[BaseModel] | None = model
    for name in path:
        section = _section(section, name)
    return _merged(section, current, value)


def apply_overrides(
    model: type[BaseModel],
    raw: dict[str, Any],
    overrides: dict[str, Any],
    *,
    expand: Callable[[str, Any], dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """Set dotted keys (``gan.max_steps``) in the plain dump of a config, checking each key.

    Parameters
    ----------
    model : type of BaseModel
        The config class ``raw`` dumps.
    raw : dict
        ``config.model_dump(mode="json")``; changed in place.
    overrides : dict
        Dotted keys to values (see :func:`override_value` for mappings).
    expand : callable or None
        ``expand(dotted_key, value)`` turns a section given by name (a crappify preset)
        into its settings, so that keys inside it can be set; None when it cannot.

    Returns
    -------
    dict
        ``raw``.

    Raises
    ------
    InputError
        Naming the key: an unknown setting, a key below a plain value (``data.patch_size.x``
        where ``data.patch_size`` is a number), or null for a settings section.
    """
    for key, value in overrides.items():
        node, section = raw, model
        *parents, leaf = key.split(".")
        for depth, part in enumerate(parents):
            here = ".".join(parents[: depth + 1])
            child = node.get(part)
            if not isinstance(child, dict) and expand is not None:
                child = expand(here, child) or child
                if isinstance(child, dict):
                    node[part] = child
            if not isinstance(child, dict):
                _refuse_parent(key, here, part, node, child)
            node, section = child, _section(section, part)
        if leaf not in node and not (section is not None and leaf in section.model_fields):
            raise InputError(f"override {key}: unknown setting {leaf!r}")
        inner = _section(section, leaf)
        if value is None and inner is not None:
            first = next(iter(inner.model_fields))
            raise InputError(
                f"override {key}: {key} is a section of settings and cannot be null; set its "
                f"keys instead, e.g. {key}.{first}=..."
            )
        node[leaf] = override_value(model, [*parents, leaf], node.get(leaf), value)
    return raw


def _refuse_parent(key: str, here: str, part: str, node: dict[str, Any], child: Any) -> None:
    """Say why ``here`` cannot hold the setting ``key`` (it is unknown, null or a value)."""
    if part not in node:
        raise InputError(f"override {key}: unknown setting {part!r}")
    if child is None:
        raise InputError(
            f"override {key}: {here} is null here, so it has no setting "
            f"{key[len(here) + 1 :]!r}; give {here} a value first"
        )
    raise InputError(
        f"override {key}: {here} is a value ({child!r}), not a section of settings; set it "
        f"whole, e.g. {here}={child!r}"
    )


def _section(model: type[BaseModel] | None, name: str) -> type[BaseModel] | None:
    field = model.model_fields.get(name) if model is not None else None
    kind = field.annotation if field is not None else None
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _merged(section: type[BaseModel] | None, current: Any, value: Any) -> Any:
    if section is None or not isinstance(value, dict) or not isinstance(current, dict):
        return value
    out = dict(current)
    for key, item in value.items():
        out[key] = _merged(_section(section, key), current.get(key), item)
    return out
