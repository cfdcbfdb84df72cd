"""Training runs: start, list, follow (Server-Sent Events), stop, resume.

Thin: :class:`cnnscope.server.runs.Runs` decides who may train and serves checkpoints as
models; :class:`cnnscope.train.manager.RunManager` owns folders, processes and statuses.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response, StreamingResponse

from ...train import RECIPES
from ...train.manager import (
    MAX_STEPS,
    InvalidRun,
    Run,
    RunConflict,
    Tail,
    UnknownRun,
    checkpoint_meta,
    progress,
    read_records,
)
from ..runs import Runs
from ..schemas import (
    Embedding,
    RunDeleted,
    RunDetail,
    RunInfo,
    RunProgress,
    RunRequest,
    RunSettings,
    RunStarted,
    Training,
)
from ..state import State

router = APIRouter()

POLL_S = 0.5  # how often an event stream looks at its run's folder
PING_S = 15.0  # a comment line this often keeps proxies from closing a quiet stream


def _runs(request: Request) -> Runs:
    runs: Runs = request.app.state.runs
    return runs


RunsDep = Annotated[Runs, Depends(_runs)]


def _get(runs: Runs, run_id: str) -> Run:
    try:
        return runs.manager.get(run_id)
    except UnknownRun as e:
        raise HTTPException(404, str(e)) from e


def _info(runs: Runs, run: Run) -> dict[str, object]:
    manager = runs.manager
    meta = checkpoint_meta(run.folder)
    served = runs.model_id(run) if runs.model_id(run) in runs.state.by_id else None
    return {
        "id": run.id,
        "status": manager.status(run),
        "step": manager.step(run),
        "total_steps": run.total_steps,
        "settings": RunSettings(
            **{k: run.settings[k] for k in RunSettings.model_fields if k in run.settings}
        ),
        "created": run.created,
        "model": served,
        "checkpoint_step": None if meta is None else meta.get("metrics", {}).get("steps"),
        "error": manager.error(run),
    }


@router.get("/api/training", response_model=Training)
def training(runs: RunsDep) -> Training:
    return Training(
        enabled=runs.training,
        reason="" if runs.training else runs.why_off,
        models=runs.trainable(),
        recipes=list(RECIPES),
        max_steps=MAX_STEPS,
        folder=str(runs.manager.folder),
    )


@router.post("/api/runs", status_code=202, response_model=RunStarted)
def start(req: RunRequest, runs: RunsDep) -> RunStarted:
    runs.require_training()
    try:
        run = runs.start(req.model, req.recipe, steps=req.steps, epochs=req.epochs, seed=req.seed)
    except InvalidRun as e:
        raise HTTPException(422, str(e)) from e
    except RunConflict as e:
        raise HTTPException(409, str(e)) from e
    runs.watch()
    return RunStarted(id=run.id, model=runs.model_id(run))


@router.get("/api/runs", response_model=list[RunInfo])
def list_runs(runs: RunsDep) -> list[RunInfo]:
    return [RunInfo(**_info(runs, r)) for r in runs.manager.runs()]  # type: ignore[arg-type]


@router.get("/api/runs/{run_id}", response_model=RunDetail)
def get_run(run_id: str, runs: RunsDep) -> RunDetail:
    run = _get(runs, run_id)
    info = _info(runs, run)
    records = read_records(run.folder)
    return RunDetail(
        **info,  # type: ignore[arg-type]
        config=json.loads(json.dumps(run.config.__dict__)),
        progress=RunProgress(**progress(run, str(info["status"]), records)),
        metrics=records,
    )


@router.post("/api/runs/{run_id}/stop", response_model=RunInfo)
def stop(run_id: str, runs: RunsDep) -> RunInfo:
    runs.require_training()
    _get(runs, run_id)
    try:
        run = runs.manager.stop(run_id)
    except RunConflict as e:
        raise HTTPException(409, str(e)) from e
    runs.sync()  # the checkpoint it saved on stopping, in the model picker at once
    return RunInfo(**_info(runs, run))  # type: ignore[arg-type]


@router.post("/api/runs/{run_id}/resume", status_code=202, response_model=RunInfo)
def resume(run_id: str, runs: RunsDep) -> RunInfo:
    runs.require_training()
    _get(runs, run_id)
    try:
        run = runs.resume(run_id)
    except RunConflict as e:
        raise HTTPException(409, str(e)) from e
    runs.watch()
    return RunInfo(**_info(runs, run))  # type: ignore[arg-type]


@router.delete("/api/runs/{run_id}", response_model=RunDeleted)
def delete(run_id: str, runs: RunsDep) -> RunDeleted:
    """Delete a run's folder (not while it trains: 409) and drop it from the model picker."""
    runs.require_training()
    _get(runs, run_id)
    try:
        run = runs.delete(run_id)
    except RunConflict as e:
        raise HTTPException(409, str(e)) from e
    return RunDeleted(id=run.id, model=runs.model_id(run))


@router.get("/api/runs/{run_id}/embedding", response_model=Embedding)
async def embedding(run_id: str, runs: RunsDep, state: State) -> Response:
    run = _get(runs, run_id)
    body = await state.slow.run(runs.layouts, run)
    return Response(body, media_type="application/json")


@router.get("/api/runs/{run_id}/events")
async def events(run_id: str, request: Request, runs: RunsDep) -> StreamingResponse:
    """Server-Sent Events: ``metrics``, ``progress``, ``snapshot``, ``checkpoint``,
    ``done``, ``error``; the stream ends when the run stops, ends or fails, when the
    client goes, or when the server shuts down."""
    run = _get(runs, run_id)
    tail = Tail(runs.manager, run)

    async def stream() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        quiet = 0.0
        while not runs.manager.closed.is_set():
            polled = tail.poll()
            for name, data in polled:
                if name == "checkpoint":  # served before the page asks for its filters
                    await asyncio.to_thread(runs.sync)
                    data = {**data, "model": runs.model_id(run)}
                yield f"event: {name}\ndata: {json.dumps(data)}\n\n"
            if tail.finished:
                return
            quiet = 0.0 if polled else quiet + POLL_S
            if quiet >= PING_S:
                quiet = 0.0
                yield ": ping\n\n"
            await asyncio.sleep(POLL_S)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
