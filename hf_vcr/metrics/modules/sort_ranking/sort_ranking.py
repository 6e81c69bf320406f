"""SOrT ranking metrics (MP@1, ranking accuracy, MRR, WPR) as an `evaluate` metric (wraps hf_vcr.metrics.sort)."""

import datasets
import evaluate

from hf_vcr.metrics.sort import ranking_metrics

_DESCRIPTION = """MP@1, ranking accuracy, MRR and WPR (Dharur et al., 2021, appendix A.1.1).
Each example is one <image, reasoning question>: `scores` of its perception questions (higher ranks
higher; SOrT uses the Grad-CAM cosine similarity with the reasoning question) and `relevant` (1 for a
sub-question, 0 for an irrelevant question). In percent, as SOrT's Table 1; WPR lower is better."""


class SortRanking(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Dharur et al., SOrT-ing VQA Models: Contrastive Gradient Learning for Improved Consistency, NAACL 2021",
            inputs_description=_DESCRIPTION,
            features=datasets.Features(
                {"scores": datasets.Sequence(datasets.Value("float64")), "relevant": datasets.Sequence(datasets.Value("int32"))}
            ),
        )

    def _compute(self, scores, relevant):
        return ranking_metrics(scores, relevant)
