"""EngineConfig.resolve: each setting from its argument, else its EOFLOW_* variable, else the
default; every value validated into a ConfigError that names the setting; the result frozen."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eoflow.engine.config import (
    DEFAULT_GRACE,
    DEFAULT_JOURNAL,
    DEFAULT_WORKERS,
    EngineConfig,
    parse_brokers,
)
from eoflow.errors import ConfigError, EoflowError

VARIABLES = ("EOFLOW_JOURNAL", "EOFLOW_APP_DB", "EOFLOW_WORKERS", "EOFLOW_DURABILITY",
             "EOFLOW_GRACE_PERIOD", "EOFLOW_KAFKA_BROKERS")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No EOFLOW_* variable of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("EOFLOW_"):
            monkeypatch.delenv(name)
    yield


def test_with_nothing_given_every_setting_has_its_default() -> None:
    config = EngineConfig.resolve()
    assert config == EngineConfig(journal=DEFAULT_JOURNAL, app_db=None, workers=DEFAULT_WORKERS,
                                  durability="full", grace_period=DEFAULT_GRACE, brokers=None)
    assert (config.journal, config.workers, config.grace_period) == ("eoflow.db", 64, 10.0)
    assert config.request_poll == 0.5


# (argument, its variable, the variable's value, what it gives, an argument, what that gives)
PRECEDENCE = [
    ("journal", "EOFLOW_JOURNAL", "env.db", "env.db", "arg.db", "arg.db"),
    ("app_db", "EOFLOW_APP_DB", "env-app.db", "env-app.db", "arg-app.db", "arg-app.db"),
    ("workers", "EOFLOW_WORKERS", "7", 7, 3, 3),
    ("durability", "EOFLOW_DURABILITY", "NORMAL", "normal", "Full", "full"),
    ("grace_period", "EOFLOW_GRACE_PERIOD", "2.5", 2.5, 0, 0.0),  # 0 is given, not missing
    ("brokers", "EOFLOW_KAFKA_BROKERS", "h1:1, h2:2", ("h1:1", "h2:2"), ["h3:3"], ("h3:3",)),
]


@pytest.mark.parametrize("setting,variable,raw,from_env,argument,from_arg", PRECEDENCE,
                         ids=[row[0] for row in PRECEDENCE])
def test_an_argument_beats_the_environment_which_beats_the_default(
        monkeypatch: pytest.MonkeyPatch, setting: str, variable: str, raw: str,
        from_env: object, argument: object, from_arg: object) -> None:
    default = getattr(EngineConfig.resolve(), setting)
    assert default != from_env != from_arg  # each source changes what the result says
    monkeypatch.setenv(variable, raw)
    assert getattr(EngineConfig.resolve(), setting) == from_env
    given = EngineConfig.resolve(**{setting: argument})  # type: ignore[arg-type]
    assert getattr(given, setting) == from_arg
    others = dataclasses.asdict(EngineConfig.resolve())
    assert {k: v for k, v in dataclasses.asdict(given).items() if k != setting} == {
        k: v for k, v in others.items() if k != setting}  # the other settings are untouched


def test_an_env_mapping_replaces_the_process_environment(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("EOFLOW_WORKERS", "9")
    monkeypatch.setenv("EOFLOW_JOURNAL", "process.db")
    config = EngineConfig.resolve(env={"EOFLOW_JOURNAL": "mapping.db"})
    assert (config.journal, config.workers) == ("mapping.db", DEFAULT_WORKERS)
    assert EngineConfig.resolve(env={}).journal == DEFAULT_JOURNAL


def test_paths_may_be_path_objects_and_come_back_as_strings(tmp_path: Path) -> None:
    config = EngineConfig.resolve(journal=tmp_path / "j.db", app_db=tmp_path / "app.db")
    assert config.journal == str(tmp_path / "j.db") and isinstance(config.journal, str)
    assert config.app_db == str(tmp_path / "app.db") and isinstance(config.app_db, str)


def test_empty_brokers_or_app_db_mean_none_even_over_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert EngineConfig.resolve().brokers is None  # None: what the app's @kafka says
    monkeypatch.setenv("EOFLOW_KAFKA_BROKERS", "")
    monkeypatch.setenv("EOFLOW_APP_DB", "")
    config = EngineConfig.resolve()
    assert (config.brokers, config.app_db) == (None, None)
    monkeypatch.setenv("EOFLOW_KAFKA_BROKERS", "env:1")
    monkeypatch.setenv("EOFLOW_APP_DB", "env.db")
    config = EngineConfig.resolve(brokers="", app_db="")  # given, and empty
    assert (config.brokers, config.app_db) == (None, None)


BAD_ARGUMENTS = [
    ("workers", 0, "must be at least 1, got 0"),
    ("workers", -3, "must be at least 1"),
    ("workers", "many", "expected a number, got 'many'"),
    ("workers", "2.5", "expected a number"),
    ("durability", "sometimes", "must be 'full' or 'normal', got 'sometimes'"),
    ("grace_period", -1, "must be at least 0"),
    ("grace_period", "soon", "expected a number, got 'soon'"),
    ("brokers", "nohostport", "'nohostport' is not HOST:PORT"),
    ("brokers", "host:", "'host:' is not HOST:PORT"),
    ("brokers", ":9092", "':9092' is not HOST:PORT"),
    ("brokers", "host:port", "'host:port' is not HOST:PORT"),
    ("brokers", ["ok:1", "bad"], "'bad' is not HOST:PORT"),
    ("brokers", " , ", "no broker address given"),
    ("journal", "", "must be a file path"),
]


@pytest.mark.parametrize("setting,given,problem", BAD_ARGUMENTS,
                         ids=[f"{setting}={given!r}" for setting, given, _ in BAD_ARGUMENTS])
def test_a_bad_argument_is_a_config_error_naming_its_setting(setting: str, given: Any,
                                                             problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        EngineConfig.resolve(**{setting: given})
    assert raised.value.setting == setting
    assert str(raised.value).startswith(f"{setting}: ")
    assert problem in str(raised.value)
    assert isinstance(raised.value, EoflowError)


@pytest.mark.parametrize("variable,raw,setting", [
    ("EOFLOW_WORKERS", "0", "workers"),
    ("EOFLOW_WORKERS", "", "workers"),
    ("EOFLOW_WORKERS", "four", "workers"),
    ("EOFLOW_DURABILITY", "off", "durability"),
    ("EOFLOW_GRACE_PERIOD", "-0.5", "grace_period"),
    ("EOFLOW_GRACE_PERIOD", "ten", "grace_period"),
    ("EOFLOW_KAFKA_BROKERS", "localhost", "brokers"),
    ("EOFLOW_JOURNAL", "", "journal"),
])
def test_a_bad_environment_value_is_a_config_error_naming_its_setting(
        monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, setting: str) -> None:
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ConfigError) as raised:
        EngineConfig.resolve()
    assert raised.value.setting == setting


def test_a_good_argument_hides_a_bad_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("EOFLOW_WORKERS", "EOFLOW_DURABILITY", "EOFLOW_GRACE_PERIOD",
                     "EOFLOW_KAFKA_BROKERS"):
        monkeypatch.setenv(variable, "bad")
    config = EngineConfig.resolve(workers=2, durability="normal", grace_period=1,
                                  brokers="h:1")
    assert (config.workers, config.durability, config.grace_period, config.brokers) == (
        2, "normal", 1.0, ("h:1",))


def test_numbers_from_text_get_their_types() -> None:
    config = EngineConfig.resolve(workers="12", grace_period="3")  # type: ignore[arg-type]
    assert config.workers == 12 and type(config.workers) is int
    assert config.grace_period == 3.0 and type(config.grace_period) is float


def test_the_config_is_frozen_and_replace_validates_again() -> None:
    config = EngineConfig.resolve()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.workers = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.journal = "other.db"  # type: ignore[misc]
    assert config.workers == DEFAULT_WORKERS
    with pytest.raises(ConfigError, match="durability"):
        dataclasses.replace(config, durability="sometimes")
    with pytest.raises(ConfigError, match="journal"):
        EngineConfig(journal="")


def test_the_callers_objects_are_not_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    brokers = [" h1:1 ", "h2:2"]
    env = {"EOFLOW_WORKERS": "5"}
    monkeypatch.setenv("EOFLOW_JOURNAL", "process.db")
    before = dict(os.environ)
    config = EngineConfig.resolve(brokers=brokers, env=env)
    assert config.brokers == ("h1:1", "h2:2") and isinstance(config.brokers, tuple)
    assert brokers == [" h1:1 ", "h2:2"] and env == {"EOFLOW_WORKERS": "5"}
    assert dict(os.environ) == before


def test_parse_brokers_reads_lists_and_comma_text_alike() -> None:
    assert parse_brokers("a:1,,b:2 ,") == ("a:1", "b:2")
    assert parse_brokers(("a:1", " b:2")) == ("a:1", "b:2")
    assert parse_brokers(["[::1]:9092"]) == ("[::1]:9092",)  # the port follows the last colon
    with pytest.raises(ConfigError) as raised:
        parse_brokers("nope", setting="bootstrap_servers")
    assert raised.value.setting == "bootstrap_servers"


@pytest.mark.parametrize("raw", ["nan", "inf"])
def test_a_grace_period_that_is_not_a_finite_number_is_refused(
        monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("EOFLOW_GRACE_PERIOD", raw)
    assert not math.isfinite(float(raw))
    with pytest.raises(ConfigError, match="grace_period"):
        EngineConfig.resolve()
