"""Importing the user's own code (a loss function, custom classes): a file path or a module.

Importing runs that code; the user asks for it by naming it (``--loss FILE.py:fn``,
``--import FILE.py``), the same trust rule either way.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType

from stalldoc.errors import InputError, one_line


def import_user_code(target: str, *, label: str, prefix: str) -> ModuleType:
    """``target`` is ``path/to/file.py`` or ``package.module``; errors start with ``label``
    (e.g. ``--import x.py``). A file is imported as module ``prefix + its stem``."""
    if not target.endswith(".py"):
        try:
            return importlib.import_module(target)
        except Exception as exc:  # noqa: BLE001 - the user's module failed to import
            raise InputError(f"{label}: cannot import module {target} ({type(exc).__name__}: "
                             f"{one_line(exc)})") from exc
    if not os.path.isfile(target):
        raise InputError(f"{label}: no such file {target}")
    name = prefix + os.path.splitext(os.path.basename(target))[0]
    spec = importlib.util.spec_from_file_location(name, target)
    if spec is None or spec.loader is None:
        raise InputError(f"{label}: cannot import {target}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's file failed to import
        sys.modules.pop(name, None)
        raise InputError(f"{label}: importing {target} failed ({type(exc).__name__}: {one_line(exc)})") from exc
    return module
