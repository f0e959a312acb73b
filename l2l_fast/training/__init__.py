"""Generic PyTorch-native training parts: the step and its monitor, the optimizer and
schedule, distributed helpers, run checkpoints and the one resumable training loop."""
