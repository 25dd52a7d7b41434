"""`facslab serve`: one page to upload an image or stream the webcam, and its JSON/WebSocket API.

Uploads are raw bytes (no multipart parser needed); the size is limited before reading, and the
image's pixel count is checked from its header before decoding, so oversized uploads, non-images
and decompression bombs get a 4xx while the server keeps serving. Work per request is bounded:
decoding runs in a thread (never on the event loop), images are shrunk to about 2 megapixels
before detection, and when ``MAX_IN_FLIGHT`` requests are already queued the answer is 503.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image

from facslab.analysis import FaceAnalyzer
from facslab.badinput import BadInputError
from facslab.images import decode_rgb
from facslab.live import FAST, LivePipeline
from facslab.timeline import Timeline, charted

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("index.html")
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 25_000_000
MAX_FRAME_BYTES = 2 * 1024 * 1024
ANALYSIS_PIXELS = 2_000_000  # faces in bigger photos are big enough to find after shrinking
MAX_IN_FLIGHT = 4  # requests decoding, analysing or waiting for the analyser; more get 503
STREAM_FPS = 30.0  # a webcam's nominal rate: the stream's timestamps (the page sends frames as answers come)


def _png(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def create_app(analyzer: FaceAnalyzer) -> FastAPI:
    app = FastAPI(title="facslab", docs_url=None, redoc_url=None)
    lock = asyncio.Lock()  # one analysis at a time: dlib and torch already use the cores
    in_flight = 0

    def analyze_bytes(data: bytes, name: str, crops: bool, stream: tuple | None = None, explain: bool = False
                      ) -> tuple[np.ndarray, list[dict]]:
        """``stream``: a WebSocket's pipeline, frame number and timeline (tracking between
        detections, as in ``facslab live``; the largest face's outputs over time); None: a single
        image, detected in full. ``explain``: each face gets every model's saliency overlay."""
        image = decode_rgb(data, name, MAX_PIXELS, shrink_to=ANALYSIS_PIXELS)
        if stream is None:
            results = analyzer.analyze(image, None, crops)
        else:
            pipeline, index, timeline = stream
            tracked, results = pipeline.process(image, index, "RGB")
            if timeline is not None:
                timeline.add(index + 1, index / STREAM_FPS, [face_id for face_id, _ in tracked], results)
        faces = []
        for k, result in enumerate(results):
            face = result.as_dict()
            if stream is not None:  # the tracker's id, which the chart's face_id names
                face["face_id"] = tracked[k][0]
            if crops:
                face["aligned"] = _png(result.crop)
            faces.append(face)
        if explain and results:
            from facslab.explain import face_overlays

            for face, theirs in zip(faces, face_overlays(analyzer.predictors, results)):
                face["saliency"] = [{**o, "overlay": _png(o["overlay"])} if "overlay" in o else o for o in theirs]
        return image, faces

    async def analyze(data: bytes, name: str, crops: bool, stream: tuple | None = None, explain: bool = False
                      ) -> tuple[np.ndarray, list[dict]] | None:
        """Decode and analyse in a worker thread; None when the server is full."""
        nonlocal in_flight
        if in_flight >= MAX_IN_FLIGHT:
            return None
        in_flight += 1
        try:
            async with lock:
                return await asyncio.to_thread(analyze_bytes, data, name, crops, stream, explain)
        finally:
            in_flight -= 1

    def busy() -> JSONResponse:
        return JSONResponse({"error": f"busy: {MAX_IN_FLIGHT} analyses queued; retry shortly"}, 503,
                            headers={"Retry-After": "1"})

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/api/model")
    async def model_info() -> dict:
        models = [{"task": p.task, "outputs": p.outputs_name, "columns": list(p.column_names()),
                   "provenance": p.provenance, **p.outputs_config()} for p in analyzer.predictors]
        for model in models:
            model.pop("hparams_update", None)
        return {"models": models, "note": " ".join(analyzer.provenance_notes()) or None,
                "emoji": analyzer.au_model is not None}

    @app.post("/api/analyze")
    async def analyze_upload(request: Request):
        declared = int(request.headers.get("content-length") or 0)
        if declared > MAX_UPLOAD_BYTES:
            return JSONResponse({"error": f"upload too large ({declared} bytes; limit {MAX_UPLOAD_BYTES})"}, 413)
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_UPLOAD_BYTES:
                return JSONResponse({"error": f"upload too large (limit {MAX_UPLOAD_BYTES} bytes)"}, 413)
        try:
            analysed = await analyze(bytes(data), request.headers.get("x-filename", "upload"), crops=True,
                                     explain=request.headers.get("x-explain") == "1")
        except BadInputError as error:
            status = 413 if "too large" in error.problem or "bomb" in error.problem else 415
            return JSONResponse({"error": str(error)}, status)
        if analysed is None:
            return busy()
        image, faces = analysed
        return {"width": image.shape[1], "height": image.shape[0], "faces": faces,
                "message": None if faces else "no face found"}

    @app.websocket("/ws")
    async def live(socket: WebSocket):
        await socket.accept()
        pipeline, index = LivePipeline(analyzer, FAST), 0  # this stream's tracker, as `facslab live` runs it
        charted_model = charted(analyzer)
        timeline = None if charted_model is None else Timeline(charted_model, STREAM_FPS, keep=1)
        try:
            while True:
                data = await socket.receive_bytes()
                if len(data) > MAX_FRAME_BYTES:
                    await socket.send_json({"error": "frame too large"})
                    continue
                try:
                    analysed = await analyze(data, "frame", crops=False, stream=(pipeline, index, timeline))
                    index += 1
                except BadInputError as error:
                    await socket.send_json({"error": str(error)})
                    continue
                if analysed is None:  # the page sends its next frame when this answer arrives
                    await socket.send_json({"error": "busy", "faces": []})
                    continue
                _, faces = analysed
                # detections: full detections run so far on this stream (the tracker covers the rest);
                # the emoji's ranking stays with the single-image answers
                await socket.send_json({"faces": [{k: v for k, v in f.items() if k not in ("ranking", "tied_with")}
                                                  for f in faces],
                                        "frame": index - 1, "detections": pipeline.tracker.detections_run,
                                        # the largest face's outputs for the page's chart over time
                                        "chart": None if timeline is None else timeline.latest()})
        except WebSocketDisconnect:
            pass

    return app


def serve(analyzer: FaceAnalyzer, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    uvicorn.run(create_app(analyzer), host=host, port=port, log_level="info")
