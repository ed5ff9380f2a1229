"""The packaged context model: what it covers, and how it chooses."""

from __future__ import annotations

from romanizer.context import CHARACTERS, ContextModel


def test_model_covers_its_characters() -> None:
    model = ContextModel.load()
    assert set(model.weights) == set(CHARACTERS)
    assert all(model.weights[char] for char in CHARACTERS)
    assert "都會" in model.splits
    assert model.tags["睇"] == "v"
    assert model.frequency["咗"] > model.frequency.get("為咗", 0.0)


def test_choose_keeps_the_current_reading_without_evidence() -> None:
    model = ContextModel(weights={"下": {"p1=睇": {"haa5": 2.0}}})
    assert model.choose("下", ["b=haa6", "p1=門"], ["haa6", "haa5"]) == "haa6"
    assert model.choose("下", ["b=haa6", "p1=睇"], ["haa6", "haa5"]) == "haa5"
