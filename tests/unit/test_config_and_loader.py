"""EngineConfig (argument, then environment, then default; validated) and the app loader."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from eoflow.engine.apploader import load_app
from eoflow.engine.config import DEFAULT_WORKERS, EngineConfig
from eoflow.errors import AppLoadError, ConfigError


def test_an_argument_beats_the_environment_which_beats_the_default() -> None:
    env = {"EOFLOW_JOURNAL": "env.db", "EOFLOW_WORKERS": "7", "EOFLOW_DURABILITY": "NORMAL",
           "EOFLOW_GRACE_PERIOD": "2.5", "EOFLOW_KAFKA_BROKERS": "h1:1,h2:2",
           "EOFLOW_APP_DB": "app.db"}
    from_env = EngineConfig.resolve(env=env)
    assert (from_env.journal, from_env.workers, from_env.durability, from_env.grace_period,
            from_env.brokers, from_env.app_db) == ("env.db", 7, "normal", 2.5,
                                                   ("h1:1", "h2:2"), "app.db")
    given = EngineConfig.resolve("arg.db", None, 3, "full", 1.0, ["h3:3"], env=env)
    assert (given.journal, given.workers, given.durability, given.grace_period,
            given.brokers) == ("arg.db", 3, "full", 1.0, ("h3:3",))
    default = EngineConfig.resolve(env={})
    assert (default.journal, default.workers, default.brokers) == (
        "eoflow.db", DEFAULT_WORKERS, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.workers = 2  # type: ignore[misc]


@pytest.mark.parametrize("kwargs,setting", [
    ({"workers": 0}, "workers"), ({"workers": "many"}, "workers"),
    ({"durability": "sometimes"}, "durability"), ({"grace_period": -1}, "grace_period"),
    ({"brokers": "nohostport"}, "brokers"), ({"brokers": ""}, None),
])
def test_bad_settings_name_themselves(kwargs: dict[str, object], setting: str | None) -> None:
    if setting is None:  # an empty value means "not given"
        assert EngineConfig.resolve(env={}, **kwargs).brokers is None  # type: ignore[arg-type]
        return
    with pytest.raises(ConfigError, match=setting):
        EngineConfig.resolve(env={}, **kwargs)  # type: ignore[arg-type]


def test_the_environment_is_validated_too() -> None:
    with pytest.raises(ConfigError, match="workers"):
        EngineConfig.resolve(env={"EOFLOW_WORKERS": "0"})


def _app(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(body)
    return str(path)


def test_an_app_loads_from_a_file_and_from_a_module_name(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    body = "import eoflow\n@eoflow.workflow(name='ld_flow_{n}')\ndef flow() -> int:\n    return 1\n"
    loaded = load_app(_app(tmp_path, "ld_app_file", body.format(n=1)))
    assert loaded.name == "ld_app_file" and loaded.workflows == ("ld_flow_1",)
    _app(tmp_path, "ld_app_module", body.format(n=2))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert load_app("ld_app_module").workflows == ("ld_flow_2",)
    finally:
        sys.modules.pop("ld_app_module", None)
        sys.modules.pop("ld_app_file", None)


@pytest.mark.parametrize("body,message", [
    ("def broken(:\n", "syntax error at .*:1"),
    ("raise RuntimeError('no config here')\n", "RuntimeError: no config here \\(at .*:1\\)"),
    ("x = 1\n", "declares no @workflow"),
])
def test_a_broken_app_is_one_clear_error(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(AppLoadError, match=message):
        load_app(_app(tmp_path, "ld_broken", body))
    if "declares" not in message:  # a module that failed to import is not left half-loaded
        assert "ld_broken" not in sys.modules
    sys.modules.pop("ld_broken", None)


def test_a_missing_app_says_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(AppLoadError, match="no such file"):
        load_app(str(tmp_path / "nowhere.py"))
    with pytest.raises(AppLoadError, match="no such module"):
        load_app("ld_no_such_module_anywhere")
    with pytest.raises(AppLoadError, match="is a directory"):
        load_app(str(tmp_path) + "/")
