"""Where each stage puts its artifact inside a run directory."""

QONNX_DIR = "qonnx"
QONNX_FILE = "model.onnx"
HLS_DIR = "hls"
HLS_PROJECT = "project"
RTL_DIR = "rtl"
ONNX_DIR = "onnx"
IMPORT_SPEC = "model.json"
IMPORT_WEIGHTS = "model.pt"
TARGETS = ("brevitas", "qonnx", "hls", "rtl", "ort")
