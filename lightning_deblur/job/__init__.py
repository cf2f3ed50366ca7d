"""The job: the LightningModule, its stages and the callbacks it needs or that observe it."""
