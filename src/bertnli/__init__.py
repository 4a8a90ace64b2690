"""bertnli: fine-tune pretrained BERT encoders for natural language inference."""

__version__ = "0.1.0"
