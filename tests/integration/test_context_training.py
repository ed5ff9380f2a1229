"""The packaged context model is what ``python -m romanizer.build.context`` learns from HKCanCor (retrains it)."""

from __future__ import annotations

import pytest

from romanizer.build import context as training
from romanizer.context import ContextModel

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_packaged_model_is_reproducible_from_hkcancor() -> None:
    packaged = ContextModel.load()
    trained = training.train()
    assert trained.splits == packaged.splits
    assert trained.weights == packaged.weights
    assert trained.tags == packaged.tags
    assert trained.frequency == packaged.frequency


def test_training_refuses_characters_without_enough_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "CHARACTERS", "下朝")  # HKCanCor has 朝 alone once
    with pytest.raises(ValueError, match="朝"):
        training.train()
