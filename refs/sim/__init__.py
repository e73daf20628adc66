"""Simulated observations, one module per observing mode; refs/simulator.py dispatches to them."""
