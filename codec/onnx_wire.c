/* codec/onnx_wire.c — placeholder */
