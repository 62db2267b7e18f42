"""Faust agents: thin loops over streams that call models/ and publish results."""
