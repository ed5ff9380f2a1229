"""Hallucination cleanup: repeated lines, loops, credits."""

from __future__ import annotations

import pytest

from romanizer.cleanup import (
    CREDITS_ANYWHERE,
    CREDITS_WHOLE_LINE,
    collapse_loops,
    drop_hallucinations,
)


def test_repeated_line_is_dropped_after_punctuation_and_space_stripping() -> None:
    assert drop_hallucinations(["我哋去咗香港。", "我哋去咗 香港", "佢都去咗"]) == [True, False, True]


def test_repeat_is_compared_with_the_last_kept_line_not_the_last_line() -> None:
    # the credit is dropped, so the third line still repeats the first
    assert drop_hallucinations(["好啊", "字幕由Amara.org社群提供", "好啊！", "走啦"]) == [True, False, False, True]


def test_repeat_across_the_chunk_border() -> None:
    assert drop_hallucinations(["你好！", "多謝"], previous=["早晨", "你好"]) == [False, True]
    assert drop_hallucinations(["你好！"], previous=["早晨"]) == [True]


def test_simplified_and_traditional_repeats_match() -> None:
    assert drop_hallucinations(["这个好", "這個好"]) == [True, False]


@pytest.mark.parametrize(
    "line", ["謝謝謝謝謝謝謝謝", "你好，你好，你好，", "哈哈哈哈哈哈哈", "thank you thank you thank you"]
)
def test_loop_lines_are_dropped(line: str) -> None:
    assert drop_hallucinations([line]) == [False]


@pytest.mark.parametrize("line", ["好好好", "係係係。", "謝謝", "我哋去咗去咗香港"])
def test_short_repeats_are_speech(line: str) -> None:
    assert drop_hallucinations([line]) == [True]


@pytest.mark.parametrize(
    "line",
    [
        "字幕由Amara.org社群提供",
        "字幕由 Amara.org 社区提供",
        "請不吝點贊 訂閱 轉發 打賞支持明鏡與點點欄目",
        "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
        "中文字幕志愿者 李宗盛",
        "优优独播剧场——YoYo Television Series Exclusive",
        "Thank you for watching!",
        "謝謝觀看。",
    ],
)
def test_credits_are_dropped(line: str) -> None:
    assert drop_hallucinations([line]) == [False]


def test_whole_line_credit_phrases_inside_speech_are_kept() -> None:
    assert drop_hallucinations(["多謝大家收睇，下次再見", "佢話thank you for watching咁"]) == [True, True]


def test_empty_and_punctuation_only_lines_are_dropped() -> None:
    assert drop_hallucinations(["", "。。。", " ", "好"]) == [False, False, False, True]


@pytest.mark.parametrize("credit", CREDITS_ANYWHERE + CREDITS_WHOLE_LINE)
def test_every_listed_credit_matches_itself(credit: str) -> None:
    assert drop_hallucinations([credit + "。"]) == [False]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("謝謝謝謝謝謝謝謝", "謝謝"),
        ("我去咗去咗去咗去咗香港", "我去咗香港"),
        ("好啊，好啊，好啊，好啊，", "好啊，"),
        ("好好好", "好好好"),
        ("係呀係呀", "係呀係呀"),
        ("我哋今日去咗香港", "我哋今日去咗香港"),
    ],
)
def test_collapse_loops(text: str, expected: str) -> None:
    assert collapse_loops(text) == expected
