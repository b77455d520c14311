"""The training engine: one epoch loop for one model or K packed copies, its step,
checkpoints and schedule."""
