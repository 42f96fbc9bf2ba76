"""Advice on a summary: near-chance or unconfident classifiers are named, confident ones are not."""

from __future__ import annotations

import pytest
import torch

import nero_cli
from nero_cli.advice import advice
from nero_cli.tasks import TASKS
from sample_models import mnist

CLS = TASKS["classification"]


def _summary(reference: str = "labels", **groups: dict) -> dict:
    return {"task": "classification", "reference": reference, "metrics": {"m": groups}}


def test_near_chance_accuracy_is_named_with_its_chance_level():
    s = _summary(rotation={"accuracy": 0.12, "top_probability": 0.9})
    (line,) = advice(s, CLS, n_classes=10)
    assert line.startswith("model m (group rotation): identity accuracy 0.12 is within 5 points of chance (0.10)")
    assert "equivariance_error says little" in line and "top probability" not in line
    assert advice(_summary(rotation={"accuracy": 0.16, "top_probability": 0.9}), CLS, n_classes=10) == []
    # K from the summary when not passed in; no K: no chance check
    assert advice({**s, "n_classes": 10}, CLS) == advice(s, CLS, n_classes=10)
    assert advice({**s, "class_names": [str(i) for i in range(10)]}, CLS) == advice(s, CLS, n_classes=10)
    assert advice(s, CLS) == []


def test_low_top_probability_is_named():
    (line,) = advice(_summary(rotation={"accuracy": 0.9, "top_probability": 0.31}), CLS, n_classes=10)
    assert line == ("model m (group rotation): mean top probability 0.31 < 0.5: an unconfident model looks "
                    "invariant; its equivariance_error says little")


def test_consensus_reference_skips_the_chance_check_and_groups_share_a_line():
    s = _summary("consensus", rotation={"accuracy": 0.1, "top_probability": 0.2},
                 shift={"accuracy": 0.1, "top_probability": 0.2}, scale={"accuracy": 0.1, "top_probability": 0.9})
    (line,) = advice(s, CLS, n_classes=10)
    assert line.startswith("model m (groups rotation, shift): mean top probability 0.20 < 0.5")
    assert "chance" not in line


def test_tasks_without_top_probability_get_no_advice():
    s = {"reference": "labels", "metrics": {"m": {"shift": {"accuracy": 0.1}}}}
    assert advice(s, TASKS["detection"], n_classes=10) == []
    assert "top_probability" in TASKS["pointcloud"].summary_keys


@pytest.fixture(scope="module")
def mnist_summary():
    torch.manual_seed(0)
    random = mnist.mnist_cnn()  # the sample architecture, weights as initialised: a flat softmax
    return nero_cli.evaluate([random, "sample:mnist-cnn"], "sample:mnist500", "rotation:step=90", sample=50,
                             names=["random", "trained"], device="cpu").summary


def test_a_random_weights_model_is_warned_about_and_a_trained_one_is_not(mnist_summary):
    lines = advice(mnist_summary, CLS, n_classes=10)
    assert len(lines) == 1 and lines[0].startswith("model random (group rotation): identity accuracy")
    assert "mean top probability" in lines[0]
    random, trained = (mnist_summary["metrics"][m]["rotation"] for m in ("random", "trained"))
    assert random["top_probability"] < 0.2 < 0.9 < trained["top_probability"]
    # what the warning is about: TV calls the random model nearly invariant
    assert random["equivariance_error"] < 0.01 < 0.3 < trained["equivariance_error"]
