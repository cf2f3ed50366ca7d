"""What users run: fit (LightningCLI), batch, synth, evaluate, figures, and the Python API."""
