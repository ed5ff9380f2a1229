"""The packaged context model is what ``python -m romanizer.context`` learns from HKCanCor."""

from __future__ import annotations

import pytest

from romanizer import context
from romanizer.context import CHARACTERS, ContextModel, train


def test_packaged_model_is_reproducible_from_hkcancor() -> None:
    packaged = ContextModel.load()
    trained = train()
    assert trained.splits == packaged.splits
    assert trained.weights == packaged.weights
    assert trained.tags == packaged.tags
    assert trained.frequency == packaged.frequency


def test_model_covers_its_characters() -> None:
    model = ContextModel.load()
    assert set(model.weights) == set(CHARACTERS)
    assert all(model.weights[char] for char in CHARACTERS)
    assert "都會" in model.splits
    assert model.tags["睇"] == "v"
    assert model.frequency["咗"] > model.frequency.get("為咗", 0.0)


def test_training_refuses_characters_without_enough_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "CHARACTERS", "下朝")  # HKCanCor has 朝 alone once
    with pytest.raises(ValueError, match="朝"):
        context.train()


def test_choose_keeps_the_current_reading_without_evidence() -> None:
    model = ContextModel(weights={"下": {"p1=睇": {"haa5": 2.0}}})
    assert model.choose("下", ["b=haa6", "p1=門"], ["haa6", "haa5"]) == "haa6"
    assert model.choose("下", ["b=haa6", "p1=睇"], ["haa6", "haa5"]) == "haa5"
