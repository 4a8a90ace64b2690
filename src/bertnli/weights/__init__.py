"""Reading and writing checkpoints: d2l archives, Hugging Face BERT folders, and our own model folders."""

from bertnli.weights.d2l import save_d2l
from bertnli.weights.huggingface import hf_config, to_hf_state_dict
from bertnli.weights.native import SavedClassifier, load_classifier, save_classifier
from bertnli.weights.pretrained import Pretrained, load_pretrained

__all__ = [
    "Pretrained",
    "SavedClassifier",
    "hf_config",
    "load_classifier",
    "load_pretrained",
    "save_classifier",
    "save_d2l",
    "to_hf_state_dict",
]
