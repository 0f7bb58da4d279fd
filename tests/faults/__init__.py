"""Fault-injection tests: load through real processes while parts are killed or slowed."""
