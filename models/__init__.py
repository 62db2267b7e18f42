"""Pure models (numpy/pandas/scikit-learn): detectors, tracing, forecasts, warning rules. No I/O,
no imports from the rest of Yuflow: inputs are plain numbers, mappings and dataclasses."""
