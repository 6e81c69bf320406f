"""MSVD-QA / MSRVTT-QA open-ended accuracy, overall and per question word, as an `evaluate` metric."""

import datasets
import evaluate

from hf_vcr.metrics.videoqa import open_ended_accuracies

_DESCRIPTION = """Exact-match accuracy (percent) of predicted answer strings, overall and per question word
(acc_what, acc_who, acc_how, acc_when, acc_where). Answers outside the model's answer vocabulary count as wrong."""


class VideoqaOpenEndedAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Xu et al., Video Question Answering via Gradually Refined Attention over Appearance and Motion, ACM MM 2017",
            inputs_description="predictions / references: answer strings; questions: the question texts.",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string"), "questions": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, questions):
        return open_ended_accuracies(predictions, references, questions)
