"""Aliases on both backends: atomic moves with history, rollback, refused concurrent moves; the
promotion gate's decisions."""

from __future__ import annotations

import re

import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError, DataError
from pipeline.registry.aliases import PRODUCTION, aliases, current, history, move, rollback
from pipeline.registry.gate import decide
from pipeline.registry.versions import Registry
from tests.registry.conftest import register, version_meta


def test_aliases_move_keep_their_history_and_roll_back(reg_cfg, model_dir):
    reg = Registry(reg_cfg)
    v1, v2, v3 = (register(reg, model_dir) for _ in range(3))
    assert current(reg, PRODUCTION) is None
    move(reg, PRODUCTION, v1, "promote", "first")
    move(reg, PRODUCTION, v2, "promote", "better")
    move(reg, "staging", v3, "register", "new")
    assert current(reg, PRODUCTION)["version"] == v2 and aliases(reg) == [PRODUCTION, "staging"]
    back = rollback(reg, PRODUCTION)
    assert back["version"] == v1 and back["action"] == "rollback"
    assert back["previous_version"] == v2 and "from v0002" in back["reason"]
    assert rollback(reg, PRODUCTION, to=v3)["version"] == v3
    trail = history(reg, PRODUCTION)
    assert [(e["seq"], e["version"], e["action"]) for e in trail] == [
        (1, v1, "promote"),
        (2, v2, "promote"),
        (3, v1, "rollback"),
        (4, v3, "rollback"),
    ]
    assert all(e["by"] and e["at"] and e["model_id"] for e in trail)
    assert reg.resolve(PRODUCTION) == v3 and reg.resolve("v0002") == v2 and reg.resolve("1") == v1


def test_bad_alias_moves_are_refused_and_change_nothing(reg_cfg, model_dir):
    reg = Registry(reg_cfg)
    v1 = register(reg, model_dir)
    with pytest.raises(DataError, match="no complete version 7"):
        move(reg, PRODUCTION, 7, "manual", "typo")
    with pytest.raises(ConfigError, match="alias 'Prod!'"):
        move(reg, "Prod!", v1, "manual", "bad name")
    with pytest.raises(ConfigError, match="never set"):
        rollback(reg, PRODUCTION)
    move(reg, PRODUCTION, v1, "promote", "first")
    with pytest.raises(ConfigError, match="only ever pointed at v0001"):
        rollback(reg, PRODUCTION)
    with pytest.raises(ConfigError, match="no version or alias 'nightly'"):
        reg.resolve("nightly")
    assert len(history(reg, PRODUCTION)) == 1


def test_two_processes_moving_one_alias_at_once_cannot_both_win(reg_cfg, model_dir):
    reg, other = Registry(reg_cfg), Registry(reg_cfg)
    v1, v2, v3 = (register(reg, model_dir) for _ in range(3))
    move(reg, PRODUCTION, v1, "promote", "first")
    put = reg.store.put_new

    def other_moves_first(key, source):  # the other process writes its entry in between
        if "/aliases/" in key and not getattr(other_moves_first, "done", False):
            other_moves_first.done = True
            move(other, PRODUCTION, v3, "manual", "the other process")
        return put(key, source)

    reg.store.put_new = other_moves_first
    with pytest.raises(ConfigError, match="moved by another process just now"):
        move(reg, PRODUCTION, v2, "promote", "loses the race")
    assert [e["version"] for e in history(reg, PRODUCTION)] == [v1, v3]


def _cfg(tmp_path, **registry):
    overrides = {"registry.uri": str(tmp_path / "registry"), "registry.model_name": "m"}
    return load_config(None, {**overrides, **{f"registry.{k}": v for k, v in registry.items()}})


@pytest.mark.parametrize(
    ("new_f1", "margin", "auto", "promoted", "why"),
    [
        (0.85, 0.0, True, True, "better by more than the margin 0.0"),
        (0.80, 0.0, True, False, "not better by more than the margin 0.0; stays a candidate"),
        (0.75, 0.0, True, False, "f1 0.7500 vs production v0001 0.8000 \\(same test data\\)"),
        (0.85, 0.1, True, False, "not better by more than the margin 0.1"),
        (0.95, 0.1, True, True, "better by more than the margin 0.1"),
        (0.95, 0.0, False, False, "auto_promote is off: cellseg models promote 2"),
    ],
)
def test_the_gate_promotes_only_a_model_better_on_the_same_test_data(
    tmp_path, model_dir, new_f1, margin, auto, promoted, why
):
    cfg = _cfg(tmp_path, promote_margin=margin, auto_promote=auto)
    reg = Registry(cfg.registry)
    v1 = register(reg, model_dir, f1=0.8)
    first = decide(reg, v1, version_meta(model_dir, 0.8), "unused", cfg, tmp_path / "gate")
    assert first.promoted == auto
    move(reg, PRODUCTION, v1, "promote", first.reason)
    v2 = register(reg, model_dir, f1=new_f1)
    d = decide(reg, v2, version_meta(model_dir, new_f1), "unused", cfg, tmp_path / "gate")
    assert (d.promoted, d.production, d.production_version, d.rescored) == (
        promoted,
        0.8,
        v1,
        False,
    )
    assert pytest.approx(d.candidate) == new_f1
    assert re.search(why, d.reason), d.reason
