"""What every training flow does at its end, in one place: save the final model (with its tokenizer, image
processor and card) atomically, write the results file, print the metrics as one strict-JSON line, push.

A ZeRO-3 run gathers the whole weights first (:func:`~hf_vcr.utils.distributed.gather_whole_model_after_training`,
called by the flow before evaluating on rank 0).
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any, Callable, Iterable, Mapping

from ..utils.checkpoints import atomic_directory, atomic_write_json


def metrics_line(results: Mapping[str, Any], digits: int = 4) -> str:
    """The metrics as one line of strict JSON: floats rounded alike everywhere, undefined values (NaN, inf) as null."""

    def plain(value):
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, float):
            return round(value, digits) if math.isfinite(value) else None
        return value

    return json.dumps({k: plain(v) for k, v in results.items()}, allow_nan=False)


def save_final(model, final_dir: str, *, extras: Iterable = (), write_card: Callable[[str], None] | None = None) -> str:
    """``model`` (unwrapped), its processors and card, written to ``final_dir`` all at once (a temporary folder renamed).

    A card that cannot be written is a warning: a trained model is never lost over it.
    """
    with atomic_directory(final_dir) as tmp:
        model.save_pretrained(tmp)
        for extra in extras:
            if extra is not None:
                extra.save_pretrained(tmp)
        if write_card is not None:
            try:
                write_card(tmp)
            except Exception as e:  # noqa: BLE001
                print(f"warning: model card not written: {e}", file=sys.stderr)
    return final_dir


def finish(args, results: Mapping[str, Any], results_file: str, *, push: Iterable[tuple[str, str | None]] = (),
           commit_message: str = "trained with hf_vcr") -> None:
    """On the main process: ``OUTPUT_DIR/results_file`` (strict JSON), the metrics line on stdout, then the pushes.

    ``push`` lists ``(folder, sub_model name or None)``: each is pushed with its card when ``--push_to_hub``.
    """
    clean = json.loads(metrics_line(results, digits=12))
    atomic_write_json(os.path.join(args.output_dir, results_file), clean)
    print(metrics_line(results))
    if args.push_to_hub:
        from ..hub import push_trained_model

        for folder, sub_model in push:
            kwargs = {"sub_model": sub_model} if sub_model else {}
            push_trained_model(args, folder, commit_message=commit_message, **kwargs)


def flow_main(arguments, prog: str, run: Callable[..., dict],
              pushed: Callable[[Any], list[tuple[str, str | None]]] | None = None) -> Callable[..., dict]:
    """``main(argv=None)`` of a flow whose body is ``run(model_args, data_args, args, argv=None) -> results``.

    Around the body, what every run must do alike (:mod:`hf_vcr.utils.run_guard`): take the output folder's lock
    (a second run on it refuses; a killed run's lock dies with it), remove stale temporaries, refuse an output
    folder that holds a run with other arguments (unless ``--overwrite_output_dir true``), do nothing but say so
    and print the saved metrics when the same run already finished, and mark the run complete at its end.
    The arguments are fingerprinted before the body runs: flows fill in data paths as they go. ``pushed(args)``
    lists the run's ``(model folder, sub-model name)``: a finished run started again with ``--push_to_hub`` pushes
    them (a push that failed at the end of training is retried this way, the local run untouched).
    """

    def main(argv=None) -> dict:
        from ..utils.run_guard import guard_run, mark_run_complete, release_output_lock, run_fingerprint
        from . import parse_flow_args

        parsed = parse_flow_args(arguments, argv, prog=prog)
        args = parsed[-1]
        main_process = args.process_index == 0
        fingerprint = run_fingerprint(*parsed)
        status = guard_run(args.output_dir, fingerprint, overwrite=args.overwrite_output_dir, is_main_process=main_process)
        if status.finished:
            if main_process:
                if args.push_to_hub and pushed is not None:
                    from ..hub import push_trained_model

                    for folder, sub_model in pushed(args):
                        push_trained_model(args, folder, sub_model=sub_model, commit_message=f"{prog.split()[-1]} model trained with hf_vcr")
                print(metrics_line(status.metrics or {}))
            return status.metrics
        try:
            results = run(*parsed, argv=argv)
            if main_process:
                mark_run_complete(args.output_dir, fingerprint, metrics=json.loads(metrics_line(results, digits=12)))
            return results
        finally:
            if main_process:
                release_output_lock(args.output_dir)

    main.__doc__ = f"``{prog} CONFIG [--field value ...]``: parse, guard the output folder, run, mark complete."
    return main
