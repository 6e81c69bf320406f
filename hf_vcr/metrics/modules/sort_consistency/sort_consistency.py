"""SOrT consistency (eq. 4) and the four quadrants as an `evaluate` metric (wraps hf_vcr.metrics.sort)."""

import datasets
import evaluate

from hf_vcr.metrics.sort import consistency_metrics

_DESCRIPTION = """Quadrants R✓S✓, R✓S✗, R✗S✓, R✗S✗ over <reasoning, sub-question> pairs and
consistency = R✓S✓ / (R✓S✓ + R✓S✗) (Dharur et al., 2021, eq. 4), in percent. Each example is one
<image, reasoning question>: `reasoning_correct` and `sub_correct` (one bool per sub-question)."""


class SortConsistency(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Dharur et al., SOrT-ing VQA Models: Contrastive Gradient Learning for Improved Consistency, NAACL 2021",
            inputs_description=_DESCRIPTION,
            features=datasets.Features(
                {"reasoning_correct": datasets.Value("bool"), "sub_correct": datasets.Sequence(datasets.Value("bool"))}
            ),
        )

    def _compute(self, reasoning_correct, sub_correct):
        out = consistency_metrics(reasoning_correct, sub_correct)
        flat = {f"quadrant_{k}": v for k, v in out.pop("quadrants").items()}
        return {**out, **flat}
