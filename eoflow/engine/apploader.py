"""Loading an application: a Python file or an importable module that declares eoflow work."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass
from types import ModuleType

from eoflow.engine.kafka.defs import CONSUMERS
from eoflow.engine.registry import REGISTRY, Definition
from eoflow.errors import AppLoadError


@dataclass(frozen=True)
class LoadedApp:
    name: str
    module: ModuleType
    workflows: tuple[str, ...]
    consumers: tuple[str, ...]


def _where(error: BaseException, app: str) -> str:
    """'file:line' of the innermost frame of the app's own code in the error's traceback."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [f for f in frames if "importlib" not in f.filename] or frames
    return f"{own[-1].filename}:{own[-1].lineno}" if own else app


def load_app(app: str) -> LoadedApp:
    """Import `app` (a .py path or a module name) and report what it declares."""
    before_workflows = {id(d) for d in REGISTRY.workflows()}
    before_consumers = {spec.name for spec in CONSUMERS.all()}
    try:
        module = _import(app)
    except AppLoadError:
        raise
    except SyntaxError as error:
        raise AppLoadError(app, f"syntax error at {error.filename}:{error.lineno}: {error.msg}"
                           ) from error
    except Exception as error:
        raise AppLoadError(app, f"{type(error).__name__}: {error} (at {_where(error, app)})"
                           ) from error
    workflows = [d for d in REGISTRY.workflows() if id(d) not in before_workflows
                 or _defined_in(d, module)]
    consumers = [s.name for s in CONSUMERS.all() if s.name not in before_consumers
                 or _defined_in(s.definition, module)]
    has_code = any(isinstance(getattr(v, "__eoflow__", None), Definition)
                   for v in vars(module).values())
    if not workflows and not consumers and not has_code:
        raise AppLoadError(app, "it declares no @workflow, @transaction or @kafka_consume; "
                                "is this the right file?")
    return LoadedApp(module.__name__, module, tuple(d.name for d in workflows), tuple(consumers))


def _defined_in(definition: Definition, module: ModuleType) -> bool:
    return getattr(definition.fn, "__module__", None) == module.__name__


def _import(app: str) -> ModuleType:
    if app.endswith(".py") or os.sep in app:
        path = os.path.abspath(app)
        if os.path.isdir(path):
            raise AppLoadError(app, "is a directory; give the app's .py file (or a module name)")
        if not os.path.isfile(path):
            raise AppLoadError(app, "no such file; give a path to a .py file or a module name")
        folder, filename = os.path.split(path)
        name = os.path.splitext(filename)[0]
        if folder not in sys.path:
            sys.path.insert(0, folder)  # the app's own imports work as with `python app.py`
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise AppLoadError(app, "cannot be imported as a Python module")
        loaded = sys.modules.get(name)
        origin = getattr(loaded, "__file__", None)
        if loaded is not None and (origin is None or os.path.abspath(origin) != path):
            raise AppLoadError(app, f"is named like the module {name!r}, already imported from "
                               f"{origin or 'the interpreter'}; rename the app's file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(app)
    except ModuleNotFoundError as error:
        if error.name == app or (error.name and app.startswith(error.name + ".")):
            raise AppLoadError(app, "no such module or file") from None
        raise
