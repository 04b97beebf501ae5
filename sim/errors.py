"""The one error family of sim/."""


class RulesError(ValueError):
    """A game rule has a value the simulation cannot run with."""
