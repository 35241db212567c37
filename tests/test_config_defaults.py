"""A default lives in the config: every settings dataclass built with ``from_cfg`` agrees with its field defaults.

The settings dataclasses keep field defaults so that tests and library callers can build them without a cfg;
this test makes ``s2vnet/config.py`` the one home of each value by failing as soon as a field default differs
from what ``from_cfg(get_s2vnet_cfg())`` gives. New classes and fields are found automatically.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil

import pytest

import s2vnet
from s2vnet.config import get_s2vnet_cfg


def settings_classes() -> list[type]:
    """Every dataclass in the ``s2vnet`` package that has a ``from_cfg(cfg)`` classmethod taking only the cfg."""
    found = {}
    for info in pkgutil.walk_packages(s2vnet.__path__, prefix="s2vnet."):
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            from_cfg = getattr(obj, "from_cfg", None)
            if dataclasses.is_dataclass(obj) and from_cfg and list(inspect.signature(from_cfg).parameters) == ["cfg"]:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[name] for name in sorted(found)]


def field_default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def test_the_scan_finds_the_known_settings():
    names = {cls.__name__ for cls in settings_classes()}
    assert {"ClickSettings", "LSJSettings", "SliceSamplingSettings", "PreprocessSettings"} <= names


@pytest.mark.parametrize("cls", settings_classes(), ids=lambda cls: cls.__name__)
def test_field_defaults_equal_the_config_defaults(cls):
    from_config = cls.from_cfg(get_s2vnet_cfg())
    for field in dataclasses.fields(cls):
        default = field_default(field)
        configured = getattr(from_config, field.name)
        if default is not dataclasses.MISSING:
            assert default == configured, f"{cls.__name__}.{field.name}: default {default!r}, config {configured!r}"
