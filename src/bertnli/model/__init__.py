"""The network: BERT encoder, pretraining heads and the NLI classifier."""

from bertnli.model.bert import BertConfig, BertEncoder, BERTClassifier, BERTModel, MaskLM, NextSentencePred

__all__ = ["BERTClassifier", "BERTModel", "BertConfig", "BertEncoder", "MaskLM", "NextSentencePred"]
