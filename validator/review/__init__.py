"""The design-review artifacts: report, state diagrams, costs, the trace corpus."""
