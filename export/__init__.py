"""segrt training and export side (needs torch): models, training loops, ONNX / TensorRT export.

Dependencies point one way: this package uses ``segrt`` (errors, metadata, the runtime
it exports for); ``segrt`` never imports it. Its ``segrt`` verbs are registered
through the ``segrt.commands`` entry point (``segrt.export.cli:register``).
"""

DEFAULT_OPSET = 17  # ONNX opset of every exported graph (RoiAlign's coordinate_transformation_mode needs >= 16)
