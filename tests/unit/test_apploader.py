"""load_app: an app is a .py file or an importable module; whatever goes wrong while finding or
importing it is one AppLoadError that names the app, the error and where it happened."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import eoflow
from eoflow.engine.apploader import load_app
from eoflow.errors import AppLoadError, EoflowError

WORKFLOWS = """\
import eoflow


@eoflow.workflow(name="{prefix}_first")
def first() -> int:
    return 1


@eoflow.workflow
def {prefix}_second() -> int:
    return 2
"""


class Apps:
    """Writes app files into a folder of the test's own and undoes what loading them does to
    the interpreter (sys.path entries, sys.modules entries)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, relative: str, body: str) -> str:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body))
        importlib.invalidate_caches()
        return str(path)


@pytest.fixture
def apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Apps]:
    # load_app adds the app's folder to sys.path and, for a module name, the current directory;
    # the copy starts without "" (the current directory, put there by `python -m pytest`)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", os.getcwd())])
    monkeypatch.chdir(tmp_path)
    yield Apps(tmp_path)
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def _refused(app: str) -> AppLoadError:
    with pytest.raises(AppLoadError) as raised:
        load_app(app)
    error = raised.value
    assert isinstance(error, EoflowError)
    assert error.app == app
    assert str(error).startswith(f"cannot load app {app!r}: ")
    assert "\n" not in str(error)  # one line, for the CLI to print as it is
    return error


def test_a_py_file_loads_and_reports_what_it_declares(apps: Apps) -> None:
    path = apps.write("shop/ld_file_app.py", WORKFLOWS.format(prefix="ldf") + """

@eoflow.kafka_consume("ld-orders", group_id="ld-group")
@eoflow.transaction(name="ldf_handler")
def handler(topic: str, partition: int, message: object) -> None:
    pass
""")
    loaded = load_app(path)
    assert loaded.name == "ld_file_app"
    assert loaded.module.__file__ == path
    assert loaded.workflows == ("ldf_first", "ldf_second")
    assert loaded.consumers == ("ldf_handler",)
    assert sys.modules["ld_file_app"] is loaded.module
    relative = load_app(os.path.join("shop", "ld_file_app.py"))  # relative to the cwd
    assert relative.workflows == ("ldf_first", "ldf_second")


def test_a_py_file_imports_its_neighbours_as_python_would(apps: Apps) -> None:
    apps.write("svc/ld_helpers.py", "ANSWER = 42\n")
    path = apps.write("svc/ld_main.py", """\
        import eoflow
        from ld_helpers import ANSWER


        @eoflow.workflow(name="ld_answer")
        def answer() -> int:
            return ANSWER
        """)
    loaded = load_app(path)
    assert loaded.workflows == ("ld_answer",) and loaded.module.ANSWER == 42


def test_a_module_name_loads_from_the_current_directory(apps: Apps) -> None:
    apps.write("ld_mod_app.py", WORKFLOWS.format(prefix="ldm"))
    apps.write("ld_pkg/__init__.py", "")
    apps.write("ld_pkg/app.py", WORKFLOWS.format(prefix="ldp"))
    assert str(apps.root) not in sys.path
    loaded = load_app("ld_mod_app")
    assert loaded.name == "ld_mod_app" and loaded.workflows == ("ldm_first", "ldm_second")
    assert load_app("ld_pkg.app").workflows == ("ldp_first", "ldp_second")


def test_loading_an_imported_module_again_still_reports_its_workflows(apps: Apps) -> None:
    apps.write("ld_again.py", WORKFLOWS.format(prefix="lda"))
    first = load_app("ld_again")
    second = load_app("ld_again")  # already imported: nothing registers anew
    assert second.module is first.module
    assert second.workflows == first.workflows == ("lda_first", "lda_second")


def test_workflows_declared_elsewhere_are_not_the_apps(apps: Apps) -> None:
    @eoflow.workflow(name="ld_test_own")
    def own() -> int:
        return 0

    loaded = load_app(apps.write("ld_alone.py", WORKFLOWS.format(prefix="ldx")))
    assert loaded.workflows == ("ldx_first", "ldx_second")


def test_an_app_with_only_transactions_or_steps_loads(apps: Apps) -> None:
    loaded = load_app(apps.write("ld_tx_app.py", """\
        import eoflow


        @eoflow.transaction(name="ld_tx")
        def record() -> None:
            pass


        @eoflow.step
        def ld_step() -> None:
            pass
        """))
    assert (loaded.workflows, loaded.consumers) == ((), ())


def test_an_app_that_declares_nothing_is_refused(apps: Apps) -> None:
    path = apps.write("ld_empty.py", "import eoflow\nVALUE = 1\n")
    error = _refused(path)
    assert "declares no @workflow, @transaction or @kafka_consume" in str(error)
    assert "is this the right file?" in str(error)


def test_a_missing_file_is_one_clear_error(apps: Apps) -> None:
    missing = str(apps.root / "nowhere.py")
    assert "no such file; give a path to a .py file or a module name" in str(_refused(missing))
    assert "no such file" in str(_refused(os.path.join("sub", "nowhere")))  # a path, no .py


def test_a_directory_is_one_clear_error(apps: Apps) -> None:
    (apps.root / "ld_dir").mkdir()
    error = _refused(str(apps.root / "ld_dir") + os.sep)
    assert "is a directory; give the app's .py file (or a module name)" in str(error)


@pytest.mark.parametrize("name", ["ld_no_such_module", "ld_no_such_pkg.app", "ld_pkg2.nope"])
def test_a_missing_module_is_one_clear_error(apps: Apps, name: str) -> None:
    apps.write("ld_pkg2/__init__.py", "")
    error = _refused(name)
    assert str(error).endswith(": no such module or file")
    assert error.__cause__ is None and error.__suppress_context__


def test_a_syntax_error_names_the_file_and_the_line(apps: Apps) -> None:
    path = apps.write("ld_syntax.py", """\
        import eoflow

        def broken(:
            pass
        """)
    error = _refused(path)
    assert f"syntax error at {path}:3: " in str(error)
    assert isinstance(error.__cause__, SyntaxError)
    assert "ld_syntax" not in sys.modules


def test_an_error_at_import_names_the_error_and_the_line_that_raised_it(apps: Apps) -> None:
    path = apps.write("ld_raises.py", """\
        import eoflow

        SETTINGS = {}
        TOKEN = SETTINGS["token"]
        """)
    error = _refused(path)
    assert str(error).endswith(f": KeyError: 'token' (at {path}:4)")
    assert isinstance(error.__cause__, KeyError)
    assert "ld_raises" not in sys.modules  # not left half imported
    apps.write("ld_raises_mod.py", "raise RuntimeError('no config here')\n")
    error = _refused("ld_raises_mod")  # the same, imported by name
    assert str(error).endswith(
        f": RuntimeError: no config here (at {apps.root / 'ld_raises_mod.py'}:1)")


def test_an_error_in_a_module_the_app_imports_points_at_that_module(apps: Apps) -> None:
    helper = apps.write("lib/ld_broken_helper.py", "VALUE = 1\nVALUE = 1 / 0\n")
    path = apps.write("lib/ld_uses_helper.py", "import ld_broken_helper\n")
    error = _refused(path)
    assert str(error).endswith(f": ZeroDivisionError: division by zero (at {helper}:2)")


def test_a_missing_dependency_is_not_mistaken_for_a_missing_app(apps: Apps) -> None:
    path = apps.write("ld_needs.py", "import eoflow\nimport ld_not_installed_anywhere\n")
    error = _refused(path)
    assert "ModuleNotFoundError: No module named 'ld_not_installed_anywhere'" in str(error)
    assert f"(at {path}:2)" in str(error)
    error = _refused("ld_needs")  # by module name: the app exists, its dependency does not
    assert "ModuleNotFoundError: No module named 'ld_not_installed_anywhere'" in str(error)
    assert "no such module or file" not in str(error)


def test_where_skips_the_import_machinery(apps: Apps) -> None:
    path = apps.write("ld_plugins.py", """\
        import importlib

        import eoflow

        PLUGIN = importlib.import_module("ld_plugin_not_there")
        """)
    error = _refused(path)  # the innermost frames are importlib's own, not the app's
    assert str(error).endswith(
        f": ModuleNotFoundError: No module named 'ld_plugin_not_there' (at {path}:5)")


def test_an_app_named_like_an_imported_module_leaves_that_module_alone(
        apps: Apps, monkeypatch: pytest.MonkeyPatch) -> None:
    import colorsys  # any module already imported will do

    monkeypatch.setitem(sys.modules, "colorsys", colorsys)  # put back after the test
    path = apps.write("app/colorsys.py", "raise RuntimeError('app bug')\n")
    _refused(path)
    assert sys.modules.get("colorsys") is colorsys
