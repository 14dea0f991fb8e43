"""Drift between the ledger and MLflow: find it (doctor), repair it, react to MLflow's webhooks.

The ledger is the truth; MLflow's aliases, stage tags and native stages are
its projection. A difference is a drift: ``doctor`` lists them, ``--fix`` (or
a repair after an MLflow webhook) projects the ledger's state again and
records the repair as an event.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelreg.domain import Action, Event, check_model_name
from modelreg.errors import BackendUnavailableError, InvalidNameError, ModelregError
from modelreg.ledger import Ledger, NewEvent
from modelreg.lifecycle import ModelState, VersionState
from modelreg.mlflow_gateway import PRODUCTION_ALIAS, MlflowGateway
from modelreg.policy import Permission
from modelreg.registry.access import SYSTEM, Access
from modelreg.registry.adoption import Adoption
from modelreg.registry.ledger_check import LedgerCheck
from modelreg.registry.lifecycle import Lifecycle
from modelreg.registry.projection import STAGE_TAG, alias_holders
from modelreg.views import Drift, DriftKind, VersionView

DELETED_KIND = DriftKind.DELETED
PROJECTION_KIND = DriftKind.PROJECTION


class DriftRepair:
    """Compare MLflow with the ledger, model by model, and put MLflow back when asked."""

    def __init__(
        self,
        gateway: MlflowGateway,
        ledger: Ledger,
        access: Access,
        ledger_check: LedgerCheck,
        adoption: Adoption,
        writes: Lifecycle,
    ) -> None:
        self.gateway = gateway
        self.ledger = ledger
        self.access = access
        self.ledger_check = ledger_check
        self.adoption = adoption
        self.writes = writes

    def doctor(self, *, fix: bool = False, actor: str | None = None) -> list[Drift]:
        """Find (and with ``fix`` repair) differences between the ledger and MLflow.

        One model's trouble (a deleted version, a name modelreg cannot manage, an
        MLflow error) is reported as a drift of its own and the others are still
        checked; only an unreachable backend stops the run.
        """
        needed = Permission.ADMINISTER if fix else Permission.READ
        who, _role = self.access.authorize(actor, needed, "repair drift" if fix else "check drift")
        self.ledger_check.ensure()
        drifts: list[Drift] = []
        known = self.ledger.known_versions()
        for info in self.gateway.models():
            try:
                check_model_name(info.name)
                drifts += self._doctor_model(info.name, known, fix=fix, actor=who)
            except BackendUnavailableError:
                raise
            except InvalidNameError as exc:
                drifts.append(
                    _model_trouble(
                        info.name,
                        DriftKind.UNMANAGEABLE_NAME,
                        exc.message,
                        "not adopted; rename it in MLflow (MlflowClient.rename_registered_model)",
                    )
                )
            except ModelregError as exc:
                drifts.append(
                    _model_trouble(
                        info.name,
                        DriftKind.ERROR,
                        exc.message,
                        "doctor went on with the other models",
                    )
                )
        return drifts

    def _doctor_model(
        self, name: str, known: set[tuple[str, int]], *, fix: bool, actor: str
    ) -> list[Drift]:
        unadopted = [
            v.version
            for v in self.gateway.versions(name)
            if (name, v.version) not in known and v.status == "READY"
        ]
        drifts = [
            Drift(
                name=name,
                version=number,
                kind=DriftKind.UNADOPTED,
                expected="not recorded",
                actual="registered",
                note=f"`modelreg sync {name}` adopts it",
            )
            for number in unadopted
        ]
        if fix and unadopted:
            # The caller was authorised as an admin above; adoption runs as modelreg.
            self.adoption.sync(name, actor=SYSTEM)
            drifts = [d.model_copy(update={"fixed": True}) for d in drifts]
        return drifts + self._model_drift(name, fix=fix, actor=actor)

    def drift(self, name: str) -> list[Drift]:
        """Differences between the ledger and MLflow for one model (what doctor reports)."""
        check_model_name(name)
        return self._compare(name, self.ledger.events(name), self.ledger.model_state(name))

    def react_to_mlflow_change(self, name: str) -> tuple[list[VersionView], list[Drift]]:
        """What modelreg does when MLflow reports a change to ``name`` (a webhook).

        New versions are adopted. Under a policy, an alias or stage moved in
        MLflow behind the ledger's back is put back at once (a recorded repair),
        so governance cannot be bypassed through MLflow; without one the drift
        is only returned, for ``doctor --fix``. Drifts come back marked ``fixed``
        when they were repaired.
        """
        adopted = self.adoption.sync(name, actor=SYSTEM)
        if not self.access.governed():
            return adopted, self.drift(name)
        return adopted, [d.model_copy(update={"fixed": True}) for d in self.repair(name)]

    def repair(self, name: str) -> list[Drift]:
        """Put MLflow back to the ledger's state for one model, acting as modelreg itself.

        This is how the service answers an alias moved behind its back (an MLflow
        webhook): the repair is recorded like ``doctor --fix`` with the service's actor.
        """
        check_model_name(name)
        return self._model_drift(name, fix=True, actor=self.access.actor())

    def _model_drift(self, name: str, *, fix: bool, actor: str) -> list[Drift]:
        if not fix:
            return self._compare(name, self.ledger.events(name), self.ledger.model_state(name))
        with self.ledger.locked(name) as txn:
            events = txn.events(name)
            found = self._compare(name, events, txn.model_state(name))
            repairable = [d for d in found if d.repairable]
            if not repairable:
                return found
            internal = [d for d in repairable if d.kind == PROJECTION_KIND]
            in_mlflow = [d for d in repairable if d.kind != PROJECTION_KIND]
            if internal:
                # The ledger's own rows, re-derived from its events; MLflow is not touched
                # for them. Before the repair events, which the projection then applies.
                txn.rebuild_state(name)
            deleted = {d.version for d in in_mlflow if d.kind == DELETED_KIND}
            if in_mlflow:
                state = ModelState.fold(events)
                self.writes.project(name, state, set(state.stages) - deleted)
            for version in sorted({d.version or 0 for d in repairable}):
                own = [d for d in repairable if (d.version or 0) == version]
                txn.append(
                    NewEvent(
                        model=name,
                        version=version,
                        action=Action.DELETE if version in deleted else Action.REPAIR,
                        actor=actor,
                        reason=_repair_reason(own, deleted=version in deleted),
                        details={"drift": [d.as_json() for d in own]},
                    )
                )
            return [d.model_copy(update={"fixed": d.repairable}) for d in found]

    def _compare(self, name: str, events: Sequence[Event], projected: ModelState) -> list[Drift]:
        folded = ModelState.fold(events)
        # The ledger's own projection first: hot paths read it instead of the events.
        drifts = [
            Drift(
                name=name,
                version=version,
                kind=PROJECTION_KIND,
                expected=_summary(folded.versions.get(version)),
                actual=_summary(projected.versions.get(version)),
                note="the ledger's state projection (what promote, show and search read) "
                "differs from its events; doctor --fix rebuilds it from the events",
            )
            for version in sorted(folded.versions.keys() | projected.versions.keys())
            if folded.versions.get(version) != projected.versions.get(version)
        ]
        state = folded.stages
        if not state:
            return drifts
        model = self.gateway.model(name)
        infos = self.gateway.versions(name)
        present = {info.version for info in infos}
        recorded_gone = {e.version for e in events if e.action is Action.DELETE}
        gone = {v for v in state if v not in present and v not in recorded_gone}
        drifts += [
            Drift(
                name=name,
                version=version,
                kind=DELETED_KIND,
                expected=state[version].value,
                actual="deleted",
                note="doctor --fix records the deletion in the audit history",
            )
            for version in sorted(gone)
        ]
        for alias, expected in alias_holders(folded).items():
            actual = model.aliases.get(alias)
            if actual == expected:
                continue
            missing = expected is not None and expected not in present
            drifts.append(
                Drift(
                    name=name,
                    version=actual or expected,
                    kind=DriftKind(f"alias {alias}"),
                    expected=str(expected),
                    actual=str(actual),
                    # An alias cannot point at a deleted version; a person decides what next.
                    repairable=not missing,
                    note=f"v{expected} was deleted in MLflow: `modelreg rollback {name}` or "
                    f"promote another version"
                    if missing and alias == PRODUCTION_ALIAS
                    else (f"v{expected} was deleted in MLflow" if missing else ""),
                )
            )
        for info in infos:
            if info.version not in state:
                continue
            expected_stage = state[info.version].value
            if info.native_stage != expected_stage:
                drifts.append(
                    Drift(
                        name=name,
                        version=info.version,
                        kind=DriftKind.NATIVE_STAGE,
                        expected=expected_stage,
                        actual=info.native_stage,
                    )
                )
            tag = info.tags.get(STAGE_TAG, "")
            if tag != expected_stage:
                drifts.append(
                    Drift(
                        name=name,
                        version=info.version,
                        kind=DriftKind.STAGE_TAG,
                        expected=expected_stage,
                        actual=tag or "(none)",
                    )
                )
        return drifts


def _model_trouble(name: str, kind: DriftKind, actual: str, note: str) -> Drift:
    """A whole model doctor cannot check or repair, reported as its own row."""
    return Drift(
        name=name,
        version=None,
        kind=kind,
        expected="a model modelreg can manage",
        actual=actual,
        repairable=False,
        note=note,
    )


def _summary(state: VersionState | None) -> str:
    """One version's projected state as doctor prints it (events or projection row)."""
    if state is None:
        return "no row"
    parts = [f"stage {state.stage.value if state.stage else '(never entered)'}"]
    if state.entered_staging is not None:
        parts.append(f"entered Staging at event {state.entered_staging}")
    if state.entered_production is not None:
        parts.append(f"entered Production at event {state.entered_production}")
    if state.request is not None:
        parts.append(f"open request #{state.request.id} ({len(state.request.votes)} approvals)")
    return "; ".join(parts)


def _repair_reason(drifts: Sequence[Drift], *, deleted: bool) -> str:
    """Why doctor --fix recorded an event for one version: what it repaired."""
    if deleted:
        return "the version was deleted in MLflow; doctor recorded it"
    done = []
    if any(d.kind != PROJECTION_KIND for d in drifts):
        done.append("re-applied the ledger state to MLflow")
    if any(d.kind == PROJECTION_KIND for d in drifts):
        done.append("rebuilt the state projection from the events")
    return "doctor " + " and ".join(done)
