"""NExT-QA multiple-choice accuracy per question type as an `evaluate` metric (wraps hf_vcr.metrics.videoqa)."""

import datasets
import evaluate

from hf_vcr.metrics.videoqa import nextqa_accuracies

_DESCRIPTION = """Accuracy (percent) overall, per NExT-QA question type (CW, CH, TN with TP counted as TN, TC, DC, DL, DO)
and per group (acc_c: causal CW+CH, acc_t: temporal TN+TP+TC, acc_d: descriptive DC+DL+DO), as the official evaluation."""


class NextqaAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Xiao et al., NExT-QA: Next Phase of Question-Answering to Explaining Temporal Actions, CVPR 2021",
            inputs_description="predictions: option index; references: right option index; question_types: the csv `type`.",
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32"), "question_types": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, question_types):
        return nextqa_accuracies(predictions, references, question_types)
