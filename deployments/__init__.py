"""webbflow.deployments."""
