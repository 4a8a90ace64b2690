"""The network: BERT encoder, pretraining heads and the NLI classifier."""

from bertnli.model.bert import BERTClassifier, BertConfig, BertEncoder, BERTModel, MaskLM, NextSentencePred

__all__ = ["BERTClassifier", "BERTModel", "BertConfig", "BertEncoder", "MaskLM", "NextSentencePred"]
