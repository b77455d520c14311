"""MLflow: tracking URIs, tag names, experiments, and the recorder of one run."""
