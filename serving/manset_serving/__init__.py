"""manset-serving: load an exported manset bundle and classify headlines.

    from manset_serving import load
    model = load("models/category/champion")
    model.predict(["Merkez Bankası faiz kararını açıkladı"])
    # [{"label": "Ekonomi", "score": 0.97, "probabilities": {...}}]

Imports nothing from the training package; TF-IDF bundles need numpy and safetensors, BERT
bundles add onnxruntime and tokenizers.
"""

from manset_serving.bundle import BundleError
from manset_serving.champion import champion_dir, exported_tasks
from manset_serving.inputs import InputError, check_texts
from manset_serving.models import FAMILIES, Model, load

__all__ = ["FAMILIES", "BundleError", "InputError", "Model", "champion_dir", "check_texts",
           "exported_tasks", "load"]
