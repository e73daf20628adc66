"""webbflow.flows."""
