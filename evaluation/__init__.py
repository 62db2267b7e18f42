"""Yuflow's models judged: on the simulator's ground truth (water, rain, crowd), through the real
pipeline (--stream), and on real labelled drinking-water data (GECCO)."""
