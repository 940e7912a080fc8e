"""ONNX export of RID generators (manifest, parity, web variants) and the runtimes that run an
export (onnxruntime, Chromium). It may import ridtrain and ridpixels, never server_fallback or rid."""
