"""A plugin module with only the toy threats that run cleanly (for `run --all`)."""

from toy_threats import BLIND_GUESS, COIN

THREATS = (BLIND_GUESS, COIN)
