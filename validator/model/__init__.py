"""The protocol as Python: the mirror of spec/Poison.tla's actions (designs, checks,
features) and the properties, tested against TLC's own state graph."""
