"""`facslab serve`: one page to upload an image or stream the webcam, and its JSON/WebSocket API.

Uploads are raw bytes (no multipart parser needed); the size is limited before reading, and the
image's pixel count is checked from its header before decoding, so oversized uploads, non-images
and decompression bombs get a 4xx while the server keeps serving.
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

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("index.html")
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 25_000_000
MAX_FRAME_BYTES = 2 * 1024 * 1024


def _png(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def create_app(analyzer: FaceAnalyzer) -> FastAPI:
    app = FastAPI(title="facslab", docs_url=None, redoc_url=None)
    lock = asyncio.Lock()  # one analysis at a time: dlib and torch already use the cores

    async def analyze(image: np.ndarray, crops: bool) -> list[dict]:
        async with lock:
            results = await asyncio.to_thread(analyzer.analyze, image, None, crops)
        faces = []
        for result in results:
            face = result.as_dict()
            if crops:
                face["aligned"] = _png(result.crop)
            faces.append(face)
        return faces

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/api/model")
    async def model_info() -> dict:
        predictor = analyzer.predictor
        return {"provenance": predictor.provenance, "note": predictor.provenance_note()}

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
            image = decode_rgb(bytes(data), request.headers.get("x-filename", "upload"), MAX_PIXELS)
        except BadInputError as error:
            status = 413 if "too large" in error.problem or "bomb" in error.problem else 415
            return JSONResponse({"error": str(error)}, status)
        faces = await analyze(image, crops=True)
        return {"width": image.shape[1], "height": image.shape[0], "faces": faces,
                "message": None if faces else "no face found"}

    @app.websocket("/ws")
    async def live(socket: WebSocket):
        await socket.accept()
        try:
            while True:
                data = await socket.receive_bytes()
                if len(data) > MAX_FRAME_BYTES:
                    await socket.send_json({"error": "frame too large"})
                    continue
                try:
                    image = decode_rgb(data, "frame", MAX_PIXELS)
                except BadInputError as error:
                    await socket.send_json({"error": str(error)})
                    continue
                faces = await analyze(image, crops=False)
                await socket.send_json({"faces": [{k: f[k] for k in ("box", "emoji", "emoji_name", "score", "aus",
                                                                       "probabilities", "eyes_closed")} for f in faces]})
        except WebSocketDisconnect:
            pass

    return app


def serve(analyzer: FaceAnalyzer, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    uvicorn.run(create_app(analyzer), host=host, port=port, log_level="info")
