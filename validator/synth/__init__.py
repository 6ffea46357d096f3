"""Behaviours written as ftrace text: scenarios from spec behaviours, bench traces."""
