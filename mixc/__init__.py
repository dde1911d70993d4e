"""mixc: a dataset-mixture compiler for speech-language model pretraining."""

__version__ = "0.1.0"
