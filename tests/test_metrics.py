"""Metrics against hand-computed values."""

import pytest
import torch

from lit_knowledge.evaluation.metrics import (
    completion_match,
    edit_scores,
    mean,
    normalize_answer,
    qa_scores,
    token_match,
)


def test_normalize_answer():
    assert normalize_answer("The Eiffel  Tower!") == "eiffel tower"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("Theatre") == "theatre"  # articles only as whole words
    assert normalize_answer("  ") == ""


def test_exact_match_after_normalisation():
    out = qa_scores(["the Eiffel tower"], [["Eiffel Tower"]])
    assert out["em"] == 1.0 and out["f1"] == 1.0 and out["n"] == 1
    assert out["per_item"] == [(1.0, 1.0)]


def test_partial_f1():
    # pred tokens {paris, france}, gold {paris}: precision 1/2, recall 1, F1 = 2*(1/2*1)/(1/2+1) = 2/3
    out = qa_scores(["Paris France"], [["Paris"]])
    assert out["em"] == 0.0
    assert out["f1"] == pytest.approx(2 / 3, abs=1e-6)


def test_multiple_answers_take_max():
    out = qa_scores(["Paris France"], [["Lyon", "Paris", "France Paris"]])
    # "France Paris" has the same bag of tokens: F1 = 1 but EM = 0 (order differs)
    assert out["em"] == 0.0
    assert out["f1"] == pytest.approx(1.0)
    out = qa_scores(["1887"], [["in 1887", "1887"]])
    assert out["em"] == 1.0


def test_aggregate_is_mean_of_items():
    preds = ["Paris France", "the Eiffel tower", "Berlin", "red green blue"]
    golds = [["Paris"], ["Eiffel Tower"], ["Rome"], ["green"]]
    out = qa_scores(preds, golds)
    ems = [e for e, _ in out["per_item"]]
    f1s = [f for _, f in out["per_item"]]
    assert ems == [0.0, 1.0, 0.0, 0.0]
    assert f1s == pytest.approx([2 / 3, 1.0, 0.0, 0.5])  # last: P 1/3, R 1 -> 0.5
    assert out["em"] == pytest.approx(sum(ems) / 4)
    assert out["f1"] == pytest.approx(sum(f1s) / 4)
    assert out["n"] == 4


def test_empty_input_and_edge_cases():
    assert qa_scores([], []) == {"em": 0.0, "f1": 0.0, "n": 0, "per_item": []}
    with pytest.raises(ValueError):
        qa_scores(["a"], [])
    # a bare string is one accepted answer; no accepted answer = unanswerable
    assert qa_scores(["Paris"], ["Paris"])["em"] == 1.0
    assert qa_scores(["", "Paris"], [[], []])["per_item"] == [(1.0, 1.0), (0.0, 0.0)]


def test_mean_ignores_none():
    assert mean([1.0, None, 0.0]) == 0.5
    assert mean([None, None]) is None
    assert mean([]) is None


def test_token_match():
    assert token_match([5, 6, 7], [5, 6, 7]) == 1.0
    assert token_match([5, 0, 7, 0], [5, 6, 7, 8]) == 0.5
    assert token_match(torch.tensor([[1, 2, 3]]), torch.tensor([[1, 9, 9]])) == pytest.approx(1 / 3)
    # label padding (-100) is not counted
    assert token_match([1, 2, 0], [1, 2, -100]) == 1.0
    with pytest.raises(ValueError):
        token_match([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        token_match([0], [-100])


def test_completion_match():
    assert completion_match("Paris, the capital of France", "paris") == 1.0
    assert completion_match("The Eiffel Tower is tall", "Eiffel tower") == 1.0
    assert completion_match("Parisian food", "Paris") == 0.0
    assert completion_match("Lyon", "Paris") == 0.0


def test_edit_scores():
    out = edit_scores(
        reliability=[1.0, 0.5, 0.0],
        generalization=[[1.0, 0.0], 1.0, None],  # edit 1: mean of two paraphrases = 0.5
        locality=[1.0, 1.0, 0.5],
    )
    assert out["n_edits"] == 3
    assert out["reliability"] == pytest.approx(0.5)
    assert out["generalization"] == pytest.approx(0.75)  # (0.5 + 1.0) / 2, None skipped
    assert out["locality"] == pytest.approx(2.5 / 3)
    assert out["portability"] is None
