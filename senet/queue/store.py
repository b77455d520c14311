"""The only module that calls Optuna's storage API, through public methods only.

The queue keeps its tickets as Optuna trials of one study per grid. Every read and
write of those goes through ``TicketStore``, so an Optuna upgrade touches one file,
and ``tests/test_queue_storage.py`` checks this contract on every storage kind.
"""

from __future__ import annotations

from typing import Any

from senet.errors import TicketFinished


class TicketStore:
    """Studies (grids) and trials (tickets) of one Optuna storage."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        # Trial ids never change once created; cache the number -> id lookups.
        self._trial_ids: dict[tuple[int, int], int] = {}

    @classmethod
    def wrap(cls, storage: Any) -> TicketStore:
        return storage if isinstance(storage, TicketStore) else cls(storage)

    # -- studies

    def study_id(self, name: str) -> int | None:
        try:
            return self.storage.get_study_id_from_name(name)
        except KeyError:
            return None

    def create_study(self, name: str) -> tuple[int, bool]:
        """(study id, created?) for ``name``; tolerates a concurrent creator."""
        from optuna.exceptions import DuplicatedStudyError
        from optuna.study import StudyDirection

        existing = self.study_id(name)
        if existing is not None:
            return existing, False
        try:
            # Lower top-1 error is better; Optuna's best_trial then means the best point.
            return self.storage.create_new_study([StudyDirection.MINIMIZE], name), True
        except DuplicatedStudyError:
            return self.storage.get_study_id_from_name(name), False

    def study_names(self, with_attr: str) -> list[str]:
        """Names of the studies that carry the study user attr ``with_attr``."""
        return [s.study_name for s in self.storage.get_all_studies() if with_attr in s.user_attrs]

    def delete_study(self, study_id: int) -> None:
        self.storage.delete_study(study_id)

    def study_attrs(self, study_id: int) -> dict[str, Any]:
        return self.storage.get_study_user_attrs(study_id)

    def set_study_attr(self, study_id: int, key: str, value: Any) -> None:
        self.storage.set_study_user_attr(study_id, key, value)

    # -- trials

    def trials(self, study_id: int) -> list[Any]:
        """Every trial of the study (optuna FrozenTrial), in number order."""
        return self.storage.get_all_trials(study_id, deepcopy=False)

    def trial(self, trial_id: int) -> Any:
        return self.storage.get_trial(trial_id)

    def trial_id(self, study_id: int, number: int) -> int:
        key = (study_id, number)
        if key not in self._trial_ids:
            self._trial_ids[key] = self.storage.get_trial_id_from_study_id_trial_number(
                study_id, number
            )
        return self._trial_ids[key]

    def add_waiting(self, study_id: int, attrs: dict[str, Any]) -> int:
        """A new WAITING trial carrying ``attrs``; returns its trial id."""
        from optuna.trial import FrozenTrial, TrialState

        template = FrozenTrial(
            number=-1, state=TrialState.WAITING, value=None, datetime_start=None,
            datetime_complete=None, params={}, distributions={}, user_attrs=attrs,
            system_attrs={}, intermediate_values={}, trial_id=-1,
        )
        return self.storage.create_new_trial(study_id, template_trial=template)

    def set_trial_attr(self, trial_id: int, key: str, value: Any) -> None:
        """Raises TicketFinished once the trial has finished."""
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            self.storage.set_trial_user_attr(trial_id, key, value)
        except UpdateFinishedTrialError as exc:
            raise TicketFinished(f"trial {trial_id} is already finished") from exc

    def claim(self, trial_id: int) -> bool:
        """The atomic WAITING -> RUNNING transition; False for every loser (journal: the
        first RUNNING record in the log wins; RDB: the row is read FOR UPDATE)."""
        from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
        from optuna.trial import TrialState

        try:
            return bool(self.storage.set_trial_state_values(trial_id, TrialState.RUNNING))
        except (UpdateFinishedTrialError, StorageInternalError):
            return False

    def finish(self, trial_id: int, state: str, value: float | None = None) -> bool:
        """Move to ``state`` (COMPLETE, FAIL or PRUNED); True if this call made the
        transition, False if the trial had already finished (finishing is atomic)."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        values = None if value is None else [value]
        try:
            return bool(self.storage.set_trial_state_values(trial_id, TrialState[state], values))
        except UpdateFinishedTrialError:
            return False


def busy_storage_errors() -> tuple[type[BaseException], ...]:
    """Errors a busy or restarting database raises, worth a retry on the next pass."""
    from optuna.exceptions import StorageInternalError

    return (StorageInternalError,)
