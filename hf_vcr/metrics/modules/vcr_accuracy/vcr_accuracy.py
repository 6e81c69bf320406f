"""VCR Q→A / QA→R / Q→AR accuracy as an `evaluate` metric (wraps hf_vcr.metrics.vcr)."""

import datasets
import evaluate

from hf_vcr.metrics.vcr import vcr_accuracies

_DESCRIPTION = """Q→A, QA→R and Q→AR accuracy (percent) for Visual Commonsense Reasoning.
`rationale_predictions` are the rationales chosen for the *predicted* answers (they make Q→AR);
`rationale_predictions_given_right_answer`, when given, are those chosen with the right answer (QA→R)."""


class VcrAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Zellers et al., From Recognition to Cognition: Visual Commonsense Reasoning, CVPR 2019",
            inputs_description=_DESCRIPTION,
            features=datasets.Features(
                {
                    "answer_predictions": datasets.Value("int32"),
                    "answer_references": datasets.Value("int32"),
                    "rationale_predictions": datasets.Value("int32"),
                    "rationale_references": datasets.Value("int32"),
                    "rationale_predictions_given_right_answer": datasets.Value("int32"),
                }
            ),
        )

    def _compute(
        self,
        answer_predictions,
        answer_references,
        rationale_predictions,
        rationale_references,
        rationale_predictions_given_right_answer,
    ):
        return vcr_accuracies(
            answer_predictions,
            answer_references,
            rationale_predictions,
            rationale_references,
            rationale_pred_given_right_answer=rationale_predictions_given_right_answer,
        )
