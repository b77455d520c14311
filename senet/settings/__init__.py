"""What one training is: run settings, presets, grid files and training keys."""
