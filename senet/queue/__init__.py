"""The queue of trainings: tickets in an Optuna storage, grids and searches queued, and
their costs planned."""
