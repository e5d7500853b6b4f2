"""segrt training and export side (needs torch): models, training loops, ONNX / TensorRT export.

The runtime (``sdk``) never imports this package.
"""
