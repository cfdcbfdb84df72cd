"""Test images (MNIST digits by default) for the "random test digit" button."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from ..encoding import b64
from ..schemas import TestDigit
from ..state import AppState, State

router = APIRouter()


@router.get("/api/test-digits/random", response_model=TestDigit)
def random_digit(state: State) -> TestDigit:
    return _digit(state, state.rng.randrange(len(state.mnist().test_images)))


@router.get("/api/test-digits/{index}", response_model=TestDigit)
def test_digit(index: int, state: State) -> TestDigit:
    return _digit(state, index)


def _digit(state: AppState, index: int) -> TestDigit:
    d = state.mnist()
    if not 0 <= index < len(d.test_images):
        raise HTTPException(404, f"test index {index} outside 0–{len(d.test_images) - 1}")
    label = int(d.test_labels[index])
    return TestDigit(
        index=index,
        label=label,
        pixels=b64(d.test_images[index].numpy().tobytes()),
        size=list(d.image_size),
        name=d.classes[label] if label < d.num_classes else str(label),
    )
