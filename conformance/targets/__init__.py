"""Shipped targets and the registry that turns a `--target` string into a factory.

    local                          host and guest are one kernel view (the coherent ideal)
    mount:HOSTDIR:GUESTDIR[:G2]    any mounted guest view beside its host directory
    bindfs                         a bindfs FUSE mount this suite makes and removes
    pagefs[:python]                the pagefs daemon and guest, separate processes (python:
                                   the daemon's Python dispatcher alone, no C fast path)
    pagefs-api                     the pagefs daemon judged through the guest driver's API
    virtiofsd[:cache=MODE]         QEMU's virtiofsd through the pagefs front-end
    virtiofsd-rust[:cache=MODE]    the Rust virtiofsd (make virtiofsd-rust), likewise
    pagefs-mount[:relay]           pagefs-host mounted by pagefs-mount, beside its directory
    vm:pagefs|virtiofsd|9p         a real Linux guest (make vm) against that back-end

A third party adds its own with `register("name", make)`, where `make(argument)`
receives whatever followed "name:" (or "") and returns a TargetFactory.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from pagefs.conformance.target import TargetFactory

Maker = Callable[[str], TargetFactory]
_MAKERS: dict[str, Maker] = {}
# Built-ins are imported on first use, so a missing layer breaks only its own target.
_BUILTIN: dict[str, tuple[str, str]] = {
    "local": ("local", "LocalFactory"),
    "mount": ("mount", "parse"),
    "bindfs": ("bindfs", "BindfsFactory"),
    "pagefs": ("daemon", "parse_pagefs"),
    "pagefs-api": ("api", "ApiFactory"),
    "virtiofsd": ("daemon", "parse_virtiofsd"),
    "virtiofsd-rust": ("daemon", "parse_virtiofsd_rust"),
    "pagefs-mount": ("pagefsmount", "parse"),
    "vm": ("vm", "parse"),
}


def register(name: str, make: Maker) -> None:
    _MAKERS[name] = make


def names() -> list[str]:
    return sorted({*_BUILTIN, *_MAKERS})


def factory(spec: str) -> TargetFactory:
    """Build the factory a `--target` string names; ValueError with one line if unknown."""
    name, _, argument = spec.partition(":")
    if name in _MAKERS:
        return _MAKERS[name](argument)
    if name not in _BUILTIN:
        raise ValueError(f"unknown target {name!r}; known: {', '.join(names())}")
    module, attr = _BUILTIN[name]
    make = getattr(importlib.import_module(f"pagefs.conformance.targets.{module}"), attr)
    if attr.startswith("parse"):
        return make(spec)
    if argument:
        raise ValueError(f"target {name!r} takes no argument")
    return make()
