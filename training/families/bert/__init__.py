"""The BERT family: fine-tuning (train), its classification heads (heads), the ONNX export
(export) and the offline multilingual-e5-small encoder (e5)."""
