"""The sim engines `stats` and `trace` look at: a scenario file's, or the `link` state's."""

from __future__ import annotations

from ..model.errors import KernelError


def sim_engines(scenario: str | None, state: str | None, netns: str | None = None,
                setup_only: bool = False) -> tuple[dict, str | None]:
    """Engines by parent name and the scenario's wire (None for the link state).

    ``setup_only``: replay a scenario's control steps but not its frames (trace injects its own).
    """
    if scenario:
        from ..backends.sim import Simulation
        from ..scenario import ScenarioError, load_scenario

        try:
            sc = load_scenario(scenario)
        except ScenarioError as e:
            raise KernelError("EINVAL", f"{scenario}: {e}") from None
        sim = Simulation(sc)
        for st in sc["steps"]:
            if not (setup_only and st["do"] == "inject"):
                sim.step(st)
        return {"parent": sim.engine}, sc["wire"]
    from ..links import get_driver

    world = get_driver("sim", **({"state": state} if state else {}), netns=netns).world()
    return {name: p.engine for name, p in world.parents.items()}, None
