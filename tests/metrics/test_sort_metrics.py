"""SOrT metrics against the worked examples of the paper's appendix A.1.1, the CLI and the evaluate modules."""

from __future__ import annotations

import json

import pytest

from hf_vcr.cli import main as cli_main
from hf_vcr.metrics import load_metric
from hf_vcr.metrics.sort import consistency_metrics, quadrants, ranking_metrics, ranking_metrics_one


def _scores_from_order(relevant_in_ranked_order):
    """Scores that reproduce a given ranked list (first = highest)."""
    n = len(relevant_in_ranked_order)
    return [float(n - k) for k in range(n)], list(relevant_in_ranked_order)


def test_mp1_and_mrr_appendix_examples():
    # Query 1: ["New York", "Washington DC", "San Francisco"], truth [0, 1, 0]; Query 2: truth [1, 0, 0]
    s1, r1 = _scores_from_order([0, 1, 0])
    s2, r2 = _scores_from_order([1, 0, 0])
    out = ranking_metrics([s1, s2], [r1, r2])
    assert out["mp1"] == pytest.approx(50.0)
    assert out["mrr"] == pytest.approx(75.0)  # (1/2 + 1) / 2, in percent


def test_ranking_accuracy_appendix_example():
    # "Cities in Asia": [Stockholm, Beijing, New Delhi] -> [0, 1, 1]; "Planets": [Neptune, Jupiter, Phobos] -> [1, 1, 0]
    s1, r1 = _scores_from_order([0, 1, 1])
    s2, r2 = _scores_from_order([1, 1, 0])
    assert ranking_metrics([s1, s2], [r1, r2])["ranking_accuracy"] == pytest.approx(50.0)


def test_wpr_appendix_example():
    # [("Mexico City", 0.9), ("Miami", 0.8), ("Copenhagen", 0.7)], truth [1, 0, 1]
    # parallel list [Mexico City 0.9, Copenhagen 0.7, Miami 0.8]: WPR = (0.1 + 0.1) / 2 = 0.1
    one = ranking_metrics_one([0.9, 0.8, 0.7], [1, 0, 1])
    assert one["wpr"] == pytest.approx(0.1)
    assert one["mp1"] == 1.0 and one["ranking_accuracy"] == 0.0 and one["mrr"] == 1.0
    # the input order does not matter, only the scores
    assert ranking_metrics_one([0.7, 0.9, 0.8], [1, 1, 0])["wpr"] == pytest.approx(0.1)
    # a right ranking has WPR 0 and is averaged in as 0
    assert ranking_metrics([[0.9, 0.8, 0.7], [0.9, 0.8, 0.7]], [[1, 0, 1], [1, 1, 0]])["wpr"] == pytest.approx(5.0)


def test_wpr_parallel_list_with_several_displacements():
    # ranked: I(0.9) S(0.5) I(0.4) S(0.1); parallel: S(0.5) S(0.1) I(0.9) I(0.4) -> every position differs
    one = ranking_metrics_one([0.9, 0.5, 0.4, 0.1], [0, 1, 0, 1])
    assert one["wpr"] == pytest.approx((0.4 + 0.4 + 0.5 + 0.3) / 4)
    assert one["mrr"] == pytest.approx(0.5) and one["mp1"] == 0.0


def test_ties_are_pessimistic_and_sets_without_relevant_are_skipped():
    assert ranking_metrics_one([0.0, 0.0, 0.0], [1, 0, 0]) == {"mp1": 0.0, "ranking_accuracy": 0.0, "mrr": pytest.approx(1 / 3), "wpr": 0.0}
    out = ranking_metrics([[0.3, 0.1], [0.2, 0.1]], [[1, 0], [0, 0]])
    assert out["n"] == 1 and out["n_skipped"] == 1 and out["mp1"] == 100.0


def test_quadrants_and_consistency_eq4():
    # pairs: (R✓,S✓) x2, (R✓,S✗) x1, (R✗,S✓) x1, (R✗,S✗) x0
    q = quadrants([True, False], [[True, True, False], [True]])
    assert q == pytest.approx({"r_right_s_right": 50.0, "r_right_s_wrong": 25.0, "r_wrong_s_right": 25.0, "r_wrong_s_wrong": 0.0})
    c = consistency_metrics([True, False], [[True, True, False], [True]])
    assert c["consistency"] == pytest.approx(100 * 2 / 3)


def test_cli_ranking_prints_json_last_line(tmp_path, capsys):
    path = tmp_path / "scores.jsonl"
    rows = [
        {"id": "q1", "scores": [3.0, 2.0, 1.0], "relevant": [0, 1, 0]},
        {"id": "q2", "scores": [3.0, 2.0, 1.0], "relevant": [1, 0, 0]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli_main(["evaluate", "ranking", "--scores", str(path)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["mp1"] == pytest.approx(50.0) and out["mrr"] == pytest.approx(75.0)
    assert {"mp1", "ranking_accuracy", "mrr", "wpr"} <= set(out)


def test_cli_consistency_prints_json_last_line(tmp_path, capsys):
    path = tmp_path / "preds.jsonl"
    rows = [
        {"id": 1, "reasoning_correct": True, "sub_correct": [True, True, False]},
        {"id": 2, "reasoning_correct": False, "sub_correct": [True]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli_main(["evaluate", "consistency", "--predictions", str(path)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["consistency"] == pytest.approx(66.6667, abs=1e-3)
    assert out["quadrants"]["r_right_s_right"] == pytest.approx(50.0)


def test_cli_bad_input_names_file_and_line(tmp_path):
    path = tmp_path / "scores.jsonl"
    path.write_text('{"id": 1, "scores": [1.0], "relevant": [1]}\n{"id": 2, "scores": [1.0, 2.0], "relevant": [1]}\n')
    with pytest.raises(ValueError, match=r"scores\.jsonl, line 2 \(2\): 'scores' and 'relevant'"):
        cli_main(["--debug", "evaluate", "ranking", "--scores", str(path)])
    path.write_text('{"id": 1, "scores": [1.0], "relevant": [1]}\n{not json\n')
    with pytest.raises(ValueError, match=r"line 2: malformed JSON"):
        cli_main(["--debug", "evaluate", "ranking", "--scores", str(path)])
    path.write_text('{"id": 1, "reasoning_correct": "yes", "sub_correct": [true]}\n')
    with pytest.raises(ValueError, match=r"line 1 \(1\): 'reasoning_correct' must be a bool"):
        cli_main(["--debug", "evaluate", "consistency", "--predictions", str(path)])


def test_evaluate_modules():
    ranking = load_metric("sort_ranking")
    out = ranking.compute(scores=[[0.9, 0.8, 0.7]], relevant=[[1, 0, 1]])
    assert out["wpr"] == pytest.approx(10.0)  # percent, as SOrT's Table 1
    cons = load_metric("sort_consistency")
    out = cons.compute(reasoning_correct=[True, False], sub_correct=[[True, True, False], [True]])
    assert out["consistency"] == pytest.approx(100 * 2 / 3)
    assert out["quadrant_r_wrong_s_right"] == pytest.approx(25.0)


# ------------------------------------------------------------------ visual grounding
def test_spearman_matches_scipy_with_ties():
    import numpy as np
    from scipy.stats import spearmanr

    from hf_vcr.metrics.grounding import spearman_rank_correlation

    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=(7, 7)).astype(float)
    b = a + rng.normal(scale=2.0, size=a.shape)
    assert spearman_rank_correlation(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)
    assert spearman_rank_correlation(a, a) == pytest.approx(1.0)


def test_region_heatmap_spearman_and_png_overlay(tmp_path):
    import numpy as np
    import torch
    from PIL import Image

    from hf_vcr.metrics.grounding import grounding_spearman, region_gradcam, regions_to_heatmap, save_heatmap_overlay
    from hf_vcr.models.modeling_vqa import VqaConfig, VqaForClassification

    torch.manual_seed(0)
    model = VqaForClassification(VqaConfig.tiny(num_labels=5, vocab_size=20, image_feature_dim=8))
    boxes = torch.tensor([[[0, 0, 20, 20], [20, 0, 40, 20], [0, 20, 20, 40], [20, 20, 40, 40]]], dtype=torch.float)
    inputs = {"input_ids": torch.randint(1, 20, (2, 4)), "image_features": torch.randn(1, 4, 8), "question_image_index": torch.tensor([0, 0])}
    cam = region_gradcam(model, inputs)
    assert cam.shape == (2, 4) and (cam >= 0).all()
    heat = regions_to_heatmap([0.0, 1.0, 0.0, 0.5], boxes[0], 40, 40)
    assert heat.shape == (40, 40) and heat[5, 25] == 1.0 and heat[25, 25] == 0.5 and heat[5, 5] == 0.0
    human = np.zeros((80, 80))
    human[:40, 40:] = 1.0  # a human looked at the top-right quarter
    assert grounding_spearman(heat, human) > 0.5
    assert grounding_spearman(heat, 1.0 - human) < -0.5
    image = Image.fromarray(np.full((40, 40, 3), 128, np.uint8))
    path = save_heatmap_overlay(image, heat, str(tmp_path / "overlay.png"))
    out = Image.open(path)
    assert out.format == "PNG" and out.size == (40, 40)
    assert np.asarray(out)[5, 25].tolist() != np.asarray(out)[5, 5].tolist()
