"""The server fallback: one FastAPI app that serves the built web app, the model folders and the
/v1/protect API, running the same exported ONNX pieces as the browser (`rid serve`)."""
