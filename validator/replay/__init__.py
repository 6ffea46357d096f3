"""Judging a capture: its input (events of ftrace text), the planner (identities),
the meaning of each event, the candidate states, the verdict; and the TLC engine."""
