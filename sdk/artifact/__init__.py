"""Artifacts: the one table of file formats, the metadata every artifact carries, and header readers
(ONNX, OpenVINO IR, segrt TensorRT engines) that need no runtime."""
