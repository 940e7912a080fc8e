"""ONNX export of RID generators (manifest, parity, web variants). Built in the "Export" issue."""
