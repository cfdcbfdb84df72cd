"""Test-set accuracy, the K×K confusion matrix and its cells (computed once per model)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ...analysis.evaluation import Report, report, untrained_accuracy
from ...data import class_names
from ..encoding import b64
from ..schemas import Cell, CellDigit, EvaluationSummary
from ..state import AppState, ServedModel, State, unprocessable

router = APIRouter()


def evaluated(state: AppState, m: ServedModel) -> tuple[EvaluationSummary, Report]:
    """One evaluation per model, in a worker thread, on its own copy of the model, on the
    test set the model was trained on."""
    with m.evaluation_lock:
        if m.evaluation is None or m.report is None:
            d = state.data_for(m)
            if tuple(d.image_size) != m.input_size:  # a model of another size than its data
                (h, w), (dh, dw) = m.input_size, d.image_size
                raise unprocessable(
                    "model",
                    f"{m.id} takes {h}×{w} images and the test set {d.source} holds {dh}×{dw}; "
                    f"serve it with --data-dir of {h}×{w} images to evaluate it",
                )
            with m.worker("slow") as model:
                classes = class_names(m.meta, len(m.classes), d)
                try:
                    rep = report(
                        model,
                        d.test_images,
                        d.test_labels,
                        classes=classes,
                        weights_key=m.fingerprint,
                    )
                except ValueError as e:  # a data set with other classes than the model's
                    raise unprocessable("model", str(e)) from e
            seed = int(m.meta.get("train_config", {}).get("seed", 0))
            m.report = rep
            m.evaluation = EvaluationSummary(
                model=m.id,
                classes=rep.classes,
                data=str(d.source),
                accuracy=rep.accuracy,
                # only reads the architecture: builds a fresh model of it
                untrained_accuracy=untrained_accuracy(m.model, d.test_images, d.test_labels, seed),
                count=len(rep.labels),
                errors=int((rep.predictions != rep.labels).sum()),
                confusion=rep.confusion.tolist(),
                seconds=round(rep.seconds, 3),
                precision=rep.metrics["precision"],
                recall=rep.metrics["recall"],
                f1=rep.metrics["f1"],
                support=[int(v) for v in rep.metrics["support"]],
            )
        return m.evaluation, m.report


@router.get("/api/evaluation/{model_id}", response_model=EvaluationSummary)
async def evaluation(model_id: str, state: State) -> EvaluationSummary:
    m = state.served(model_id)
    if m.evaluation is not None:
        return m.evaluation
    return (await state.slow.run(evaluated, state, m))[0]


@router.get("/api/evaluation/{model_id}/cell", response_model=Cell)
async def evaluation_cell(
    model_id: str,
    true: Annotated[int, Query(ge=0)],
    pred: Annotated[int, Query(ge=0)],
    state: State,
    limit: Annotated[int, Query(ge=1, le=500)] = 60,
) -> Cell:
    m = state.served(model_id)
    rep = m.report if m.report is not None else (await state.slow.run(evaluated, state, m))[1]
    k = len(rep.classes)
    for name, value in (("true", true), ("pred", pred)):
        if value >= k:
            raise unprocessable(name, f"{value} is not a class; the model has {k} (0–{k - 1})")
    idx = rep.cell(true, pred)
    images = state.data_for(m).test_images
    size = [int(images.shape[1]), int(images.shape[2])]
    digits = [
        CellDigit(
            index=int(i),
            label=int(rep.labels[i]),
            pred=int(rep.predictions[i]),
            probabilities=[round(float(p), 5) for p in rep.probabilities[i]],
            pixels=b64(images[int(i)].numpy().tobytes()),
            size=size,
        )
        for i in idx[:limit]
    ]
    return Cell(true=true, pred=pred, count=len(idx), digits=digits)
