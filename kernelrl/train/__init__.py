"""Training: SFT and GRPO entry points and the embedded default model (issue 5)."""
