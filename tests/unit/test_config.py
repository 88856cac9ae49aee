import pytest

from commerce_jobs.config import ConfigError, OperatorConfig


def test_queue_limits_with_a_default() -> None:
    config = OperatorConfig.from_dict({"queues": {"imports": {"maxRunning": 1}}, "defaultQueueMaxRunning": 4})
    assert (config.queue_limit("imports"), config.queue_limit("other")) == (1, 4)
    assert OperatorConfig().queue_limit("any") is None


def test_a_missing_dependency_is_waited_for_five_minutes_unless_configured() -> None:
    assert OperatorConfig().dependency_grace_seconds == 300
    assert OperatorConfig.from_dict({"dependencyGraceSeconds": 20}).dependency_grace_seconds == 20
    assert OperatorConfig.from_dict({"startedEventHoldSeconds": 0}).started_event_hold_seconds == 0
    assert OperatorConfig.from_dict({}).started_event_hold_seconds == 10


def test_loads_from_the_file_named_by_the_environment(tmp_path, monkeypatch) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("jobDefaults:\n  image: shop:1\n")
    monkeypatch.setenv("COMMERCE_JOBS_CONFIG", str(path))
    assert OperatorConfig.load().job_defaults == {"image": "shop:1"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"queue": {}}, "unknown settings: queue"),
        ({"queues": {"imports": {"maxRunning": 0}}}, "queues.imports.maxRunning"),
        ({"outputMaxBytes": 10}, "outputMaxBytes"),
        ({"jobDefaults": ["image"]}, "jobDefaults must be a mapping"),
        ({"dependencyGraceSeconds": -1}, "dependencyGraceSeconds must be an integer >= 0"),
        ({"startedEventHoldSeconds": -1}, "startedEventHoldSeconds must be a number of seconds from 0"),
        ({"startedEventHoldSeconds": "10s"}, "startedEventHoldSeconds must be a number of seconds from 0"),
        ({"dependencyGraceSeconds": "5 min"}, "dependencyGraceSeconds must be an integer >= 0"),
    ],
)
def test_bad_settings_are_refused_with_their_name(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        OperatorConfig.from_dict(data)
