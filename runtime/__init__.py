"""mixc's training runtime: reads plan.json + mix.lock and the MDS shards, nothing else from the compiler.

model (SpeechLM presets, HF backbones) -> composer_model (masked next-token loss) -> data (one
StreamingDataset over the plan's streams) -> verify (shards vs mix.lock) -> train (Composer Trainer),
with monitor (loss, tokens/s, MFU). Entry points: `runtime.train.train()`, `python -m runtime PLAN`.
"""
